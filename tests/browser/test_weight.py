"""What the pages weigh: icons drawn once in a sprite, compressed responses, static files under
hashed names cached for a year."""

import gzip
import posixpath
import re
import urllib.request

import pytest
from playwright.sync_api import expect

from tests.conversations import page_factories as make
from tests.live_server import session_cookie

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

# The sidebar of someone who uses the site: fifty conversations, the first page of it.
CONVERSATIONS = 50
MAX_HOME_HTML = 40_000
YEAR = 365 * 24 * 3600


@pytest.fixture
def busy_user(user):
    for index in range(CONVERSATIONS):
        chat = make.conversation(user, f"A conversation about topic number {index}")
        make.chain(chat, ["Question", "Answer"])
    return user


def raw_get(server, path: str, cookie: str = "") -> tuple[int, dict, bytes]:
    """The response as a browser gets it off the wire (urllib does not decompress)."""
    request = urllib.request.Request(server.url + path, headers={"Accept-Encoding": "gzip, br"})
    if cookie:
        request.add_header("Cookie", cookie)
    with urllib.request.urlopen(request, timeout=10) as response:
        return response.status, {k.lower(): v for k, v in response.headers.items()}, response.read()


def test_home_page_with_fifty_conversations_is_light(open_page, busy_user):
    page = open_page(busy_user)
    page.goto("/")
    expect(page.locator("#conversation-list .conversation-item")).to_have_count(CONVERSATIONS)
    html = page.request.get("/").body()
    assert len(html) <= MAX_HOME_HTML, len(html)
    # Every icon is a reference into the sprite, which has them all.
    uses = page.evaluate(
        "() => [...document.querySelectorAll('svg.icon')].map(svg => "
        "svg.querySelector('use') && svg.querySelector('use').getAttribute('href'))"
    )
    assert uses and all(uses), uses
    sprites = {href.split("#")[0] for href in uses}
    assert len(sprites) == 1, sprites
    sprite = page.request.get(sprites.pop())
    assert sprite.headers["content-type"].startswith("image/svg+xml")
    ids = set(re.findall(r'<symbol id="([^"]+)"', sprite.text()))
    assert {href.split("#")[1] for href in uses} <= ids


def test_pages_and_static_files_go_out_compressed_and_cached(chat_server, busy_user):
    cookie = session_cookie(busy_user)
    status, headers, body = raw_get(chat_server, "/", cookie)
    assert status == 200 and headers.get("content-encoding") == "gzip", headers
    html = gzip.decompress(body).decode()
    assets = set(re.findall(r'(?:href|src)="(/static/[^"#]+)(?:#[^"]*)?"', html))
    names = {asset.rsplit("/", 1)[1] for asset in assets}
    for stem in ("chat.js", "chat.css", "icons.svg"):
        stem_re = re.escape(stem).replace(r"\.", r"\.[0-9a-f]{12}\.", 1)
        assert any(re.fullmatch(stem_re, name) for name in names), (stem, names)
    for asset in assets:
        status, headers, body = raw_get(chat_server, asset)
        assert status == 200
        age = int(re.search(r"max-age=(\d+)", headers["cache-control"]).group(1))
        if re.search(r"\.[0-9a-f]{12}\.", asset):
            assert age >= YEAR, (asset, headers["cache-control"])
        if asset.endswith((".js", ".css", ".svg")):
            assert headers.get("content-encoding") in ("gzip", "br"), (asset, headers)


def _text(server, path: str, cookie: str = "") -> tuple[dict, str]:
    status, headers, body = raw_get(server, path, cookie)
    assert status == 200, path
    if headers.get("content-encoding") == "gzip":
        body = gzip.decompress(body)
    return headers, body.decode()


def test_the_script_modules_and_katex_load_under_hashed_names(chat_server, user):
    _, html = _text(chat_server, "/", session_cookie(user))
    script = re.search(r'<script type="module" src="(/static/chat\.[0-9a-f]{12}\.js)"', html)
    assert script, "chat.js is not a module under a hashed name"
    katex = re.findall(r'data-katex-(?:js|css)="(/static/[^"]+)"', html)
    assert len(katex) == 2
    # Every module the script imports, and every module those import, under a hashed name: an
    # unhashed one would be a second copy of the module, with its own state.
    modules, seen, pending = [], set(), [script.group(1)]
    while pending:
        path = pending.pop()
        _, code = _text(chat_server, path)
        for relative in re.findall(r'from "(\./[^"]+)"', code):
            imported = posixpath.normpath(posixpath.join(posixpath.dirname(path), relative))
            if imported not in seen:
                seen.add(imported)
                modules.append(imported)
                pending.append(imported)
    assert len(modules) >= 10, modules
    for path in modules + katex:
        assert re.search(r"\.[0-9a-f]{12}\.(mjs|js|css)$", path), path
        headers, _ = _text(chat_server, path)
        assert int(re.search(r"max-age=(\d+)", headers["cache-control"]).group(1)) >= YEAR
        assert headers["content-type"].startswith(("text/javascript", "text/css")), headers


def test_the_one_item_menu_acts_on_the_item_it_was_opened_for(open_page, user):
    keep = make.conversation(user, "Keep me")
    put_away = make.conversation(user, "Put me away")
    page = open_page(user)
    page.goto(f"/c/{keep.id}/")
    item = page.locator(f'.conversation-item[data-id="{put_away.id}"]')
    item.hover()
    item.locator("summary").click()
    item.get_by_role("button", name="Archive").click()

    expect(page.locator(".flash-item")).to_contain_text("Archived “Put me away”.")
    expect(page).to_have_url(re.compile(rf"/c/{keep.id}/$"))
    expect(page.locator(".conversation-link")).to_have_text(["Keep me"])
    put_away.refresh_from_db()
    assert put_away.archived
