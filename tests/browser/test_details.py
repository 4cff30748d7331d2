"""Small things a demanding user notices: widths, alignment, wording, the favicon, a hidden
sidebar that comes back, the settings at 200% zoom."""

import re

import pytest
from playwright.sync_api import expect

from tests.conversations import page_factories as make

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

DESKTOP = {"width": 1440, "height": 900}
# 1440 x 900 at 200% zoom: what the page lays out in.
ZOOMED = {"width": 720, "height": 450}


@pytest.fixture
def chat(user):
    chat = make.conversation(user, "Short chat")
    make.chain(chat, ["Hi", "Hello! How can I help?", "Thanks", "You are welcome."],
               provider="fake", model="fake-model")  # fmt: skip
    return chat


def test_the_edit_box_is_as_wide_as_the_conversation(open_page, user, chat):
    page = open_page(user, viewport=DESKTOP)
    page.goto(f"/c/{chat.id}/")
    first = page.locator(".message--user").first
    first.hover()
    first.get_by_role("button", name="Edit message").click()
    box = first.get_by_label("Edit your message").bounding_box()
    answer = page.locator(".message--assistant [data-slot=content]").first.bounding_box()
    assert box["width"] >= 600, box
    assert box["width"] >= answer["width"] * 0.8


def test_the_model_label_lines_up_with_the_answer(open_page, user, chat):
    page = open_page(user, viewport=DESKTOP)
    page.goto(f"/c/{chat.id}/")
    for answer in page.locator(".message--assistant").all():
        content = answer.locator("[data-slot=content]").bounding_box()
        meta = answer.locator("[data-slot=meta]").bounding_box()
        assert abs(meta["x"] - content["x"]) <= 4, (meta, content)


def test_the_composer_says_the_same_on_a_new_and_an_existing_chat(open_page, user, chat):
    page = open_page(user)
    page.goto("/")
    new = page.locator("#id_content").get_attribute("placeholder")
    page.goto(f"/c/{chat.id}/")
    expect(page.locator("#id_content")).to_have_attribute("placeholder", new)


def test_sign_in_page_names_the_product_and_no_page_asks_for_a_missing_file(open_page, user, chat):
    errors = []
    page = open_page()
    page.on("console", lambda message: message.type == "error" and errors.append(message.text))
    page.on("response", lambda response: response.status >= 400 and errors.append(response.url))
    page.goto("/accounts/login/")
    expect(page.locator(".auth-card .brand")).to_have_text("Chat")
    expect(page.get_by_role("heading", name="Sign in")).to_be_visible()

    icon = page.request.get("/favicon.ico")
    assert icon.ok and icon.headers["content-type"] == "image/x-icon"
    assert icon.body()[:4] == b"\x00\x00\x01\x00"  # an ICO file's header
    manifest_url = page.locator("link[rel=manifest]").get_attribute("href")
    manifest = page.request.get(manifest_url).json()
    assert manifest["name"] == "Chat" and manifest["icons"]
    svg_url = page.locator("link[rel=icon]").get_attribute("href")
    assert page.request.get(svg_url).headers["content-type"].startswith("image/svg+xml")

    signed_in = open_page(user)
    signed_in.on("console", lambda msg: msg.type == "error" and errors.append(msg.text))
    signed_in.on(
        "response", lambda response: response.status >= 400 and errors.append(response.url)
    )
    for url in ("/", f"/c/{chat.id}/", "/history/?q=hi", "/import/"):
        signed_in.goto(url)
        signed_in.wait_for_load_state("load")
    assert errors == []


def test_a_hidden_sidebar_stays_hidden_and_the_menu_button_brings_it_back(open_page, user, chat):
    page = open_page(user, viewport=DESKTOP)
    page.goto(f"/c/{chat.id}/")
    sidebar = page.locator("#sidebar")
    expect(sidebar).to_be_visible()
    menu = page.get_by_role("link", name="Show conversations")
    expect(menu).to_be_hidden()

    page.keyboard.press("Control+Shift+S")
    expect(sidebar).to_be_hidden()
    page.reload()
    expect(sidebar).to_be_hidden()
    expect(menu).to_be_visible()

    menu.click()
    expect(sidebar).to_be_visible()
    expect(menu).to_be_hidden()
    page.reload()
    expect(sidebar).to_be_visible()


def test_the_settings_fit_under_the_top_bar_at_200_percent_zoom(open_page, user, provider, chat):
    page = open_page(user, viewport=ZOOMED)
    page.goto(f"/c/{chat.id}/")
    page.get_by_text("Settings", exact=True).click()
    panel = page.locator(".settings-panel")
    expect(panel).to_be_visible()
    box = panel.bounding_box()
    assert box["y"] >= 0, box
    system = page.get_by_label("System prompt for this chat")
    system.fill("Be brief.")
    expect(system).to_be_in_viewport()


def test_an_earlier_page_says_why_the_composer_is_off_and_where_to_reply(open_page, user, provider):
    chat = make.conversation(user, "Long talk")
    rows = make.chain(chat, [f"message number {index}" for index in range(120)])
    page = open_page(user)
    page.goto(f"/c/{chat.id}/?m={rows[3].id}#m-{rows[3].id}")
    box = page.locator("#id_content")
    expect(box).to_be_disabled()
    note = page.locator("#composer-note")
    expect(note).to_be_visible()
    expect(box).to_have_accessible_description(re.compile("earlier part of this conversation"))

    note.get_by_role("link", name="Go to the latest message").click()
    expect(page.locator(f"#m-{rows[-1].id}")).to_be_in_viewport()
    expect(box).to_be_enabled()
    expect(page.locator("#composer-note")).to_have_count(0)
