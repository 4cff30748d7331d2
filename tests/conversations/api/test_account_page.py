"""Keys on the account page (create, shown once; list; revoke) and in the admin."""

import re

import pytest

from conversations.api.keys import api_key_hash
from conversations.api.selectors import api_key_authenticate
from conversations.api.services import api_key_create, api_key_touch, api_key_touch_due
from conversations.models import ApiCall, ApiKey

pytestmark = pytest.mark.django_db

KEY = re.compile(r"chat-[A-Za-z0-9_-]{40,}")


def test_a_new_key_is_shown_once_and_stored_hashed(signed_in, ada):
    response = signed_in.post("/account/api-keys/", {"name": "editor", "store_conversations": "on"})
    assert response.status_code == 200
    assert response["Cache-Control"] == "no-store"
    keys = set(KEY.findall(response.content.decode()))
    assert len(keys) == 1
    key = keys.pop()
    row = ApiKey.objects.get()
    assert (row.user, row.name, row.store_conversations) == (ada, "editor", True)
    assert row.key_hash == api_key_hash(key)
    assert api_key_authenticate(key=key) == row
    again = signed_in.get("/account/api-keys/").content.decode()
    assert key not in again and row.prefix in again and "editor" in again


def test_a_key_needs_a_name(signed_in):
    response = signed_in.post("/account/api-keys/", {"name": "  "})
    assert response.status_code == 400
    assert not ApiKey.objects.exists()


def test_revoking_a_key_from_the_account_page(signed_in, ada):
    created = api_key_create(user=ada, name="old")
    response = signed_in.post(f"/account/api-keys/{created.row.pk}/revoke/")
    assert response.status_code == 302
    assert api_key_authenticate(key=created.key) is None
    assert "revoked" in signed_in.get("/account/api-keys/").content.decode()


def test_the_page_needs_a_sign_in(client):
    assert client.get("/account/api-keys/").status_code == 302
    assert client.post("/account/api-keys/", {"name": "x"}).status_code == 302
    assert not ApiKey.objects.exists()


def test_last_use_is_written_at_most_once_a_minute(ada, django_assert_num_queries):
    row = api_key_create(user=ada, name="busy").row
    assert api_key_touch_due(api_key=row)
    with django_assert_num_queries(1):
        api_key_touch(api_key=row)
    row = ApiKey.objects.get()
    assert row.last_used_at is not None
    assert not api_key_touch_due(api_key=row)
    first = row.last_used_at
    # A second process racing the first writes nothing: the condition is in the statement.
    api_key_touch(api_key=ApiKey.objects.get())
    assert ApiKey.objects.get().last_used_at == first


def test_admin_creates_a_key_for_any_user_and_shows_it_once(admin_client, ada):
    response = admin_client.post(
        "/admin/conversations/apikey/add/",
        {"user": ada.pk, "name": "for ada", "store_conversations": ""},
    )
    assert response.status_code == 200
    key = KEY.findall(response.content.decode())[0]
    row = ApiKey.objects.get()
    assert row.user == ada and row.key_hash == api_key_hash(key)
    listing = admin_client.get("/admin/conversations/apikey/").content.decode()
    assert key not in listing and row.prefix in listing
    admin_client.post(
        "/admin/conversations/apikey/",
        {"action": "revoke", "_selected_action": [row.pk]},
    )
    assert api_key_authenticate(key=key) is None


def test_admin_lists_every_users_api_calls(admin_client, ada, grace):
    for user in (ada, grace):
        ApiCall.objects.create(
            user=user,
            key_name=f"{user.username}-key",
            provider="fake",
            model="fake-model",
            status=ApiCall.Status.COMPLETE,
            prompt_tokens=3,
            completion_tokens=7,
            duration_ms=12,
        )
    page = admin_client.get("/admin/conversations/apicall/").content.decode()
    assert "ada-key" in page and "grace-key" in page
    call = ApiCall.objects.first()
    assert admin_client.get(f"/admin/conversations/apicall/{call.pk}/change/").status_code == 200
    assert admin_client.get("/admin/conversations/apicall/add/").status_code == 403
