"""Share links, pins, folders and the theme in a real browser, with and without JavaScript."""

import re

import pytest
from playwright.sync_api import expect

from conversations.models import SharedConversation
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
