"""Export and import formats (conversations.transfer) without the pages around them."""

import json
from datetime import UTC, datetime, timedelta

import pytest
from django.db import OperationalError, connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from conversations import transfer
from conversations.models import Conversation, Message
from conversations.selectors import conversation_sidebar_page
from conversations.transfer import (
    TransferError,
    conversation_export_json,
    conversations_export_all,
    conversations_import,
    import_plans,
)
from tests.conversations import page_factories as make

pytestmark = pytest.mark.django_db


def test_round_trip_keeps_tree_statuses_errors_and_times(ada):
    chat = make.conversation(ada, "Round trip")
    question, answer = make.chain(chat, ["Question", "Partial answer"])
    Message.objects.filter(pk=answer.pk).update(
        status=Message.Status.ERROR, error_code="timeout", error_detail="Too slow."
    )
    retry = make.message(chat, "Full answer", role="assistant", parent=question)
    Conversation.objects.filter(pk=chat.pk).update(current_leaf=retry)
    chat.refresh_from_db()
    stamp = datetime(2024, 3, 1, 12, 0, tzinfo=UTC)
    Message.objects.filter(pk=question.pk).update(created_at=stamp)

    (copy,) = conversations_import(
        user=ada, raw=conversation_export_json(conversation=chat).encode()
    )

    rows = {m.content: m for m in Message.objects.filter(conversation=copy)}
    assert rows["Question"].created_at == stamp
    assert rows["Partial answer"].parent_id == rows["Full answer"].parent_id == rows["Question"].id
    failed = rows["Partial answer"]
    # An export says what its user was told, not the provider's own words (for admins only).
    assert (failed.status, failed.error_code, failed.error_detail) == (
        "error",
        "timeout",
        "The provider did not answer in time.",
    )
    assert copy.current_leaf_id == rows["Full answer"].id


def test_an_answer_exported_mid_stream_comes_back_interrupted(ada):
    chat = make.conversation(ada)
    _, answer = make.chain(chat, ["Question", "Half"])
    Message.objects.filter(pk=answer.pk).update(status=Message.Status.STREAMING)

    (copy,) = conversations_import(
        user=ada, raw=conversation_export_json(conversation=chat).encode()
    )

    assert Message.objects.get(conversation=copy, content="Half").status == "interrupted"


def test_openai_list_with_a_developer_prompt_becomes_the_system_prompt():
    raw = json.dumps([
        {"role": "developer", "content": "Rules."},
        {"role": "user", "content": "Hi"},
        {"role": "assistant", "content": "Hello"},
    ]).encode()  # fmt: skip

    (plan,) = import_plans(raw)

    assert plan["system_prompt"] == "Rules."
    assert [(m["role"], m["content"]) for m in plan["messages"]] == [
        ("user", "Hi"), ("assistant", "Hello"),
    ]  # fmt: skip
    assert plan["messages"][1]["parent"] == plan["messages"][0]["key"]


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        (b"[]", '"messages" must be a non-empty list.'),
        (b'[{"role": "user", "content": 5}]', "Message 1 content must be a string."),
        (b'[{"role": "system", "content": "only"}]', "only a system prompt"),
        (b'"just a string"', "a JSON object or a list of messages"),
        (
            b'{"format": "chatsite.conversation", "version": 1, "conversation": {},'
            b' "messages": [{"id": "a", "role": "user", "content": "x",'
            b' "created_at": "yesterday"}]}',
            "is not an ISO 8601 timestamp",
        ),
        (
            b'{"format": "chatsite.conversation", "version": 1, "conversation": {},'
            b' "messages": [{"id": "a", "role": "user"}, {"id": "a", "role": "user"}]}',
            "needs a unique string id",
        ),
    ],
)
def test_invalid_files_raise_a_readable_error(raw, message):
    with pytest.raises(TransferError, match=message.replace("(", r"\(").replace(")", r"\)")):
        import_plans(raw)


