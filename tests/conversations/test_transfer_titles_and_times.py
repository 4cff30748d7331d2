"""Imports land where they belong: titled, and sorted by their own last activity."""

import json
from datetime import UTC, datetime, timedelta

import pytest

from conversations.transfer import conversation_export_json, conversations_import
from tests.conversations import page_factories as make

pytestmark = pytest.mark.django_db


def test_an_openai_import_is_titled_from_its_first_question(ada):
    raw = json.dumps([
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "## How do **tides** work?"},
        {"role": "assistant", "content": "The Moon."},
    ]).encode()  # fmt: skip

    (conversation,) = conversations_import(user=ada, raw=raw)

    assert conversation.title == "How do tides work?"


def test_an_openai_import_keeps_the_title_the_file_gives(ada):
    raw = json.dumps({"title": "Tides", "messages": [{"role": "user", "content": "Hi"}]})

    (conversation,) = conversations_import(user=ada, raw=raw.encode())

    assert conversation.title == "Tides"


def test_an_import_keeps_the_last_activity_of_the_file(ada):
    chat = make.conversation(ada, "Old talk")
    question, answer = make.chain(chat, ["Question", "Answer"])
    asked = datetime(2024, 3, 1, 12, 0, tzinfo=UTC)
    answered = asked + timedelta(minutes=3)
    for row, stamp in ((question, asked), (answer, answered)):
        type(row).objects.filter(pk=row.pk).update(created_at=stamp)

    (copy,) = conversations_import(
        user=ada, raw=conversation_export_json(conversation=chat).encode()
    )

    copy.refresh_from_db()
    assert copy.updated_at == answered
