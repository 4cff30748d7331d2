"""The database work of starting an answer, counted: each `chat.send` (and regenerate, edit) is
one transaction of a fixed, small number of queries, whatever the length of the conversation."""

import asyncio
import uuid

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from chatsite.db import db_call
from conversations import services
from conversations.models import Conversation, Message
from conversations.protocol import ChatSend

pytestmark = pytest.mark.django_db

# PostgreSQL locks the user's row first (the per-user limit across processes); SQLite's IMMEDIATE
# transactions serialise writers already, so it skips that query.
LOCK = 1 if connection.features.has_select_for_update else 0


def send(user, **fields) -> tuple[services.Exchange, list[str]]:
    request = ChatSend(conversation=None, parent=None, content="Hello there", **fields)
    with CaptureQueriesContext(connection) as queries:
        exchange = services.message_send(user=user, request=request, assistant_id=uuid.uuid4())
    return exchange, [query["sql"] for query in queries.captured_queries]


def statements(sql: list[str]) -> list[str]:
    """The statements that count, without BEGIN/COMMIT/SAVEPOINT bookkeeping."""
    return [
        q for q in sql if q.split()[0].upper() in {"SELECT", "WITH", "INSERT", "UPDATE", "DELETE"}
    ]


def finish(exchange: services.Exchange) -> None:
    services.message_finish(
        message_id=exchange.assistant_message.id, content="Hi!", status="complete",
        provider="fake", model="fake-model", prompt_tokens=1, completion_tokens=1,
    )  # fmt: skip


def test_first_send_is_four_queries_in_one_transaction(ada, chat_config):
    exchange, sql = send(ada)

    # The limit's count, the default provider, the conversation, the question and the answer
    # (one INSERT).
    assert len(statements(sql)) == 4 + LOCK, sql
    assert [q.split()[0] for q in statements(sql)][-2:] == ["INSERT"] * 2
    conversation = Conversation.objects.get(pk=exchange.conversation.id)
    assert conversation.current_leaf_id == exchange.assistant_message.id
    assert exchange.history == [{"role": "user", "content": "Hello there"}]
    assert exchange.title_source == "Hello there"


def test_follow_up_costs_the_same_however_long_the_conversation(ada, chat_config):
    first, _ = send(ada)
    finish(first)
    conversation_id = first.conversation.id
    counts = []
    for turn in range(6):
        request = ChatSend(conversation=conversation_id, parent=None, content=f"Turn {turn}")
        with CaptureQueriesContext(connection) as queries:
            exchange = services.message_send(user=ada, request=request, assistant_id=uuid.uuid4())
        counts.append(len(statements([q["sql"] for q in queries.captured_queries])))
        finish(exchange)

    # The limit's count, the conversation with its provider and leaf, its update, the two
    # messages (one INSERT), the branch as the provider's history (one recursive query) and its
    # attachments.
    assert counts == [6 + LOCK] * 6
    assert [m["content"] for m in exchange.history][-3:] == ["Turn 4", "Hi!", "Turn 5"]
    leaf = Conversation.objects.get(pk=conversation_id).current_leaf
    assert leaf.id == exchange.assistant_message.id
    assert leaf.parent.content == "Turn 5"


def test_regenerate_and_edit_are_a_handful_of_queries(ada, chat_config):
    first, _ = send(ada)
    finish(first)

    with CaptureQueriesContext(connection) as queries:
        again = services.message_regenerate(
            user=ada, message_id=first.assistant_message.id, assistant_id=uuid.uuid4()
        )
    # Count, the answer with its conversation, the conversation's update, the branch, its
    # attachments, the answer.
    assert len(statements([q["sql"] for q in queries.captured_queries])) == 6 + LOCK
    assert again.assistant_message.parent_id == first.user_message.id
    assert again.history == [{"role": "user", "content": "Hello there"}]
    finish(again)

    with CaptureQueriesContext(connection) as queries:
        edited = services.message_edit(
            user=ada, message_id=first.user_message.id, content="Hello again",
            assistant_id=uuid.uuid4(),
        )  # fmt: skip
    # Count, the message with its conversation, the update, the two messages (one INSERT), the
    # original's attachments to keep (a first message has no parent to read, and its branch is
    # itself).
    assert len(statements([q["sql"] for q in queries.captured_queries])) == 5 + LOCK
    assert edited.history == [{"role": "user", "content": "Hello again"}]
    conversation = Conversation.objects.get(pk=first.conversation.id)
    assert conversation.current_leaf_id == edited.assistant_message.id


def test_the_final_save_is_two_queries(ada, chat_config):
    exchange, _ = send(ada)
    with CaptureQueriesContext(connection) as queries:
        finish(exchange)
    assert len(statements([q["sql"] for q in queries.captured_queries])) == 2
    assert Message.objects.get(pk=exchange.assistant_message.id).status == "complete"


def test_a_refused_send_writes_nothing(ada, chat_config, settings):
    settings.CHAT_MAX_CONCURRENT_GENERATIONS = 1
    send(ada)
    with pytest.raises(services.ChatError) as refused:
        send(ada)
    assert refused.value.code == "rate_limited"
    assert Conversation.objects.filter(owner=ada).count() == 1
    assert Message.objects.filter(conversation__owner=ada).count() == 2


@pytest.mark.django_db(transaction=True)
async def test_many_simultaneous_sends_all_succeed(chat_config, django_user_model):
    """No "database is locked", no lost row: 60 users send at the same moment."""
    users = await db_call(
        lambda: [django_user_model.objects.create_user(username=f"u{i}") for i in range(60)]
    )()

    async def start(user):
        request = ChatSend(conversation=None, parent=None, content=f"Hi from {user.username}")
        return await db_call(services.message_send, writes=True)(
            user=user, request=request, assistant_id=uuid.uuid4()
        )

    exchanges = await asyncio.gather(*(start(user) for user in users))

    assert len({exchange.conversation.id for exchange in exchanges}) == 60
    assert await db_call(Message.objects.count)() == 120