def test_failed_import_writes_nothing(ada):
    raw = json.dumps({
        "format": "chatsite.export", "version": 1,
        "conversations": [
            {"format": "chatsite.conversation", "version": 1, "conversation": {"title": "ok"},
             "messages": [{"id": "1", "role": "user", "content": "fine"}]},
            {"format": "chatsite.conversation", "version": 1, "conversation": {},
             "messages": [{"id": "1", "role": "robot", "content": "x"}]},
        ],
    }).encode()  # fmt: skip

    with pytest.raises(TransferError, match="Conversation 2: Message 1 has an unknown role"):
        conversations_import(user=ada, raw=raw)

    assert not Conversation.objects.exists()


def test_export_all_reads_in_batches_whatever_the_number_of_conversations(ada):
    for index in range(120):
        make.chain(make.conversation(ada, f"chat {index}"), [f"hello {index}"])

    with CaptureQueriesContext(connection) as queries:
        document = json.loads("".join(conversations_export_all(user=ada, batch_size=50)))

    assert len(document["conversations"]) == 120
    # Three queries per batch of 50 (conversations, their messages, their messages' attachments)
    # plus the final empty one.
    assert len(queries) == 3 * 3 + 1


def test_imported_options_keep_only_what_a_user_may_set(ada):
    """A file must not be a way to point the admin's provider (and its token) elsewhere."""
    raw = json.dumps({
        "format": "chatsite.conversation", "version": 1,
        "conversation": {"title": "t", "options": {
            "api_base": "http://attacker.example/v1", "proxy": "http://attacker.example",
            "temperature": 0.4, "max_tokens": 64,
        }},
        "messages": [{"id": "1", "role": "user", "content": "hi"}],
    }).encode()  # fmt: skip

    (copy,) = conversations_import(user=ada, raw=raw)

    assert copy.options == {"temperature": 0.4, "max_tokens": 64}


def test_imported_options_out_of_range_are_refused(ada):
    raw = json.dumps({
        "format": "chatsite.conversation", "version": 1,
        "conversation": {"options": {"temperature": 9}},
        "messages": [{"id": "1", "role": "user", "content": "hi"}],
    }).encode()  # fmt: skip

    with pytest.raises(TransferError, match="temperature"):
        conversations_import(user=ada, raw=raw)
    assert not Conversation.objects.exists()


def test_values_at_the_edge_of_what_is_accepted_are_stored_as_given(ada):
    """The limits that the bad-file tests probe from outside hold from inside too: the largest
    usage count and the earliest and latest times fit every database."""
    raw = json.dumps({
        "format": "chatsite.conversation", "version": 1,
        "conversation": {"archived": True, "created_at": "0001-01-02T00:00:00+00:00"},
        "messages": [
            {"id": "q", "role": "user", "content": "first",
             "created_at": "2024-03-01T17:00:00+05:00"},
            {"id": "a", "parent": "q", "role": "assistant", "content": "second",
             "usage": {"prompt_tokens": 2**31 - 1, "completion_tokens": 0},
             "created_at": "9999-12-30T00:00:00Z", "completed_at": "9999-12-30T00:00:00Z"},
        ],
    }).encode()  # fmt: skip

    (copy,) = conversations_import(user=ada, raw=raw)

    copy.refresh_from_db()
    assert copy.archived is True
    assert copy.created_at == datetime(1, 1, 2, tzinfo=UTC)
    question, answer = Message.objects.filter(conversation=copy).order_by("created_at")
    assert question.created_at == datetime(2024, 3, 1, 12, 0, tzinfo=UTC)
    assert answer.prompt_tokens == 2**31 - 1
    assert answer.completed_at == datetime(9999, 12, 30, tzinfo=UTC)


