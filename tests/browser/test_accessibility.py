"""Accessibility in a real browser: axe-core's WCAG 2.1 A/AA rules on every main page, light and
dark, desktop and phone, and what a screen reader hears of an answer."""

import json
from pathlib import Path

import pytest
from django.conf import settings
from django.core.files.base import ContentFile
from django.utils import timezone
from playwright.sync_api import expect

from conversations import services
from conversations.api.services import api_key_create
from conversations.attachments.models import Attachment
from conversations.models import Message
from conversations.presets.models import PromptPreset
from conversations.usage.models import ModelPrice
from tests.browser.test_attachments import png_pixel
from tests.browser.test_chat import send
from tests.conversations import page_factories as make

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

# Installed by `make browser` (npm, into the git-ignored var/).
AXE = Path(settings.BASE_DIR) / "var" / "node_modules" / "axe-core" / "axe.min.js"
WCAG_21_A_AA = ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa"]
VIEWPORTS = {"desktop": {"width": 1440, "height": 900}, "phone": {"width": 390, "height": 844}}
RICH_ANSWER = (
    "Some **bold** text, `code`, and a list:\n\n- one\n- two\n\n```python\nprint(1)\n```\n\n"
    "Math: $E=mc^2$ and\n\n$$\\sum_{n=1}^{\\infty} \\frac{1}{n^2} = \\frac{\\pi^2}{6}$$\n\n"
    "- [x] typeset\n- [ ] checked\n\nSee https://example.com/docs\n\n"
    f"| {' | '.join(f'Contextwindow{index}' for index in range(8))} |\n|{'---|' * 8}\n"
    f"| {' | '.join(['Modelname'] * 8)} |\n"
)


@pytest.fixture(scope="module")
def axe_source() -> str:
    if not AXE.exists():
        if settings.REQUIRE_BROWSER:
            pytest.fail("axe-core is missing: run `make browser` (it installs it with npm)")
        pytest.skip("axe-core is missing: run `make browser`")
    return AXE.read_text()


def serious_violations(page, axe_source: str) -> list[str]:
    # Evaluated through the DevTools protocol, which the page's CSP does not govern: the page
    # itself still allows no inline or foreign script.
    page.evaluate(axe_source)
    result = page.evaluate(
        "(tags) => axe.run(document, {runOnly: {type: 'tag', values: tags}})", WCAG_21_A_AA
    )
    return [
        f"{item['id']} ({item['impact']}): "
        + json.dumps([node["target"] for node in item["nodes"]][:5])
        for item in result["violations"]
        if item["impact"] in ("serious", "critical")
    ]


def _pages(user) -> dict[str, str]:
    chat = make.conversation(user, "Python greeting helper")
    question, _ = make.chain(
        chat, ["How do I greet in Python?", RICH_ANSWER], provider="fake", model="fake-model"
    )
    # The question shows a file and an image thumbnail, as a message with attachments does.
    for name, kind, content_type, data in [
        ("greet.py", "text", "text/plain; charset=utf-8", b"print('hi')"),
        ("screen.png", "image", "image/png", png_pixel()),
    ]:
        row = Attachment(owner=user, message=question, name=name, kind=kind,
                         content_type=content_type, size=len(data))  # fmt: skip
        row.file.save(str(row.id), ContentFile(data), save=True)
    for index in range(3):
        make.conversation(user, f"Earlier chat {index}")
    api_key_create(user=user, name="editor")
    share = services.share_create(conversation=chat)
    # The sidebar's sections too: a pinned conversation and a folder, open around the current one.
    services.conversation_set_pinned(
        conversation=make.conversation(user, "Pinned notes"), pinned=True
    )
    folder = services.folder_create(user=user, name="Projects")
    services.conversation_move(conversation=chat, folder=folder)
    # Finished answers with tokens and a price: the usage line, the chat's and account's totals.
    Message.objects.filter(conversation=chat, role="assistant").update(
        prompt_tokens=12, completion_tokens=34, completed_at=timezone.now()
    )
    ModelPrice.objects.create(model="fake-model", input_per_million=1, output_per_million=2)
    preset = PromptPreset.objects.create(owner=user, title="Review", text="Review this:")
    return {
        "empty chat": "/",
        "conversation": f"/c/{chat.id}/",
        "history search": "/history/?q=greet",
        "import": "/import/",
        "API keys": "/account/api-keys/",
        "share": f"/c/{chat.id}/share/",
        "account": "/account/",
        "new folder": "/folders/new/",
        "folder": f"/conversations/?folder={folder.pk}",
        "shared conversation": f"/s/{share.token}/",
        "presets": "/presets/",
        "new preset": "/presets/new/",
        "edit preset": f"/presets/{preset.pk}/edit/",
        "usage": "/account/usage/",
    }


