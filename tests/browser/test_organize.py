"""Share links, pins, folders and the theme in a real browser, with and without JavaScript."""

import re

import pytest
from playwright.sync_api import expect

from conversations import services
from conversations.models import Conversation, SharedConversation
from tests.conversations import page_factories as make

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def _no_js_page(playwright_browser, chat_server, user):
    from django.test import Client

    context = playwright_browser.new_context(base_url=chat_server.url, java_script_enabled=False)
    client = Client()
    client.force_login(user)
    context.add_cookies(
        [{"name": "sessionid", "value": client.cookies["sessionid"].value, "url": chat_server.url}]
    )
    return context, context.new_page()


# --- Share links ---------------------------------------------------------------------------------


def test_share_from_the_menu_open_as_another_user_then_revoke(open_page, user, django_user_model):
    chat = make.conversation(user, "Bread recipe")
    make.chain(chat, ["How do I bake bread?", "Mix **flour**, water, salt and yeast."])
    page = open_page(user)
    page.goto(f"/c/{chat.id}/")

    page.get_by_label("Conversation actions").click()
    page.get_by_role("link", name="Share…").click()
    page.get_by_role("button", name="Create a link").click()
    link = page.locator(".share-url")
    expect(link).to_have_value(re.compile(r"/s/[A-Za-z0-9_-]{43}/$"))
    url = link.input_value()

    colleague = django_user_model.objects.create_user(username="grace")
    reader = open_page(colleague)
    reader.goto(url)
    expect(reader.locator(".message--assistant strong")).to_have_text("flour")
    expect(reader.locator("h1")).to_have_text("Bread recipe")
    expect(reader.locator("#sidebar")).to_have_count(0)
    expect(reader.locator("meta[name=robots]")).to_have_attribute("content", "noindex, nofollow")

    page.goto("/account/")
    expect(page.locator(".share-url")).to_have_value(url)
    page.get_by_role("button", name=re.compile("Revoke the link to “Bread recipe”")).click()
    expect(page.get_by_text("Link revoked")).to_be_visible()
    assert not SharedConversation.objects.exists()
    response = reader.goto(url)
    assert response.status == 404


# --- Pins and folders -----------------------------------------------------------------------------


def test_pin_from_the_sidebar_menu_puts_it_on_top(open_page, user):
    old = make.conversation(user, "Reference card")
    for index in range(4):
        make.conversation(user, f"Newer chat {index}")
    page = open_page(user)
    page.goto("/")
    item = page.locator(f'.conversation-item[data-id="{old.id}"]')

    item.hover()
    item.get_by_label("Actions for “Reference card”").click()
    item.get_by_role("button", name="Pin to the top").click()

    first = page.locator("#conversation-list .conversation-item").first
    expect(first).to_have_attribute("data-id", str(old.id))
    expect(page.locator("#conversation-list .conversation-group").first).to_have_text("Pinned")
    first.hover()
    first.get_by_label("Actions for “Reference card”").click()
    first.get_by_role("button", name="Unpin").click()
    expect(page.locator("#conversation-list .conversation-item").last).to_have_attribute(
        "data-id", str(old.id)
    )


def test_create_a_folder_and_drag_a_conversation_into_it_and_out(open_page, user):
    chat = make.conversation(user, "Quarterly numbers")
    make.conversation(user, "Lunch ideas")
    page = open_page(user)
    page.goto("/")

    page.get_by_role("link", name="New folder").click()
    page.get_by_label("Folder name").fill("Work")
    page.get_by_role("button", name="Create folder").click()
    folder = page.locator(".folder", has_text="Work")
    expect(folder).to_be_visible()

    item = page.locator(f'#conversation-list > .conversation-item[data-id="{chat.id}"]')
    item.drag_to(folder.locator(".folder-summary"))
    inside = folder.locator(f'.conversation-item[data-id="{chat.id}"]')
    expect(inside).to_be_visible()
    assert str(Conversation.objects.get(pk=chat.pk).folder.name) == "Work"

    # Dropped on the list outside any folder, it leaves the folder (and is kept).
    inside.drag_to(page.locator("#conversation-list > .conversation-item").first)
    expect(
        page.locator(f'#conversation-list > .conversation-item[data-id="{chat.id}"]')
    ).to_be_visible()
    expect(inside).to_have_count(0)
    assert Conversation.objects.get(pk=chat.pk).folder_id is None