def test_export_all_streams_message_by_message_with_bounded_fetches(ada):
    """Memory stays flat for a conversation of any length: rows come from the database a chunk
    at a time, and each message is written out before the next chunk is read."""
    chat = make.conversation(ada, "Long one")
    make.chain(chat, [f"message {index}" for index in range(300)])
    make.chain(make.conversation(ada, "Short one"), ["only"])
    fetched: list[int] = []

    def count_rows(execute, sql, params, many, context):
        # Every row the ORM reads goes through the cursor's fetchmany(); count what it returns.
        cursor = context["cursor"]
        fetchmany = cursor.fetchmany

        def counted(*args):
            rows = fetchmany(*args)
            fetched.append(len(rows))
            return rows

        cursor.fetchmany = counted
        return execute(sql, params, many, context)

    pieces = conversations_export_all(user=ada, batch_size=50, message_chunk_size=40)
    with connection.execute_wrapper(count_rows):
        seen = []
        while not any('"message 0"' in piece for piece in seen):
            seen.append(next(pieces))
        fetched_before_first_message = sum(fetched)
        seen.extend(pieces)

    # The two conversations of the batch, and one chunk of messages.
    assert fetched_before_first_message <= 2 + 40
    assert max(fetched) <= 40
    assert len(seen) > 300  # a piece per message, not one string per conversation
    document = json.loads("".join(seen))
    by_title = {item["conversation"]["title"]: item for item in document["conversations"]}
    assert [m["content"] for m in by_title["Long one"]["messages"]] == [
        f"message {index}" for index in range(300)
    ]
    assert [m["content"] for m in by_title["Short one"]["messages"]] == ["only"]


def openai_file(count: int, *, title: str = "Long") -> bytes:
    roles = ("user", "assistant")
    return json.dumps({
        "title": title,
        "messages": [{"role": roles[i % 2], "content": f"message {i}"} for i in range(count)],
    }).encode()  # fmt: skip


def test_a_large_import_is_written_in_bounded_transactions_and_hidden_until_complete(
    ada, monkeypatch
):
    seen_during_import = []
    write_batches = transfer._batches

    def watched(rows):
        for batch in write_batches(rows):
            page = conversation_sidebar_page(user=ada)
            seen_during_import.append([item.title for item in page.conversations])
            yield batch

    monkeypatch.setattr(transfer, "_batches", watched)
    with CaptureQueriesContext(connection) as queries:
        (conversation,) = conversations_import(user=ada, raw=openai_file(1200))

    inserts = [
        q["sql"] for q in queries if q["sql"].startswith('INSERT INTO "conversations_message"')
    ]
    # 250 + 250 + 250 + 250 + 200 rows, each batch in its own transaction (savepoints inside
    # the test's).
    assert transfer.IMPORT_BATCH_ROWS == 250
    assert len(inserts) == 5
    assert sum(q["sql"].startswith("SAVEPOINT") for q in queries) >= 6
    assert seen_during_import == [[]] * 5
    assert Message.objects.filter(conversation=conversation).count() == 1200
    assert conversation_sidebar_page(user=ada).conversations[0].id == conversation.id


def test_an_import_failing_half_way_leaves_nothing_and_says_so(ada, monkeypatch):
    write_batches = transfer._batches

    def failing_after_two(rows):
        for number, batch in enumerate(write_batches(rows)):
            if number == 2:
                raise OperationalError("database is locked")
            yield batch

    monkeypatch.setattr(transfer, "_batches", failing_after_two)

    with pytest.raises(TransferError, match="Nothing was imported"):
        conversations_import(user=ada, raw=openai_file(1200))

    assert not Conversation.objects.filter(owner=ada).exists()
    assert not Message.objects.exists()


def test_hidden_leftovers_of_a_dead_import_are_swept_by_the_next(ada, grace):
    long_ago = timezone.now() - timedelta(hours=2)
    dead = make.conversation(ada, "half imported", hidden_since=long_ago)
    make.chain(dead, ["a", "b", "c"])
    running = make.conversation(ada, "being imported now", hidden_since=timezone.now())
    others = make.conversation(grace, "grace's, half imported", hidden_since=long_ago)

    conversations_import(user=ada, raw=openai_file(2))

    assert not Conversation.objects.filter(pk=dead.pk).exists()
    assert not Message.objects.filter(conversation_id=dead.pk).exists()
    assert Conversation.objects.filter(pk__in=[running.pk, others.pk]).count() == 2
