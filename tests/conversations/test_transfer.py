"""Export and import formats (conversations.transfer) without the pages around them."""

import json
from datetime import UTC, datetime

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from conversations.models import Conversation, Message
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
    # Two queries per batch of 50 (conversations, then their messages) plus the final empty one.
    assert len(queries) == 2 * 3 + 1


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
