"""Page actions: rename, archive, delete, switch branch, settings, and the no-JavaScript send."""

import re

import pytest
from django.db import connection
from django.test import AsyncClient
from django.test.utils import CaptureQueriesContext

from conversations.models import Conversation, Message
from conversations.services import BULK_WRITE_BATCH
from tests.conversations import page_factories as make

# --- Rename, archive, delete ----------------------------------------------------------------------


@pytest.mark.django_db
def test_rename_page_saves_the_title_and_returns_to_the_conversation(signed_in, ada):
    chat = make.conversation(ada, "Old name")
    stamp = Conversation.objects.get(pk=chat.pk).updated_at

    assert 'value="Old name"' in signed_in.get(f"/c/{chat.id}/rename/").content.decode()
    response = signed_in.post(f"/c/{chat.id}/rename/", {"title": "  New   name "})

    assert response.status_code == 302 and response["Location"] == f"/c/{chat.id}/"
    chat.refresh_from_db()
    # Tidying a conversation does not move it to the top of the sidebar.
    assert (chat.title, chat.updated_at) == ("New name", stamp)


@pytest.mark.django_db
def test_rename_from_the_script_answers_json(signed_in, ada):
    chat = make.conversation(ada, "Old name")

    ok = signed_in.post(f"/c/{chat.id}/rename/", {"title": "Fresh"}, HTTP_ACCEPT="application/json")
    bad = signed_in.post(f"/c/{chat.id}/rename/", {"title": ""}, HTTP_ACCEPT="application/json")

    assert ok.json() == {"title": "Fresh"}
    assert bad.status_code == 400
    assert bad.json() == {"error": {"code": "invalid", "message": "This field is required."}}
    assert Conversation.objects.get(pk=chat.pk).title == "Fresh"


@pytest.mark.django_db
def test_rename_without_a_title_shows_the_form_again(signed_in, ada):
    chat = make.conversation(ada, "Keep me")

    response = signed_in.post(f"/c/{chat.id}/rename/", {"title": "   "})

    assert response.status_code == 400
    assert "This field is required." in response.content.decode()
    assert Conversation.objects.get(pk=chat.pk).title == "Keep me"


@pytest.mark.django_db
def test_archive_hides_from_the_sidebar_and_unarchive_brings_it_back(signed_in, ada):
    chat = make.conversation(ada, "Side project")
    other = make.conversation(ada, "Main project")

    response = signed_in.post(
        f"/c/{chat.id}/archive/", {"archived": "1", "next": f"/c/{other.id}/"}, follow=True
    )

    assert response.redirect_chain[0][0] == f"/c/{other.id}/"
    html = response.content.decode()
    assert "Archived “Side project”." in html
    assert f'class="conversation-link" href="/c/{chat.id}/"' not in html
    assert Conversation.objects.get(pk=chat.pk).archived

    response = signed_in.post(f"/c/{chat.id}/archive/", {"archived": "0"})
    assert response["Location"] == f"/c/{chat.id}/"
    assert not Conversation.objects.get(pk=chat.pk).archived


@pytest.mark.django_db
def test_archiving_the_open_conversation_goes_to_a_new_chat(signed_in, ada):
    chat = make.conversation(ada, "Done with it")

    response = signed_in.post(f"/c/{chat.id}/archive/", {"archived": "1", "next": f"/c/{chat.id}/"})

    assert response["Location"] == "/"


@pytest.mark.django_db
def test_archive_never_redirects_to_another_site(signed_in, ada):
    chat = make.conversation(ada)

    response = signed_in.post(
        f"/c/{chat.id}/archive/", {"archived": "1", "next": "https://evil.example/"}
    )

    assert response["Location"] == "/"


