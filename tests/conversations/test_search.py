from datetime import date, timedelta

import pytest
from django.db import connection
from django.utils import timezone

from conversations.models import Conversation, Message
from conversations.search import SearchFilters, highlight_snippet, search_for_user, search_terms

pytestmark = pytest.mark.django_db


def _conversation(owner, title="", **kwargs):
    return Conversation.objects.create(owner=owner, title=title, **kwargs)


def _message(conversation, content, role="assistant", parent=None, **kwargs):
    return Message.objects.create(
        conversation=conversation, role=role, content=content, parent=parent, **kwargs
    )


def test_finds_a_message_by_a_word_and_marks_it(ada):
    chat = _conversation(ada, "Cooking")
    hit = _message(chat, "Knead the dough for ten minutes, then let it rest.")
    _message(chat, "Something unrelated entirely.")

    hits = search_for_user(user=ada, query="dough")

    assert [h.message_id for h in hits] == [hit.id]
    assert hits[0].conversation_id == chat.id
    assert "<mark>dough</mark>" in hits[0].snippet_html


def test_words_match_as_prefixes_and_all_words_must_match(ada):
    chat = _conversation(ada)
    both = _message(chat, "Streaming answers over websockets")
    _message(chat, "Streaming only")

    assert [h.message_id for h in search_for_user(user=ada, query="stream websock")] == [both.id]


def test_finds_conversations_by_title(ada):
    chat = _conversation(ada, "Holiday plans for Lisbon")
    hits = search_for_user(user=ada, query="lisbon")
    assert hits[0].message_id is None and hits[0].conversation_id == chat.id
    assert "<mark>Lisbon</mark>" in hits[0].snippet_html


def test_never_returns_another_users_messages_or_titles(ada, grace):
    mine = _conversation(ada, "secret project")
    _message(mine, "the secret recipe")
    assert search_for_user(user=grace, query="secret") == []


def test_index_follows_edits_and_deletes(ada):
    chat = _conversation(ada, "Old title")
    message = _message(chat, "first draft")
    # What the engine's checkpoints do: update the content in place.
    Message.objects.filter(pk=message.pk).update(content="final wording")
    Conversation.objects.filter(pk=chat.pk).update(title="New name")

    assert search_for_user(user=ada, query="draft") == []
    assert [h.message_id for h in search_for_user(user=ada, query="wording")] == [message.id]
    assert search_for_user(user=ada, query="old") == []
    assert search_for_user(user=ada, query="name")[0].conversation_id == chat.id

    chat.delete()
    assert search_for_user(user=ada, query="wording") == []
    assert search_for_user(user=ada, query="name") == []


@pytest.mark.parametrize("query", ['"', "AND", "a OR", "NEAR(", "x*", "-", "col:val", "((", "'"])
def test_query_syntax_characters_never_cause_errors(ada, query):
    chat = _conversation(ada)
    _message(chat, "and or near col val x")
    search_for_user(user=ada, query=query)  # no exception


def test_query_without_words_finds_nothing(ada):
    assert search_for_user(user=ada, query="  !!! ") == []
    assert search_terms("Hello, wörld_2!") == ["hello", "wörld", "2"]


def test_snippet_escapes_message_html(ada):
    chat = _conversation(ada)
    _message(chat, "<script>alert(1)</script> payload: 3 & 4 < 5")
    snippet = search_for_user(user=ada, query="payload")[0].snippet_html
    assert "<script" not in snippet
    assert "3 &amp; 4 &lt; 5" in snippet


def test_highlight_snippet_balances_marks():
    assert highlight_snippet("\x02a\x03 <b> \x02c") == "<mark>a</mark> &lt;b&gt; <mark>c</mark>"
    assert highlight_snippet("\x03x\x02\x02y") == "x<mark>y</mark>"


def test_filters_by_provider_and_model_of_the_conversation(ada):
    one = _conversation(ada)
    _message(one, "question about rust", role="user")
    _message(one, "answer", provider="openai", model="gpt-x")
    two = _conversation(ada)
    _message(two, "question about rust", role="user")
    _message(two, "answer", provider="local", model="tiny")

    def conversations(**filters):
        hits = search_for_user(user=ada, query="rust", filters=SearchFilters(**filters))
        return {h.conversation_id for h in hits}

    assert conversations() == {one.id, two.id}
    assert conversations(provider="local") == {two.id}
    assert conversations(model="gpt-x") == {one.id}
    assert conversations(provider="local", model="gpt-x") == set()


def test_filters_by_date(ada):
    chat = _conversation(ada)
    old = _message(chat, "vintage note")
    new = _message(chat, "vintage wine")
    Message.objects.filter(pk=old.pk).update(created_at=timezone.now() - timedelta(days=40))
    today = timezone.now().date()

    def found(**filters):
        hits = search_for_user(user=ada, query="vintage", filters=SearchFilters(**filters))
        return {h.message_id for h in hits}

    assert found(since=today) == {new.id}
    assert found(until=today - timedelta(days=30)) == {old.id}
    assert found(since=date(2000, 1, 1), until=today) == {old.id, new.id}


def test_search_uses_the_index_not_a_scan(ada):
    sql = []
    with connection.execute_wrapper(
        lambda execute, q, p, many, ctx: sql.append(q) or execute(q, p, many, ctx)
    ):
        search_for_user(user=ada, query="anything")
    assert len(sql) == 2
    assert all("LIKE" not in q.upper() for q in sql)
    marker = "@@" if connection.vendor == "postgresql" else "MATCH"
    assert all(marker in q for q in sql)


def test_dates_at_the_ends_of_the_calendar_are_open_ended_ranges(ada):
    chat = _conversation(ada)
    hit = _message(chat, "timeless words")

    found = search_for_user(
        user=ada, query="timeless", filters=SearchFilters(since=date.min, until=date.max)
    )

    assert [h.message_id for h in found] == [hit.id]
