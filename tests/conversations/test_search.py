from datetime import date, timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from conversations.models import Conversation, Message
from conversations.search import (
    MESSAGE_HIT_LIMIT,
    SearchFilters,
    SearchPage,
    search_for_user,
    search_terms,
)

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

    hits = search_for_user(user=ada, query="dough").hits

    assert [h.message_id for h in hits] == [hit.id]
    assert hits[0].conversation_id == chat.id
    assert "<mark>dough</mark>" in hits[0].snippet_html


def _found(user, query: str) -> set[str]:
    return {h.snippet_html for h in search_for_user(user=user, query=query).hits}


def test_words_match_whole_words_and_all_words_must_match(ada):
    chat = _conversation(ada)
    both = _message(chat, "Streaming answers over websockets")
    _message(chat, "Streaming only")

    assert [h.message_id for h in search_for_user(user=ada, query="streaming websockets").hits] == [
        both.id
    ]
    # A prefix is not a word.
    assert search_for_user(user=ada, query="stream websock").hits == []


def test_identifiers_match_as_written_never_as_prefixes(ada):
    chat = _conversation(ada)
    _message(chat, "call fn_1296 first")
    _message(chat, "the answer is 1296")
    exact = _message(chat, "then call fn_12 again")
    _message(chat, "version 3.11 is out")
    dotted = _message(chat, "open settings.py and version 3.1")

    _message(chat, "fn 12 and fn-12 are not it")
    assert [h.message_id for h in search_for_user(user=ada, query="fn_12").hits] == [exact.id]
    assert "<mark>fn_12</mark>" in search_for_user(user=ada, query="fn_12").hits[0].snippet_html
    assert search_for_user(user=ada, query="fn_129").hits == []
    assert [h.message_id for h in search_for_user(user=ada, query="3.1").hits] == [dotted.id]
    assert [h.message_id for h in search_for_user(user=ada, query="settings.py").hits] == [
        dotted.id
    ]


def test_admin_search_follows_the_same_rules(ada, grace):
    from conversations.search import conversations_matching, messages_matching

    chat = _conversation(ada, "about fn_12")
    exact = _message(chat, "fn_12 here")
    other = _conversation(grace, "fn_1296 and fn 12")
    _message(other, "fn_1296, fn.12 and 1296")

    found = messages_matching(messages=Message.objects.all(), query="fn_12")
    assert list(found) == [exact]
    assert list(
        conversations_matching(conversations=Conversation.objects.all(), query="fn_12")
    ) == [chat]


def test_quoted_words_match_as_a_phrase(ada):
    chat = _conversation(ada)
    phrase = _message(chat, "a red apple and a green pear")
    _message(chat, "a green apple and a red pear")

    hits = search_for_user(user=ada, query='"red apple"').hits
    assert [h.message_id for h in hits] == [phrase.id]
    assert "<mark>red apple</mark>" in hits[0].snippet_html
    unquoted = search_for_user(user=ada, query="red apple").hits
    assert len(unquoted) == 2


def test_snippets_show_the_text_of_markdown_not_its_syntax(ada):
    chat = _conversation(ada)
    _message(
        chat,
        "# Setup steps\n\nFirst **install** the `quokka` tool:\n\n"
        "```python\nimport quokka  # fetch it\nquokka.run()\n```\n\n"
        "| Name | Value |\n|------|-------|\n| quokka | 3 < 4 |\n",
    )

    snippet = search_for_user(user=ada, query="quokka").hits[0].snippet_html

    for syntax in ("```", "**", "# Setup", "|", "---", "`"):
        assert syntax not in snippet, (syntax, snippet)
    assert "Setup steps First install the <mark>quokka</mark> tool:" in snippet
    # Code still matches, shown as text.
    assert "import <mark>quokka</mark>" in snippet
    assert "3 &lt; 4" in snippet


def test_finds_conversations_by_title(ada):
    chat = _conversation(ada, "Holiday plans for Lisbon")
    hits = search_for_user(user=ada, query="lisbon").hits
    assert hits[0].message_id is None and hits[0].conversation_id == chat.id
    assert "<mark>Lisbon</mark>" in hits[0].snippet_html


def test_never_returns_another_users_messages_or_titles(ada, grace):
    mine = _conversation(ada, "secret project")
    _message(mine, "the secret recipe")
    assert search_for_user(user=grace, query="secret").hits == []


def test_index_follows_edits_and_deletes(ada):
    chat = _conversation(ada, "Old title")
    message = _message(chat, "first draft")
    # What the engine's checkpoints do: update the content in place.
    Message.objects.filter(pk=message.pk).update(content="final wording")
    Conversation.objects.filter(pk=chat.pk).update(title="New name")

    assert search_for_user(user=ada, query="draft").hits == []
    assert [h.message_id for h in search_for_user(user=ada, query="wording").hits] == [message.id]
    assert search_for_user(user=ada, query="old").hits == []
    assert search_for_user(user=ada, query="name").hits[0].conversation_id == chat.id

    chat.delete()
    assert search_for_user(user=ada, query="wording").hits == []
    assert search_for_user(user=ada, query="name").hits == []


@pytest.mark.parametrize("query", ['"', "AND", "a OR", "NEAR(", "x*", "-", "col:val", "((", "'"])
def test_query_syntax_characters_never_cause_errors(ada, query):
    chat = _conversation(ada)
    _message(chat, "and or near col val x")
    search_for_user(user=ada, query=query)  # no exception