@pytest.mark.django_db
def test_delete_asks_first_then_removes_the_conversation_and_its_messages(signed_in, ada):
    chat = make.conversation(ada, "Scratch")
    make.chain(chat, ["q", "a", "q2", "a2"])
    keep = make.conversation(ada, "Keep")
    make.chain(keep, ["q", "a"])

    page = signed_in.get(f"/c/{chat.id}/delete/").content.decode()
    assert "“<strong>Scratch</strong>” and all of its messages will be deleted" in page
    assert Conversation.objects.filter(pk=chat.pk).exists()

    response = signed_in.post(f"/c/{chat.id}/delete/", follow=True)

    assert response.redirect_chain[0][0] == "/"
    assert "Deleted “Scratch”." in response.content.decode()
    assert not Conversation.objects.filter(pk=chat.pk).exists()
    assert not Message.objects.filter(conversation_id=chat.pk).exists()
    assert Message.objects.filter(conversation=keep).count() == 2


@pytest.mark.django_db
def test_deleting_a_long_chat_takes_a_few_queries_not_one_per_message(signed_in, ada):
    chat = make.conversation(ada, "Marathon")
    make.chain(chat, [f"m{index}" for index in range(2000)])

    with CaptureQueriesContext(connection) as queries:
        signed_in.post(f"/c/{chat.id}/delete/")

    assert not Message.objects.filter(conversation_id=chat.pk).exists()
    # A dozen and a half queries for each transaction of BULK_WRITE_BATCH messages (the rows that
    # go with messages: attachments, share links, API calls' links), a few more around them.
    transactions = 2000 // BULK_WRITE_BATCH
    assert len(queries) < 10 + 18 * transactions


# --- Branches -------------------------------------------------------------------------------------


@pytest.mark.django_db
def test_sibling_arrow_shows_the_other_branch_down_to_its_newest_leaf(signed_in, ada):
    chat = make.conversation(ada)
    question, first = make.chain(chat, ["Question", "First answer"])
    _, deep = make.chain(chat, ["Follow-up", "Deep answer"], parent=first)
    second = make.message(chat, "Second answer", role="assistant", parent=question)
    Conversation.objects.filter(pk=chat.pk).update(current_leaf=second)

    response = signed_in.post(f"/c/{chat.id}/switch/", {"message": str(first.id)})

    assert response["Location"] == f"/c/{chat.id}/#m-{first.id}"
    html = signed_in.get(f"/c/{chat.id}/").content.decode()
    assert "Deep answer" in html and "Second answer" not in html
    assert Conversation.objects.get(pk=chat.pk).current_leaf_id == deep.id


@pytest.mark.django_db
def test_switch_to_a_message_of_another_conversation_is_not_found(signed_in, ada):
    chat = make.conversation(ada)
    other = make.conversation(ada)
    (stranger,) = make.chain(other, ["elsewhere"])

    assert signed_in.post(f"/c/{chat.id}/switch/", {"message": str(stranger.id)}).status_code == 404
    assert signed_in.post(f"/c/{chat.id}/switch/", {"message": "nope"}).status_code == 404


# --- Settings -------------------------------------------------------------------------------------


@pytest.mark.django_db
def test_settings_are_saved_on_the_conversation_and_cleared_fields_are_removed(signed_in, ada):
    config = make.provider_config(name="local", allowed_models=["small", "large"])
    chat = make.conversation(ada, options={"temperature": 0.2, "max_tokens": 50, "top_p": 1})

    response = signed_in.post(
        f"/c/{chat.id}/settings/",
        {"target": "local:large", "temperature": "0.9", "max_tokens": "", "system": "Be brief."},
    )

    assert response["Location"] == f"/c/{chat.id}/"
    chat.refresh_from_db()
    assert chat.provider_config == config and chat.model == "large"
    assert chat.options == {"temperature": 0.9, "top_p": 1}
    assert chat.system_prompt == "Be brief."
    html = signed_in.get(f"/c/{chat.id}/").content.decode()
    assert '<option value="local:large" selected>' in html
    assert re.search(r">\s*Be brief.</textarea>", html)