def test_move_with_the_keyboard_rename_and_delete_a_folder(open_page, user):
    chat = make.conversation(user, "Trip plans")
    services.folder_create(user=user, name="Personal")
    page = open_page(user)
    page.goto(f"/c/{chat.id}/")

    menu = page.locator(f'.conversation-item[data-id="{chat.id}"] .item-menu')
    menu.locator("summary").focus()
    page.keyboard.press("Enter")
    menu.get_by_label("Folder").focus()
    menu.get_by_label("Folder").select_option(label="Personal")
    menu.get_by_role("button", name="Move").focus()
    page.keyboard.press("Enter")

    folder = page.locator(".folder", has_text="Personal")
    expect(folder.locator(f'.conversation-item[data-id="{chat.id}"]')).to_be_visible()

    folder.get_by_label("Actions for the folder “Personal”").click()
    folder.get_by_role("link", name="Rename folder").click()
    page.get_by_label("Folder name").fill("Holidays")
    page.get_by_role("button", name="Save").click()
    folder = page.locator(".folder", has_text="Holidays")
    expect(folder).to_be_visible()

    folder.get_by_label("Actions for the folder “Holidays”").click()
    folder.get_by_role("button", name=re.compile("Delete folder")).click()
    expect(page.locator(".folder")).to_have_count(0)
    expect(
        page.locator(f'#conversation-list > .conversation-item[data-id="{chat.id}"]')
    ).to_be_visible()


def test_without_javascript_pin_and_move_with_the_conversation_menu(
    playwright_browser, chat_server, user
):
    chat = make.conversation(user, "No script here")
    for index in range(3):
        make.conversation(user, f"Newer {index}")
    services.folder_create(user=user, name="Archive box")
    context, page = _no_js_page(playwright_browser, chat_server, user)
    try:
        page.goto(f"/c/{chat.id}/")
        expect(page.locator("html")).to_have_class("no-js")
        menu = page.locator("#conversation-menu")
        menu.locator("summary").click()
        menu.get_by_label("Folder").select_option(label="Archive box")
        menu.get_by_role("button", name="Move").click()

        expect(page).to_have_url(re.compile(rf"/c/{chat.id}/$"))
        folder = page.locator(".folder", has_text="Archive box")
        expect(folder.locator(f'.conversation-item[data-id="{chat.id}"]')).to_be_visible()

        page.locator("#conversation-menu summary").click()
        page.get_by_role("button", name="Pin to the top").click()
        first = page.locator("#conversation-list .conversation-item").first
        expect(first).to_have_attribute("data-id", str(chat.id))
    finally:
        context.close()


# --- Theme ---------------------------------------------------------------------------------------

DARK_BG = "rgb(23, 24, 28)"
LIGHT_BG = "rgb(255, 255, 255)"


def _first_paint_background(playwright_browser, chat_server, user, *, os_scheme):
    """The page's background as the served HTML and CSS give it, with scripts disabled: what the
    first paint shows, before any script could run."""
    from django.test import Client

    context = playwright_browser.new_context(
        base_url=chat_server.url, java_script_enabled=False, color_scheme=os_scheme
    )
    client = Client()
    client.force_login(user)
    context.add_cookies(
        [{"name": "sessionid", "value": client.cookies["sessionid"].value, "url": chat_server.url}]
    )
    try:
        page = context.new_page()
        page.goto("/")
        theme = page.locator("html").get_attribute("data-theme")
        background = page.locator("body").evaluate("b => getComputedStyle(b).backgroundColor")
        return theme, background
    finally:
        context.close()


@pytest.mark.parametrize(
    ("choice", "os_scheme", "expected"),
    [
        ("dark", "light", DARK_BG),
        ("light", "dark", LIGHT_BG),
        ("system", "dark", DARK_BG),
        ("system", "light", LIGHT_BG),
    ],
)
def test_the_first_paint_has_the_chosen_theme(
    playwright_browser, chat_server, user, choice, os_scheme, expected
):
    services.user_theme_set(user=user, theme=choice)
    theme, background = _first_paint_background(
        playwright_browser, chat_server, user, os_scheme=os_scheme
    )
    assert (theme, background) == (choice, expected)


def test_choose_dark_on_the_account_page_and_it_is_remembered(open_page, user):
    page = open_page(user, color_scheme="light")
    page.goto("/")
    page.locator(".account").click()
    page.get_by_role("link", name="Account and settings").click()

    page.get_by_label("Dark").check()
    page.get_by_role("button", name="Save theme").click()

    expect(page.get_by_text("Theme saved.")).to_be_visible()
    expect(page.locator("html")).to_have_attribute("data-theme", "dark")
    assert page.locator("body").evaluate("b => getComputedStyle(b).backgroundColor") == DARK_BG
    other_device = open_page(user, color_scheme="light")
    other_device.goto("/")
    expect(other_device.locator("html")).to_have_attribute("data-theme", "dark")
