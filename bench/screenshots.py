"""Screenshots of the main pages for the README: the chat with a rendered answer (code and
math), history search, sign-in and the admin's provider list, light and dark, on a desktop
(1440x900) and a phone (390x844) viewport.

    .venv/bin/python -m bench.screenshots        # writes docs/screenshots/*.png

Everything runs on loopback: the fake upstream (tests/fake_upstream.py) in this process, one
`manage.py serve` (Daphne) on a throw-away SQLite database seeded with neutral demo content, and
Debian's Chromium driven by Playwright. The answer in the chat is streamed by the upstream and
rendered by the server, as for any user. PNGs are reduced to 256 colours to keep them small.
"""

import os
import re
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
from datetime import timedelta
from pathlib import Path

from bench import harness

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "docs" / "screenshots"
VIEWPORTS = {"desktop": {"width": 1440, "height": 900}, "phone": {"width": 390, "height": 844}}
THEMES = ("light", "dark")

QUESTION = "How do I compute the area under y = x² from 0 to 1, in Python and on paper?"
ANSWER = r"""The area is the definite integral of $f(x) = x^2$ over $[0, 1]$.

**On paper**, with the power rule $\int x^n\,dx = \frac{x^{n+1}}{n+1}$:

$$\int_0^1 x^2\,dx = \left[\frac{x^3}{3}\right]_0^1 = \frac{1}{3}$$

**In Python**, a midpoint sum converges to the same value:

```python
def area(f, a, b, steps=100_000):
    width = (b - a) / steps
    return sum(f(a + (i + 0.5) * width) for i in range(steps)) * width

print(area(lambda x: x * x, 0, 1))  # 0.33333333325
```

| Steps | Result | Error |
|---:|---|---|
| 10 | 0.3325 | 8.3e-4 |
| 1,000 | 0.33333325 | 8.3e-8 |

- [x] Exact value: 1/3
- [ ] Try $f(x) = \sin x$ on $[0, \pi]$ (the answer is $2$)
"""

# (title, days ago, messages): the sidebar and the search page's demo content.
CONVERSATIONS = [
    (
        "Tide tables for a coastal walk",
        0,
        [
            "When is low tide usually safest for a coastal walk?",
            "About two hours either side of low water gives the widest beach; check the local "
            "tide table for the day.",
        ],
    ),
    (
        "Sourdough starter schedule",
        1,
        [
            "How often should I feed a sourdough starter kept in the fridge?",
            "Once a week is enough: take it out, feed it 1:1:1, leave it for a few hours, then "
            "chill it again.",
        ],
    ),
    (
        "Regex for ISO dates",
        3,
        [
            "A regex for dates like 2024-05-17?",
            "`^\\d{4}-\\d{2}-\\d{2}$` checks the shape; parse it with a date library to reject "
            "2024-02-31.",
        ],
    ),
    (
        "Packing list for a hut trip",
        5,
        [
            "What should I pack for two nights in a mountain hut?",
            "A sleeping-bag liner, hut slippers, a head torch, earplugs, and cash: many huts take "
            "no cards.",
        ],
    ),
    (
        "Explain TCP slow start",
        12,
        [
            "Why does a new TCP connection start slowly?",
            "The sender starts with a small congestion window and doubles it each round trip "
            "until loss appears.",
        ],
    ),
    (
        "Tomato seedlings indoors",
        20,
        [
            "My tomato seedlings are tall and thin. Why?",
            "They stretch for light: move them closer to the window or a grow light, and keep "
            "them cooler.",
        ],
    ),
    (
        "SQL window functions",
        26,
        [
            "What does ROW_NUMBER() OVER (PARTITION BY ...) do?",
            "It numbers rows within each partition, in the order you give, restarting at 1 for "
            "each group.",
        ],
    ),
]
SEARCH = "tide"


def environment(scratch: Path) -> dict[str, str]:
    return harness.scratch_env(
        f"sqlite:///{scratch}/screens.sqlite3",
        STATIC_ROOT=str(scratch / "static"),
        DJANGO_SETTINGS_MODULE="chatsite.settings",
    )


def seed(upstream_url: str) -> tuple[str, str]:
    """Migrate, collect static files, add the providers, the demo user and their conversations;
    returns the session cookie (name, value)."""
    from django.conf import settings
    from django.contrib.auth import get_user_model
    from django.core.management import call_command
    from django.test import Client
    from django.utils import timezone

    from conversations.models import Conversation, Message
    from providers.models import ProviderConfig
    from tests.fake_upstream import FAKE_MODELS

    call_command("migrate", verbosity=0)
    call_command("collectstatic", interactive=False, verbosity=0)
    for name, default in (("demo", True), ("demo-backup", False)):
        ProviderConfig.objects.create(
            name=name,
            provider_class="OpenAICompatible",
            api_base=upstream_url + "/v1",
            default_model=FAKE_MODELS[0],
            allowed_models=FAKE_MODELS,
            is_default=default,
            timeout=30,
        )
    user = get_user_model().objects.create_superuser(
        username="demo", password=secrets.token_urlsafe(16)
    )
    now = timezone.now()
    for title, days_ago, contents in CONVERSATIONS:
        when = now - timedelta(days=days_ago, hours=1)
        chat = Conversation.objects.create(owner=user, title=title)
        parent = None
        for index, content in enumerate(contents):
            role = Message.Role.USER if index % 2 == 0 else Message.Role.ASSISTANT
            parent = Message.objects.create(
                conversation=chat,
                parent=parent,
                role=role,
                content=content,
                provider="demo" if role == Message.Role.ASSISTANT else "",
                model=FAKE_MODELS[0] if role == Message.Role.ASSISTANT else "",
            )
        Message.objects.filter(conversation=chat).update(created_at=when)
        Conversation.objects.filter(pk=chat.pk).update(
            current_leaf=parent, created_at=when, updated_at=when
        )
    client = Client()
    client.force_login(user)
    return settings.SESSION_COOKIE_NAME, client.cookies[settings.SESSION_COOKIE_NAME].value