@pytest.mark.django_db
def test_settings_from_the_script_get_a_status_and_bad_values_change_nothing(signed_in, ada):
    make.provider_config(name="local")
    chat = make.conversation(ada, system_prompt="Original")

    url = f"/c/{chat.id}/settings/"
    ok = signed_in.post(url, {"system": "New"}, HTTP_ACCEPT="application/json")
    bad = signed_in.post(
        f"/c/{chat.id}/settings/",
        {"temperature": "7", "system": "Never saved"},
        HTTP_ACCEPT="application/json",
    )
    unknown = signed_in.post(
        f"/c/{chat.id}/settings/",
        {"target": "ghost:model", "system": "x"},
        HTTP_ACCEPT="application/json",
    )
    # Without the script: back to the conversation, the sentence in a flash message.
    plain = signed_in.post(f"/c/{chat.id}/settings/", {"temperature": "7"}, follow=True)

    assert ok.status_code == 204
    assert bad.status_code == 400
    assert bad.json()["error"]["code"] == "invalid"
    assert "less than or equal to 2" in bad.json()["error"]["message"]
    assert unknown.status_code == 400
    assert unknown.json()["error"]["message"].startswith("Select a valid choice.")
    assert plain.redirect_chain == [(f"/c/{chat.id}/", 302)]
    assert "less than or equal to 2" in plain.content.decode()
    assert Conversation.objects.get(pk=chat.pk).system_prompt == "New"


# --- Sending without JavaScript -------------------------------------------------------------------


@pytest.mark.django_db
def test_empty_message_is_refused_with_a_form_error(signed_in):
    make.provider_config()

    response = signed_in.post("/send/", {"content": "   ", "target": "fake:fake-model"})

    assert response.status_code == 400
    assert "Write a message first." in response.content.decode()
    assert not Conversation.objects.exists()


@pytest.mark.django_db(transaction=True)
async def test_form_post_sends_and_shows_the_complete_answer(
    ada, chat_config, fake_upstream, clean_engine, view_thread_connections
):
    fake_upstream.behave(reply="The answer is **42**.")
    client = AsyncClient()
    await client.aforce_login(ada)

    response = await client.post(
        "/send/",
        {"content": "What is the answer?", "target": "fake:fake-model", "system": "Be exact.",
         "temperature": "0.5", "max_tokens": "", "parent": ""},
    )  # fmt: skip

    assert response.status_code == 302
    location = response["Location"]
    match = re.fullmatch(r"/c/([0-9a-f-]{36})/#m-([0-9a-f-]{36})", location)
    assert match
    answer = await Message.objects.aget(pk=match.group(2))
    assert (answer.status, answer.content) == (Message.Status.COMPLETE, "The answer is **42**.")
    upstream = fake_upstream.requests[-1].json
    assert upstream["messages"][0] == {"role": "system", "content": "Be exact."}
    assert upstream["temperature"] == 0.5
    page = (await client.get(location.split("#")[0])).content.decode()
    assert "<p>The answer is <strong>42</strong>.</p>" in page

    follow_up = await client.post(
        location.split("#")[0] + "send/",
        {"content": "And why?", "target": "fake:fake-model", "system": "Be exact.",
         "parent": str(answer.id)},
    )  # fmt: skip
    assert follow_up.status_code == 302
    question = await Message.objects.filter(content="And why?").aget()
    assert question.parent_id == answer.id


@pytest.mark.django_db(transaction=True)
async def test_form_post_shows_a_refusal_from_the_engine_as_a_form_error(
    ada, chat_config, clean_engine, view_thread_connections
):
    client = AsyncClient()
    await client.aforce_login(ada)

    response = await client.post("/send/", {"content": "Hi", "target": "fake:no-such-model"})

    assert response.status_code == 400
    assert "Select a valid choice" in response.content.decode()

    await chat_config.__class__.objects.filter(pk=chat_config.pk).aupdate(enabled=False)
    response = await client.post("/send/", {"content": "Hi", "target": ""})
    assert response.status_code == 400
    assert "No provider is configured yet." in response.content.decode()
    assert not await Conversation.objects.aexists()
