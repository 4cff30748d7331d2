import html
import re
from datetime import timedelta

import pytest
from django.contrib.auth.models import Permission
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone
from django.utils.formats import localize

from conversations.admin import INLINE_CONTENT_CHARS, INLINE_MESSAGE_LIMIT
from conversations.models import Conversation, Message
from providers.models import FallbackChain, ProviderConfig

pytestmark = pytest.mark.django_db

CONVERSATIONS = reverse("admin:conversations_conversation_changelist")
MESSAGES = reverse("admin:conversations_message_changelist")


@pytest.fixture
def ada(django_user_model):
    return django_user_model.objects.create_user(username="ada")


@pytest.fixture
def grace(django_user_model):
    return django_user_model.objects.create_user(username="grace")


@pytest.fixture
def config(db):
    return ProviderConfig.objects.create(
        name="fake-openai", provider_class="OpenAICompatible", default_model="fake-model"
    )


@pytest.fixture
def chain(db):
    return FallbackChain.objects.create(name="backup-chain")


def _conversation(owner, title="", **kwargs) -> Conversation:
    return Conversation.objects.create(owner=owner, title=title, **kwargs)


def _messages(conversation, contents, *, start=None, role=None, **fields) -> list[Message]:
    """Messages one second apart (alternating user/assistant unless a role is given), in one
    INSERT and one UPDATE: created_at is auto_now_add, so it is set explicitly afterwards."""
    start = start or timezone.now() - timedelta(days=1)
    messages = Message.objects.bulk_create(
        Message(
            conversation=conversation,
            role=role or (Message.Role.USER if i % 2 == 0 else Message.Role.ASSISTANT),
            content=content,
            **fields,
        )
        for i, content in enumerate(contents)
    )
    for i, message in enumerate(messages):
        message.created_at = start + timedelta(seconds=i)
    Message.objects.bulk_update(messages, ["created_at"])
    return messages


def _page(client, url, params=None) -> str:
    response = client.get(url, params or {})
    assert response.status_code == 200, response.status_code
    return response.content.decode()


def _result_rows(page: str) -> str:
    """The changelist's table of results, without the filters and search box around it."""
    match = re.search(r'<table id="result_list">.*?</table>', page, re.S)
    return match.group(0) if match else ""


def _rows(page: str) -> list[dict[str, str]]:
    """Each table row of the page (changelist results or inline messages) as {field: text}."""
    rows = []
    for row in re.findall(r"<tr[^>]*>(.*?)</tr>", page, re.S):
        cells = re.findall(r'<t[dh] class="field-(\w+)[^"]*">(.*?)</t[dh]>', row, re.S)
        if cells:
            rows.append({name: _text(cell) for name, cell in cells})
    return rows


def _text(cell: str) -> str:
    return html.unescape(re.sub(r"<[^>]+>", "", cell)).strip()


def _follow_filter(client, url, page, label) -> str:
    """Click the filter link with this text, as an admin would."""
    hrefs = re.findall(rf'<a href="(\?[^"]*)"[^>]*>\s*{re.escape(label)}\s*</a>', page)
    assert len(hrefs) == 1, f"{label!r} links: {hrefs}"
    return _page(client, url + html.unescape(hrefs[0]))


def test_conversation_list_shows_owner_title_provider_model_count_and_last_activity(
    admin_client, ada, grace, config, chain
):
    direct = _conversation(ada, "Sourdough questions", provider_config=config, model="gpt-x")
    _messages(direct, ["How long to proof?", "About four hours.", "Thanks"])
    _conversation(grace, "Backup talk", fallback_chain=chain)
    _conversation(grace, "")

    page = _page(admin_client, CONVERSATIONS)
    rows = _result_rows(page)

    for header in ["Title", "Owner", "Provider", "Model", "Messages", "Last activity"]:
        assert re.search(rf"<th[^>]*>.*?{header}.*?</th>", rows, re.S), header
    by_title = {row["title_display"]: row for row in _rows(rows)}
    assert by_title.keys() == {"Sourdough questions", "Backup talk", "(untitled)"}
    direct_row = by_title["Sourdough questions"]
    assert direct_row["owner"] == "ada"
    assert direct_row["provider_display"] == "fake-openai"
    assert direct_row["model"] == "gpt-x"
    assert direct_row["message_count"] == "3"
    direct.refresh_from_db()
    assert direct_row["last_activity"] == localize(timezone.template_localtime(direct.updated_at))
    assert by_title["Backup talk"]["provider_display"] == "backup-chain (fallback chain)"
    assert by_title["Backup talk"]["message_count"] == "0"
    assert "3 conversations" in page