@pytest.mark.parametrize("scheme", ["light", "dark"])
@pytest.mark.parametrize("viewport", list(VIEWPORTS))
def test_main_pages_have_no_serious_wcag_violations(
    open_page, user, provider, axe_source, scheme, viewport
):
    pages = _pages(user)
    found = {}
    page = open_page(user, color_scheme=scheme, viewport=VIEWPORTS[viewport])
    for name, url in pages.items():
        page.goto(url)
        expect(page.locator("#main")).to_be_visible()
        if name in ("conversation", "shared conversation"):  # once KaTeX has typeset the math
            expect(page.locator(".message--assistant .katex")).to_have_count(2)
        found[name] = serious_violations(page, axe_source)
    signed_out = open_page(color_scheme=scheme, viewport=VIEWPORTS[viewport])
    signed_out.goto("/accounts/login/")
    found["sign in"] = serious_violations(signed_out, axe_source)
    assert {name: problems for name, problems in found.items() if problems} == {}


def test_the_composer_with_files_attached_has_no_serious_wcag_violations(
    open_page, user, provider, axe_source
):
    page = open_page(user)
    page.goto("/")
    page.set_input_files("#id_files", files=[
        {"name": "notes.txt", "mimeType": "text/plain", "buffer": b"some notes"},
        {"name": "fake.png", "mimeType": "image/png", "buffer": b"not an image"},
    ])  # fmt: skip
    expect(page.locator(".attachment-chip[data-state=ready]")).to_have_count(1)
    expect(page.locator(".attachment-chip[data-state=error]")).to_have_count(1)

    assert serious_violations(page, axe_source) == []


def test_a_screen_reader_hears_the_answer_once_it_is_written(
    open_page, user, provider, fake_upstream
):
    # Three seconds of streaming: time enough to see it being written on a busy machine.
    fake_upstream.behave(reply="Paris is the **capital** of France. " * 10, chunk_delay=0.05)
    page = open_page(user)
    page.goto("/")
    expect(page.locator("#messages")).to_have_attribute("role", "log")
    expect(page.locator("#connection")).to_have_attribute("data-state", "open")

    send(page, "Capital of France?")
    answer = page.locator(".message--assistant").last
    # Held while written, so the log does not read it out token by token.
    expect(answer).to_have_attribute("aria-busy", "true")
    status = page.get_by_role("status").filter(has_text="The assistant")
    expect(status).to_have_text("The assistant is answering…")

    expect(answer).to_have_attribute("data-status", "complete")
    expect(answer).not_to_have_attribute("aria-busy", "true")
    expect(status).to_have_text(
        "The assistant answered: " + ("Paris is the capital of France. " * 10).strip()
    )


def test_the_scroll_down_button_jumps_without_animation_when_motion_is_reduced(open_page, user):
    chat = make.conversation(user, "Long talk")
    make.chain(chat, [f"message number {index} " + "word " * 40 for index in range(30)])
    page = open_page(user)
    page.emulate_media(reduced_motion="reduce")
    page.goto(f"/c/{chat.id}/")
    page.locator("#messages").evaluate("element => element.scrollTo(0, 0)")
    button = page.locator("#scroll-bottom")
    expect(button).to_be_visible()

    at_bottom = button.evaluate(
        """(button) => {
            const scroller = document.getElementById('messages');
            button.click();
            // Right after the click: a smooth scroll would have only just begun.
            return scroller.scrollHeight - scroller.scrollTop - scroller.clientHeight < 2;
        }"""
    )
    assert at_bottom
