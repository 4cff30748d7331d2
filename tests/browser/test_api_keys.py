"""API keys in a real browser: from the account menu to a key that works with the API, shown
once, and revoked."""

import re

import httpx
import pytest
from playwright.sync_api import expect

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def test_a_key_made_on_the_account_page_opens_the_api_until_revoked(
    open_page, user, provider, chat_server
):
    page = open_page(user)
    page.goto("/")
    page.locator(".account-menu summary").click()
    page.get_by_role("link", name="API keys").click()
    expect(page.get_by_role("heading", name="API keys")).to_be_visible()
    page.get_by_label("Name").fill("editor")
    page.get_by_role("button", name="Create key").click()
    key = page.locator("#new-api-key").inner_text()
    assert re.fullmatch(r"chat-[A-Za-z0-9_-]{40,}", key)
    headers = {"Authorization": f"Bearer {key}"}
    models = httpx.get(f"{chat_server.url}/v1/models", headers=headers, timeout=10)
    assert models.status_code == 200
    assert "fake/fake-model" in [model["id"] for model in models.json()["data"]]
    # Shown once: the list shows the start of the key, never the key.
    page.goto("/account/api-keys/")
    expect(page.locator("#new-api-key")).to_have_count(0)
    row = page.locator("table.api-keys tbody tr", has_text="editor")
    expect(row).to_contain_text(key[:11])
    assert key not in page.content()
    row.get_by_role("button", name="Revoke").click()
    expect(page.locator("table.api-keys tbody tr", has_text="editor")).to_contain_text("revoked")
    refused = httpx.get(f"{chat_server.url}/v1/models", headers=headers, timeout=10)
    assert refused.status_code == 401