def start_server(env: dict[str, str], port: int, log: Path) -> subprocess.Popen:
    server = subprocess.Popen(
        [sys.executable, "manage.py", "serve", "--port", str(port)],
        cwd=ROOT,
        env={**env, "PORT": str(port), "BIND_ADDRESS": "127.0.0.1"},
        stdout=log.open("ab"),
        stderr=subprocess.STDOUT,
    )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2):
                return server
        except OSError:
            if server.poll() is not None:
                break
            time.sleep(0.2)
    server.kill()
    raise RuntimeError(f"the server did not start: {log.read_text()[-2000:]}")


def settle(page) -> None:
    """Until fonts, math and the stream are done, and the page has painted twice since."""
    page.wait_for_function(
        """() => document.fonts.status === 'loaded'
            && !document.querySelector('.message[data-status=streaming]')
            && !document.querySelector(
                '.math-inline:not([data-typeset]), .math-display:not([data-typeset])')"""
    )
    page.evaluate(
        "() => new Promise((done) => requestAnimationFrame(() => requestAnimationFrame(done)))"
    )


def save(page, name: str) -> Path:
    from PIL import Image

    path = OUT / f"{name}.png"
    page.screenshot(path=str(path), animations="disabled", caret="hide")
    with Image.open(path) as image:
        small = image.convert("RGB").quantize(colors=256, method=Image.Quantize.MEDIANCUT)
    small.save(path, optimize=True)
    return path


def shoot(base_url: str, cookie: tuple[str, str]) -> list[Path]:
    from playwright.sync_api import expect, sync_playwright

    expect.set_options(timeout=30_000)
    written = []
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=shutil.which("chromium"),
            args=["--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars"],
        )

        def context(theme: str, viewport: str, signed_in: bool = True):
            made = browser.new_context(
                base_url=base_url,
                color_scheme=theme,
                viewport=VIEWPORTS[viewport],
                reduced_motion="reduce",
                is_mobile=viewport == "phone",
                has_touch=viewport == "phone",
            )
            made.set_default_timeout(30_000)
            if signed_in:
                made.add_cookies([{"name": cookie[0], "value": cookie[1], "url": base_url}])
            return made

        # The answer, streamed by the upstream and rendered as for any user.
        first = context("light", "desktop")
        page = first.new_page()
        page.goto("/")
        expect(page.locator("#connection")).to_have_attribute("data-state", "open")
        page.locator("#id_content").fill(QUESTION)
        page.locator("#id_content").press("Enter")
        expect(page.locator(".message--assistant[data-status=complete]")).to_have_count(1)
        expect(page).to_have_url(re.compile(r"/c/[0-9a-f-]+/$"))
        chat_path = page.url.removeprefix(base_url)
        first.close()

        pages = {
            "chat": chat_path,
            "history": f"/history/?q={SEARCH}",
            "admin-providers": "/admin/providers/providerconfig/",
            "sign-in": "/accounts/login/",
        }
        for name, path in pages.items():
            for theme in THEMES:
                for viewport in VIEWPORTS:
                    made = context(theme, viewport, signed_in=name != "sign-in")
                    page = made.new_page()
                    page.goto(path)
                    if name == "chat":
                        expect(page.locator("#connection")).to_have_attribute("data-state", "open")
                        page.locator("#id_content").blur()
                    settle(page)
                    written.append(save(page, f"{name}-{theme}-{viewport}"))
                    made.close()
        browser.close()
    return written


def main() -> None:
    sys.path.insert(0, str(ROOT))
    scratch = Path(tempfile.mkdtemp(prefix="chat-screens-"))
    env = environment(scratch)
    os.environ.update(env)
    import django

    django.setup()
    from tests.fake_upstream import FakeUpstream
    from tests.live_server import free_port

    upstream = FakeUpstream()
    upstream.behave(reply=ANSWER)
    cookie = seed(upstream.url)
    OUT.mkdir(parents=True, exist_ok=True)
    port = free_port()
    server = start_server(env, port, scratch / "server.log")
    try:
        written = shoot(f"http://127.0.0.1:{port}", cookie)
    finally:
        server.terminate()
        server.wait(20)
    for path in written:
        print(f"{path.relative_to(ROOT)}  {path.stat().st_size // 1024} kB")
    shutil.rmtree(scratch, ignore_errors=True)


if __name__ == "__main__":
    main()