def test_checkpoints_of_many_answers_land_each_in_its_own_row(ada, chat_config):
    """Checkpoints are written in SQL of our own: every text lands in its answer's row, however
    awkward (quotes, backslashes, percent signs, emoji), in a few statements for hundreds of
    answers; an answer that has ended meanwhile is left alone."""
    conversation = Conversation.objects.create(owner=ada)
    streaming = Message.objects.bulk_create(
        Message(
            conversation=conversation,
            role=Message.Role.ASSISTANT,
            status=Message.Status.STREAMING,
            content="",
        )
        for _ in range(650)
    )
    ended = Message.objects.create(
        conversation=conversation,
        role=Message.Role.ASSISTANT,
        status=Message.Status.COMPLETE,
        content="final",
    )
    texts = {m.id: f"answer {i}: 'quoted' \\ 100% 🙂 %s" for i, m in enumerate(streaming[:-1])}
    stamp_only = streaming[-1]
    with CaptureQueriesContext(connection) as queries:
        services.message_checkpoint_many(
            checkpoints={**texts, ended.id: "overwritten?", stamp_only.id: None}
        )
    rows = dict(Message.objects.values_list("id", "content"))
    assert all(rows[key] == text for key, text in texts.items())
    assert rows[ended.id] == "final"
    assert rows[stamp_only.id] == ""
    updates = [q["sql"] for q in queries.captured_queries if q["sql"].startswith("UPDATE")]
    # 650 texts in statements of 300, and the stamp alone.
    assert len(updates) == 4, updates
    assert Message.objects.get(pk=stamp_only.pk).checkpointed_at is not None


def test_the_final_save_writes_every_field_and_touches_only_its_conversation(ada, chat_config):
    """The final save is SQL of our own: every field lands as the ORM would have stored it
    (awkward text, NULL counts, the time), the answer's conversation moves to the top of the
    list and no other does, in two statements."""
    exchange, _ = send(ada)
    other, _ = send(ada)
    before = Conversation.objects.get(pk=other.conversation.id).updated_at
    text = "it's 100% \\done\\ 🙂 %s %(x)s"
    with CaptureQueriesContext(connection) as queries:
        services.message_finish(
            message_id=exchange.assistant_message.id, content=text, status="error",
            provider="p" * 70, model="fake-model", prompt_tokens=None, completion_tokens=7,
            error_code="upstream_error", error_detail="Bad \"gateway\"", content_html="<p>x</p>",
        )  # fmt: skip

    row = Message.objects.get(pk=exchange.assistant_message.id)
    assert (row.content, row.status, row.provider, row.model) == (
        text, "error", "p" * 64, "fake-model",
    )  # fmt: skip
    assert (row.prompt_tokens, row.completion_tokens) == (None, 7)
    assert (row.error_code, row.error_detail) == ("upstream_error", 'Bad "gateway"')
    assert row.content_html == "<p>x</p>"
    assert row.completed_at is not None and row.completed_at == row.checkpointed_at
    mine = Conversation.objects.get(pk=exchange.conversation.id)
    assert mine.updated_at == row.completed_at
    assert Conversation.objects.get(pk=other.conversation.id).updated_at == before
    assert len(statements([q["sql"] for q in queries.captured_queries])) == 2


def test_the_final_save_titles_an_untitled_conversation_in_the_same_statements(ada, chat_config):
    """A first answer's final save gives its conversation the title too, with its stamp in one
    UPDATE, and returns the conversation as it now is (for the socket's frame); a conversation
    that has a title (the user renamed it meanwhile) keeps it."""
    exchange, _ = send(ada)
    other, _ = send(ada)
    with CaptureQueriesContext(connection) as queries:
        titled = services.message_finish(
            message_id=exchange.assistant_message.id, content="Hi!", status="complete",
            provider="fake", model="fake-model", prompt_tokens=1, completion_tokens=1,
            title="Hello there",
        )  # fmt: skip
    writes = [q for q in statements([q["sql"] for q in queries.captured_queries]) if "UPDATE" in q]
    assert len(writes) == 2, writes
    row = Conversation.objects.get(pk=exchange.conversation.id)
    assert (row.title, row.updated_at) == ("Hello there", titled.updated_at)
    assert (titled.pk, titled.title) == (row.pk, "Hello there")
    assert Conversation.objects.get(pk=other.conversation.id).title == ""

    Conversation.objects.filter(pk=other.conversation.id).update(title="Mine")
    kept = services.message_finish(
        message_id=other.assistant_message.id, content="Hi!", status="complete", provider="fake",
        model="fake-model", prompt_tokens=1, completion_tokens=1, title="Hello there",
    )  # fmt: skip
    assert kept is None
    row = Conversation.objects.get(pk=other.conversation.id)
    assert row.title == "Mine"
    assert row.updated_at == Message.objects.get(pk=other.assistant_message.id).completed_at


def test_the_final_save_of_a_missing_answer_writes_nothing(ada, chat_config):
    exchange, _ = send(ada)
    before = Conversation.objects.get(pk=exchange.conversation.id).updated_at
    with CaptureQueriesContext(connection) as queries:
        services.message_finish(
            message_id=uuid.uuid4(), content="x", status="complete", provider="", model="",
            prompt_tokens=None, completion_tokens=None,
        )  # fmt: skip
    assert Conversation.objects.get(pk=exchange.conversation.id).updated_at == before
    assert len(statements([q["sql"] for q in queries.captured_queries])) == 1