def test_query_without_words_finds_nothing(ada):
    assert search_for_user(user=ada, query="  !!! ").hits == []
    assert search_terms('Hello, wörld_2! "a  phrase" -') == ["hello", "wörld_2", "a phrase"]


def test_snippet_escapes_message_html(ada):
    chat = _conversation(ada)
    _message(chat, "<script>alert(1)</script> payload: 3 & 4 < 5")
    snippet = search_for_user(user=ada, query="payload").hits[0].snippet_html
    assert "<script" not in snippet
    assert "3 &amp; 4 &lt; 5" in snippet


def test_filters_by_provider_and_model_of_the_conversation(ada):
    one = _conversation(ada)
    _message(one, "question about rust", role="user")
    _message(one, "answer", provider="openai", model="gpt-x")
    two = _conversation(ada)
    _message(two, "question about rust", role="user")
    _message(two, "answer", provider="local", model="tiny")

    def conversations(**filters):
        hits = search_for_user(user=ada, query="rust", filters=SearchFilters(**filters)).hits
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
        hits = search_for_user(user=ada, query="vintage", filters=SearchFilters(**filters)).hits
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
    # Titles, messages (PostgreSQL: the newest, then, finding less than a page, every match).
    assert len(sql) == (3 if connection.vendor == "postgresql" else 2)
    assert all("LIKE" not in q.upper() for q in sql)
    marker = "@@" if connection.vendor == "postgresql" else "MATCH"
    assert all(marker in q for q in sql)


def test_dates_at_the_ends_of_the_calendar_are_open_ended_ranges(ada):
    chat = _conversation(ada)
    hit = _message(chat, "timeless words")

    found = search_for_user(
        user=ada, query="timeless", filters=SearchFilters(since=date.min, until=date.max)
    ).hits

    assert [h.message_id for h in found] == [hit.id]


# --- pages: newest first, a bounded amount of work per page ---------------------------------


def _many_hits(owner, count: int) -> list[Message]:
    chat = _conversation(owner, "apple orchard")
    return [_message(chat, f"apple number {i}") for i in range(count)]


def _all_pages(user, query: str) -> list[SearchPage]:
    pages = [search_for_user(user=user, query=query)]
    while pages[-1].next_cursor:
        pages.append(search_for_user(user=user, query=query, cursor=pages[-1].next_cursor))
    return pages


def test_pages_reach_every_hit_once_newest_first(ada, grace):
    written = _many_hits(ada, MESSAGE_HIT_LIMIT * 2 + 7)
    _many_hits(grace, 30)

    pages = _all_pages(ada, "apple")

    assert [len(page.hits) for page in pages] == [1 + MESSAGE_HIT_LIMIT, MESSAGE_HIT_LIMIT, 7]
    # The title hit leads the first page only.
    assert pages[0].hits[0].message_id is None
    message_ids = [hit.message_id for page in pages for hit in page.hits if hit.message_id]
    assert message_ids == [message.id for message in reversed(written)]
    assert pages[-1].next_cursor is None


def test_a_page_is_one_query_however_many_messages_match(ada):
    _many_hits(ada, MESSAGE_HIT_LIMIT * 2 + 5)
    with CaptureQueriesContext(connection) as first:
        page = search_for_user(user=ada, query="apple")
    with CaptureQueriesContext(connection) as second:
        page = search_for_user(user=ada, query="apple", cursor=page.next_cursor)
    with CaptureQueriesContext(connection) as last:
        search_for_user(user=ada, query="apple", cursor=page.next_cursor)

    # Titles and messages on the first page; messages only on the next. PostgreSQL looks at
    # the newest messages first and, when they hold less than a page, at every match.
    assert (len(first), len(second)) == (2, 1)
    assert len(last) == (2 if connection.vendor == "postgresql" else 1)


@pytest.mark.skipif(connection.vendor != "sqlite", reason="SQLite's query plan")
def test_sqlite_pages_follow_the_index_without_sorting_every_match(ada):
    """Ranking or sorting all matches is what cost half a second for a common word."""
    _many_hits(ada, 5)
    sql = []
    with connection.execute_wrapper(
        lambda execute, q, p, many, ctx: sql.append((q, p)) or execute(q, p, many, ctx)
    ):
        search_for_user(user=ada, query="apple")
    message_sql, params = sql[-1]
    with connection.cursor() as cursor:
        cursor.execute(f"EXPLAIN QUERY PLAN {message_sql}", params)
        plan = " / ".join(str(row[-1]) for row in cursor.fetchall())
    assert "TEMP B-TREE" not in plan, plan
    assert "bm25" not in message_sql and "rank" not in message_sql


@pytest.mark.parametrize("cursor", ["x", "-1", "1" * 40, "2026-01-01T00:00:00+00:00~nope"])
def test_a_cursor_no_page_gave_is_refused(ada, cursor):
    with pytest.raises(ValueError):
        search_for_user(user=ada, query="apple", cursor=cursor)


def test_hits_older_than_the_newest_messages_are_found_in_order(ada, monkeypatch):
    from conversations import search

    # PostgreSQL looks at the newest messages first: here they hold no hit at all.
    monkeypatch.setattr(search, "PG_WINDOW", 10)
    old = _many_hits(ada, MESSAGE_HIT_LIMIT + 3)
    chat = _conversation(ada)
    for i in range(30):
        _message(chat, f"pear {i}")

    pages = _all_pages(ada, "apple")

    found = [hit.message_id for page in pages for hit in page.hits if hit.message_id]
    assert found == [message.id for message in reversed(old)]
