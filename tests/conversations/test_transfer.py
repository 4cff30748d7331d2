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
    assert (failed.status, failed.error_code, failed.error_detail) == (
        "error",
        "timeout",
        "Too slow.",
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
