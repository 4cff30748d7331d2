"""Share links: a snapshot of the current branch behind an unguessable token, revocable, shown
only to signed-in users unless the admin opens them to everyone, never leaking account data."""

import re

import pytest
from django.test import override_settings

from conversations import selectors, services
from conversations.models import Message, SharedConversation
from tests.conversations import page_factories as make


def _share_url(response) -> str:
    match = re.search(r'value="http://testserver(/s/[A-Za-z0-9_-]+/)"', response.content.decode())
    assert match, "the page shows the new link"
    return match.group(1)


@pytest.mark.django_db
def test_share_copies_the_current_branch_with_its_html(ada):
    chat = make.conversation(ada, "Greetings")
    question, _answer = make.chain(chat, ["How to greet?", "Say **hello**."])
    # Another branch from the same question, not the one looked at: not in the copy.
    make.message(chat, "Say *hi*.", role="assistant", parent=question)
    make.chain(chat, ["And in French?", "Say `bonjour`."], parent=_answer)

    share = services.share_create(conversation=chat)

    assert len(share.token) >= 43
    assert [(m["role"], m["content"]) for m in share.messages] == [
        ("user", "How to greet?"),
        ("assistant", "Say **hello**."),
        ("user", "And in French?"),
        ("assistant", "Say `bonjour`."),
    ]
    assert share.messages[1]["html"] == "<p>Say <strong>hello</strong>.</p>\n"
    assert share.messages[0]["html"] is None


@pytest.mark.django_db
def test_each_share_gets_its_own_token(ada):
    chat = make.conversation(ada, "Twice")
    make.chain(chat, ["q", "a"])
    tokens = {services.share_create(conversation=chat).token for _ in range(3)}
    assert len(tokens) == 3


@pytest.mark.django_db
def test_the_shared_page_shows_the_snapshot_not_later_edits(signed_in, ada, grace, client):
    chat = make.conversation(ada, "Capitals")
    make.chain(chat, ["Capital of France?", "It is **Paris**."])
    url = _share_url(signed_in.post(f"/c/{chat.id}/share/", follow=True))
    Message.objects.filter(conversation=chat, role="assistant").update(
        content="Edited later", content_html=None
    )
    services.conversation_rename(conversation=chat, title="Renamed later")

    client.force_login(grace)
    response = client.get(url)

    body = response.content.decode()
    assert response.status_code == 200
    assert "It is <strong>Paris</strong>." in body and "Capital of France?" in body
    assert "Edited later" not in body and "Renamed later" not in body
    assert '<meta name="robots" content="noindex, nofollow">' in body
    assert response["X-Robots-Tag"] == "noindex, nofollow"
    assert "script-src 'self'" in response["Content-Security-Policy"]
    # No sidebar, no account: nothing of ada's but the messages, nothing of grace's either.
    assert 'id="sidebar"' not in body and "ada" not in body and "grace" not in body
    assert str(chat.id) not in body


@pytest.mark.django_db
def test_signed_out_visitors_are_sent_to_sign_in_unless_shares_are_public(ada, client):
    chat = make.conversation(ada, "Open")
    make.chain(chat, ["q", "the answer"])
    share = services.share_create(conversation=chat)

    closed = client.get(f"/s/{share.token}/")
    with override_settings(CHAT_PUBLIC_SHARES=True):
        opened = client.get(f"/s/{share.token}/")
        unknown = client.get("/s/not-a-token/")

    assert closed.status_code == 302 and closed["Location"].startswith("/accounts/login/")
    assert opened.status_code == 200 and "the answer" in opened.content.decode()
    assert unknown.status_code == 404


@pytest.mark.django_db
def test_revoked_and_unknown_tokens_are_a_plain_404(signed_in, ada):
    chat = make.conversation(ada, "Gone soon")
    make.chain(chat, ["q", "a"])
    share = services.share_create(conversation=chat)

    response = signed_in.post(f"/shares/{share.pk}/revoke/", {"next": "/account/"})

    assert response.status_code == 302 and response["Location"] == "/account/"
    assert not SharedConversation.objects.filter(pk=share.pk).exists()
    assert signed_in.get(f"/s/{share.token}/").status_code == 404
    assert signed_in.get("/s/" + "x" * 43 + "/").status_code == 404


@pytest.mark.django_db
def test_a_deactivated_owners_links_stop_working(client, ada, grace):
    chat = make.conversation(ada, "Old team notes")
    make.chain(chat, ["q", "a"])
    share = services.share_create(conversation=chat)
    client.force_login(grace)
    assert client.get(f"/s/{share.token}/").status_code == 200

    ada.is_active = False
    ada.save()

    assert client.get(f"/s/{share.token}/").status_code == 404


@pytest.mark.django_db
def test_deleting_the_conversation_ends_its_links(signed_in, ada):
    chat = make.conversation(ada, "Delete me")
    make.chain(chat, ["q", "a"])
    share = services.share_create(conversation=chat)

    signed_in.post(f"/c/{chat.id}/delete/")

    assert signed_in.get(f"/s/{share.token}/").status_code == 404
    assert not SharedConversation.objects.exists()


@pytest.mark.django_db
def test_another_user_cannot_share_revoke_or_list_my_links(client, ada, grace):
    chat = make.conversation(ada, "Mine")
    make.chain(chat, ["q", "a"])
    share = services.share_create(conversation=chat)
    client.force_login(grace)

    assert client.post(f"/c/{chat.id}/share/").status_code == 404
    assert client.get(f"/c/{chat.id}/share/").status_code == 404
    assert client.post(f"/shares/{share.pk}/revoke/").status_code == 404
    account = client.get("/account/").content.decode()

    assert SharedConversation.objects.count() == 1
    assert share.token not in account and "Mine" not in account
    assert selectors.share_list_for_user(user=grace) == []


@pytest.mark.django_db
def test_the_account_page_lists_my_links_with_revoke(signed_in, ada):
    chat = make.conversation(ada, "Listed")
    make.chain(chat, ["q", "a"])
    share = services.share_create(conversation=chat)

    body = signed_in.get("/account/").content.decode()

    assert f"http://testserver/s/{share.token}/" in body
    assert f'action="/shares/{share.pk}/revoke/"' in body
    assert "Listed" in body


@pytest.mark.django_db
def test_the_conversation_menu_links_to_sharing(signed_in, ada):
    chat = make.conversation(ada, "Menu")
    body = signed_in.get(f"/c/{chat.id}/").content.decode()
    assert f'href="/c/{chat.id}/share/"' in body