def test_conversation_list_queries_do_not_grow_with_the_number_of_conversations(
    admin_client, ada, config, chain, django_assert_max_num_queries
):
    def add(count):
        for i in range(count):
            target = {"provider_config": config} if i % 2 else {"fallback_chain": chain}
            _messages(_conversation(ada, f"chat {i}", **target), ["q", "a"])

    add(2)
    with CaptureQueriesContext(connection) as few:
        _page(admin_client, CONVERSATIONS)
    add(58)
    with django_assert_max_num_queries(len(few.captured_queries)):
        page = _page(admin_client, CONVERSATIONS)
    assert [row["message_count"] for row in _rows(page)] == ["2"] * 60


def test_conversation_filters_by_provider_model_message_status_and_date(
    admin_client, ada, config, chain
):
    streaming = _conversation(ada, "Alpha chat", provider_config=config, model="gpt-x")
    _messages(streaming, ["hi"])
    _messages(streaming, [""], status=Message.Status.STREAMING)
    failed = _conversation(ada, "Bravo chat", fallback_chain=chain, model="llama-y")
    _messages(failed, ["hi"])
    _messages(failed, ["partial"], status=Message.Status.ERROR, error_code="rate_limited")
    old = _conversation(ada, "Charlie chat", provider_config=config, model="llama-y")
    Conversation.objects.filter(pk=old.pk).update(updated_at=timezone.now() - timedelta(days=60))
    titles = {"Alpha chat", "Bravo chat", "Charlie chat"}

    def shown(page):
        return {title for title in titles if title in _result_rows(page)}

    page = _page(admin_client, CONVERSATIONS)
    assert shown(page) == titles
    assert shown(_follow_filter(admin_client, CONVERSATIONS, page, "fake-openai")) == {
        "Alpha chat",
        "Charlie chat",
    }
    by_chain = _follow_filter(admin_client, CONVERSATIONS, page, "backup-chain (fallback chain)")
    assert shown(by_chain) == {"Bravo chat"}
    by_model = _follow_filter(admin_client, CONVERSATIONS, page, "llama-y")
    assert shown(by_model) == {"Bravo chat", "Charlie chat"}
    assert shown(_follow_filter(admin_client, CONVERSATIONS, page, "Streaming")) == {"Alpha chat"}
    assert shown(_follow_filter(admin_client, CONVERSATIONS, page, "Error")) == {"Bravo chat"}
    recent = _follow_filter(admin_client, CONVERSATIONS, page, "Past 7 days")
    assert shown(recent) == {"Alpha chat", "Bravo chat"}


def test_message_status_filter_keeps_message_counts_right(admin_client, ada):
    chat = _conversation(ada, "Mixed")
    _messages(chat, ["a", "b", "c"])
    _messages(chat, ["x", "y"], status=Message.Status.ERROR)

    page = _page(admin_client, CONVERSATIONS, {"message_status": "error"})

    assert [row["message_count"] for row in _rows(page)] == ["5"]


def test_search_finds_conversations_by_a_word_in_any_message_of_any_user(admin_client, ada, grace):
    bread = _conversation(ada, "Kitchen")
    _messages(bread, ["How do I knead the dough?", "Fold it for ten minutes."])
    also = _conversation(grace, "Weekend")
    _messages(also, ["Pizza DOUGH should rest overnight."])
    other = _conversation(ada, "Travel")
    _messages(other, ["Trains to Lisbon"])

    rows = _rows(_page(admin_client, CONVERSATIONS, {"q": "dough"}))

    assert sorted(row["title_display"] for row in rows) == ["Kitchen", "Weekend"]


def test_search_finds_titles_and_needs_every_word(admin_client, ada):
    _messages(_conversation(ada, "Holiday plans for Lisbon"), ["flights"])
    _messages(_conversation(ada, "Work"), ["Lisbon office move"])

    assert "Holiday plans" in _result_rows(_page(admin_client, CONVERSATIONS, {"q": "lisbon"}))
    both = _result_rows(_page(admin_client, CONVERSATIONS, {"q": "lisbon office"}))
    assert "Work" in both and "Holiday plans" not in both
    # Query syntax of the index is not exposed: operators and quotes are plain punctuation.
    odd = _page(admin_client, CONVERSATIONS, {"q": '"lisbon* -(:'})
    assert "Holiday plans" in _result_rows(odd)


def test_conversation_page_shows_messages_in_order_with_status_and_usage(admin_client, ada, config):
    chat = _conversation(ada, "Review me", provider_config=config)
    question, answer = _messages(chat, ["What is 6 times 7?", "It is 42."])
    Message.objects.filter(pk=answer.pk).update(
        parent=question,
        status=Message.Status.STOPPED,
        provider="fake-openai",
        model="fake-model",
        prompt_tokens=17,
        completion_tokens=5,
    )
    _messages(
        chat,
        ["Again?", "Too many requests"],
        start=timezone.now(),
        status=Message.Status.ERROR,
        error_code="rate_limited",
    )

    page = _page(admin_client, reverse("admin:conversations_conversation_change", args=[chat.pk]))

    rows = _rows(page)
    assert [row["content_display"] for row in rows] == [
        "What is 6 times 7?",
        "It is 42.",
        "Again?",
        "Too many requests",
    ]
    assert rows[1] | {"created_at": ""} == {
        "created_at": "",
        "role": "Assistant",
        "status": "Stopped",
        "provider": "fake-openai",
        "model": "fake-model",
        "prompt_tokens": "17",
        "completion_tokens": "5",
        "error_code": "-",
        "error_detail": "-",
        "content_display": "It is 42.",
    }
    assert [row["status"] for row in rows[2:]] == ["Error", "Error"]
    assert rows[3]["error_code"] == "rate_limited"
    assert "the newest" not in page


def test_conversation_page_caps_the_messages_it_renders(
    admin_client, ada, django_assert_max_num_queries
):
    chat = _conversation(ada, "Long one")
    total = INLINE_MESSAGE_LIMIT + 30
    _messages(chat, [f"message number {i:04d}" for i in range(total)])
    long_answer = "word " * INLINE_CONTENT_CHARS
    _messages(chat, [long_answer], start=timezone.now())
    url = reverse("admin:conversations_conversation_change", args=[chat.pk])

    with django_assert_max_num_queries(15):
        page = _page(admin_client, url)

    contents = [row["content_display"] for row in _rows(page)]
    # The newest ones, oldest first; the first 31 (30 plus room for the long answer) are left out.
    assert contents[:-1] == [f"message number {i:04d}" for i in range(31, total)]
    assert contents[-1].startswith(long_answer[:INLINE_CONTENT_CHARS] + "…")
    assert contents[-1].endswith(
        f"({len(long_answer) - INLINE_CONTENT_CHARS:,} more characters on the message's page)"
    )
    assert f"the newest {INLINE_MESSAGE_LIMIT} of {total + 1:,}, oldest first" in page


def test_nothing_can_be_added_or_changed(admin_client, ada):
    chat = _conversation(ada, "Original title", system_prompt="Be brief.")
    (message,) = _messages(chat, ["original text"])
    chat_url = reverse("admin:conversations_conversation_change", args=[chat.pk])
    message_url = reverse("admin:conversations_message_change", args=[message.pk])

    page = _page(admin_client, chat_url)
    assert 'name="title"' not in page and 'name="messages-0-content"' not in page
    assert "original text" in page and 'name="_save"' not in page
    assert 'name="content"' not in _page(admin_client, message_url)

    response = admin_client.post(chat_url, {"title": "Rewritten", "system_prompt": "Lie."})
    assert response.status_code == 403
    response = admin_client.post(message_url, {"content": "rewritten", "role": "user"})
    assert response.status_code == 403
    for add in ["admin:conversations_conversation_add", "admin:conversations_message_add"]:
        assert admin_client.get(reverse(add)).status_code == 403
    chat.refresh_from_db()
    message.refresh_from_db()
    assert (chat.title, chat.system_prompt, message.content) == (
        "Original title",
        "Be brief.",
        "original text",
    )


def test_superuser_deletes_a_conversation_with_its_messages(admin_client, ada):
    chat = _conversation(ada, "Forget me")
    question, answer = _messages(chat, ["q", "a"])
    Message.objects.filter(pk=answer.pk).update(parent=question)
    Conversation.objects.filter(pk=chat.pk).update(current_leaf=answer)
    keep = _conversation(ada, "Keep me")
    _messages(keep, ["stays"])
    url = reverse("admin:conversations_conversation_delete", args=[chat.pk])

    assert "Forget me" in _page(admin_client, url)
    response = admin_client.post(url, {"post": "yes"})

    assert response.status_code == 302
    assert not Conversation.objects.filter(pk=chat.pk).exists()
    assert not Message.objects.filter(conversation_id=chat.pk).exists()
    assert Message.objects.filter(conversation=keep).count() == 1


def test_staff_who_are_not_superusers_cannot_delete_and_no_one_deletes_single_messages(
    admin_client, client, ada, django_user_model
):
    chat = _conversation(ada, "Guarded")
    (message,) = _messages(chat, ["keep"])
    staff = django_user_model.objects.create_user(username="staff", is_staff=True)
    staff.user_permissions.set(Permission.objects.filter(content_type__app_label="conversations"))
    client.force_login(staff)

    delete_chat = reverse("admin:conversations_conversation_delete", args=[chat.pk])
    assert client.post(delete_chat, {"post": "yes"}).status_code == 403
    assert "Guarded" in _result_rows(_page(client, CONVERSATIONS))
    delete_message = reverse("admin:conversations_message_delete", args=[message.pk])
    assert admin_client.post(delete_message, {"post": "yes"}).status_code == 403
    assert Message.objects.filter(pk=message.pk).exists()


def test_message_list_shows_columns_and_filters_by_status_role_provider_and_model(
    admin_client, ada
):
    chat = _conversation(ada, "Filtered")
    _messages(chat, ["user asks"], role=Message.Role.USER)
    _messages(
        chat,
        ["answer from openai"],
        role=Message.Role.ASSISTANT,
        status=Message.Status.COMPLETE,
        provider="fake-openai",
        model="gpt-x",
    )
    _messages(
        chat,
        ["answer from llama"],
        role=Message.Role.ASSISTANT,
        status=Message.Status.INTERRUPTED,
        provider="local-llama",
        model="gemma-small",
    )
    texts = {"user asks", "answer from openai", "answer from llama"}

    def shown(page):
        return {text for text in texts if text in _result_rows(page)}

    page = _page(admin_client, MESSAGES)
    rows = _result_rows(page)
    for header in ["Conversation", "Role", "Status", "Provider", "Model", "Created at"]:
        assert re.search(rf"<th[^>]*>.*?{header}.*?</th>", rows, re.S), header
    assert rows.count("Filtered</a>") == 3
    assert shown(page) == texts
    assert shown(_follow_filter(admin_client, MESSAGES, page, "Interrupted")) == {
        "answer from llama"
    }
    assert shown(_follow_filter(admin_client, MESSAGES, page, "User")) == {"user asks"}
    assert shown(_follow_filter(admin_client, MESSAGES, page, "fake-openai")) == {
        "answer from openai"
    }
    assert shown(_follow_filter(admin_client, MESSAGES, page, "gemma-small")) == {
        "answer from llama"
    }


def test_message_search_finds_a_word_and_not_others(admin_client, ada):
    chat = _conversation(ada, "Words")
    _messages(chat, ["the quick brown fox", "a lazy dog", "quickly now"])

    rows = _result_rows(_page(admin_client, MESSAGES, {"q": "fox"}))
    assert "the quick brown fox" in rows
    assert "a lazy dog" not in rows and "quickly now" not in rows


def test_message_list_queries_do_not_grow_with_the_number_of_messages(
    admin_client, ada, django_assert_max_num_queries
):
    _messages(_conversation(ada, "first"), ["a", "b"])
    with CaptureQueriesContext(connection) as few:
        _page(admin_client, MESSAGES)
    for i in range(30):
        _messages(_conversation(ada, f"chat {i}"), ["q", "a"])
    with django_assert_max_num_queries(len(few.captured_queries)):
        page = _page(admin_client, MESSAGES)
    assert "62 messages" in page
