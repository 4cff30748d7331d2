"""Full-text search over messages and conversation titles: one user's (the history page) or
everyone's (the admin).

The index lives in the database itself, so there is no search server to run and no
`LIKE '%term%'` scan:
- PostgreSQL: a generated `tsvector` column on messages and on conversations, each with a GIN index;
- SQLite: FTS5 tables filled by triggers (see migration `0002_message_search`).
Either way every write that changes a message's content or a title — the engine's checkpoints,
imports, the admin — keeps the index in step inside the same transaction, with no call to forget.

A user's message hits come newest first, a page at a time, in an order the index gives without
ranking or sorting every match: a common word matches most of a long history, and ranking all of
it cost half a second at 100,000 messages. SQLite walks the full-text index backwards (its row
ids grow as messages are saved: newest saved first, which is newest written except for imported
conversations); PostgreSQL looks through the user's newest messages by an index on (created_at,
id), and only when they hold less than a page, sorts every match from the GIN index (few, then).
Each page ends with a cursor to the next (keyset pagination: every page costs the same, however
deep).

A term matches whole words, never prefixes; an identifier (`fn_12`) matches as written, a
"quoted phrase" as a phrase (search_terms). Snippets are made from the page's rows in Python
(conversations.snippets), not by the databases, so they show text, not Markdown.
"""

import re
import uuid
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta

from django.db import connection
from django.db.models import QuerySet
from django.db.models.expressions import RawSQL
from django.utils import timezone

from conversations.models import Conversation, Message
from conversations.snippets import WORD_RE, snippet_html

# A query's terms: "quoted phrases" and runs of other characters between spaces.
_QUERY_RE = re.compile(r'"([^"]*)"|([^\s"]+)')
# Punctuation around a term ("word," or "(word)") is not part of it.
_EDGES_RE = re.compile(r"^[\W_]+|[\W_]+$")
MAX_TERMS = 20
MESSAGE_HIT_LIMIT = 50
TITLE_HIT_LIMIT = 10
# PostgreSQL: how many of the user's newest messages are looked at before every match is.
PG_WINDOW = 2000
_PG_CURSOR_RE = re.compile(r"(\d{4}-\d\d-\d\dT[\d:.]+\+00:00)~([0-9a-f-]{32,36})")
# PostgreSQL's text search configuration: 'simple' does no stemming, so it behaves the same for
# every language people chat in and like SQLite's unicode61 tokenizer.
PG_CONFIG = "simple"


@dataclass(frozen=True)
class SearchFilters:
    provider: str = ""
    model: str = ""
    since: date | None = None
    until: date | None = None


@dataclass(frozen=True)
class SearchPage:
    # Title hits (first page only), then message hits, newest first.
    hits: list["SearchHit"]
    # Opaque: where the next page starts; None on the last page.
    next_cursor: str | None


@dataclass(frozen=True)
class SearchHit:
    conversation_id: uuid.UUID
    conversation_title: str
    # None for a hit on the title.
    message_id: uuid.UUID | None
    role: str
    created_at: datetime | None
    provider: str
    model: str
    snippet_html: str


def search_terms(query: str) -> list[str]:
    """The terms of a query, lowercased, as written: each "quoted phrase" and each other run of
    characters between spaces (an identifier such as `fn_12` or `settings.py` is one term),
    without the punctuation around it; those without a word are dropped. Every term must match,
    as a whole: its words in order, next to each other, never as prefixes of longer words
    ("fn_12" does not find "fn_1296"). Terms are handed to the databases only as data, so no
    input can form a syntax error or an operator in their query languages."""
    terms = []
    for phrase, word in _QUERY_RE.findall(query):
        term = _EDGES_RE.sub("", " ".join(phrase.split()) if phrase else word).lower()
        if WORD_RE.search(term):
            terms.append(term)
    return terms[:MAX_TERMS]


def _written_sql(terms: list[str], column: str) -> tuple[str, list]:
    """A condition that each identifier among `terms` (a term of several words with no space,
    such as `fn_12` or `3.1`) appears in `column` as written: the index finds its words next to
    each other, which "fn 12" or "fn-12" also are. Checked only on the rows the index found."""
    sql, params = [], []
    for term in terms:
        if " " in term or len(WORD_RE.findall(term)) < 2:
            continue
        if connection.vendor == "postgresql":
            # A backslash before a character that is not a letter or digit makes it literal in
            # PostgreSQL's regular expressions.
            written = "".join(c if c.isalnum() else f"\\{c}" for c in term)
            sql.append(f" AND {column} ~* %s")
            params.append(f"(^|[^[:alnum:]]){written}($|[^[:alnum:]])")
        else:
            # Django gives SQLite a REGEXP function (Python's re).
            sql.append(f" AND {column} REGEXP %s")
            params.append(rf"(?i)(?<![^\W_]){re.escape(term)}(?![^\W_])")
    return "".join(sql), params


def _fts5_match(terms: list[str]) -> str:
    """SQLite's FTS5 query for `terms`: each a phrase of its words (the words its tokenizer
    makes of it), no prefix matching; every phrase must match."""
    return " ".join('"' + " ".join(WORD_RE.findall(term)) + '"' for term in terms)


def _tsquery_sql(terms: list[str]) -> tuple[str, list]:
    """PostgreSQL's tsquery for `terms`, as SQL and parameters: each term parsed by the same
    parser as the indexed text (which keeps `settings.py` or `3.1` as one token) into a phrase,
    no prefix matching; every phrase must match."""
    sql = " && ".join("phraseto_tsquery(%s, %s)" for _ in terms)
    return f"({sql})", [value for term in terms for value in (PG_CONFIG, term)]


def _uuid(value) -> uuid.UUID:
    return value if isinstance(value, uuid.UUID) else uuid.UUID(str(value))


def _datetime(value) -> datetime | None:
    if value is None or isinstance(value, datetime):
        return value
    parsed = datetime.fromisoformat(str(value))
    return parsed if timezone.is_aware(parsed) else timezone.make_aware(parsed, timezone.UTC)


type _Query = tuple[str, list]


def _filter_sql(filters: SearchFilters, *, stamp: str) -> tuple[str, list]:
    """WHERE fragments shared by both databases; `c` is the conversation, `stamp` the column that
    the date range applies to."""
    # A conversation half imported or half deleted is not its owner's to see yet (or any more).
    sql, params = [" AND c.hidden_since IS NULL"], []
    for column, value in (("provider", filters.provider), ("model", filters.model)):
        if value:
            # Hits in conversations that this provider/model answered in.
            sql.append(
                f" AND EXISTS (SELECT 1 FROM conversations_message p"
                f" WHERE p.conversation_id = c.id AND p.{column} = %s)"
            )
            params.append(value)
    if filters.since:
        start = timezone.make_aware(datetime.combine(filters.since, time.min), timezone.UTC)
        sql.append(f" AND {stamp} >= %s")
        params.append(connection.ops.adapt_datetimefield_value(start))
    # The calendar's last day has no next day to end before: it sets no upper bound.
    if filters.until and filters.until < date.max:
        end = timezone.make_aware(
            datetime.combine(filters.until + timedelta(days=1), time.min), timezone.UTC
        )
        sql.append(f" AND {stamp} < %s")
        params.append(connection.ops.adapt_datetimefield_value(end))
    return "".join(sql), params


def _sqlite_queries(user, terms, filters, after: int | None) -> tuple[_Query, _Query]:
    """The title query and the message query (SQL and parameters) of search_for_user. Message
    hits come in the index's row order, newest first, so SQLite stops after one page instead
    of ranking every match."""
    match = _fts5_match(terms)
    title_filters, title_params = _filter_sql(filters, stamp="c.updated_at")
    message_filters, message_params = _filter_sql(filters, stamp="m.created_at")
    title_written, title_written_params = _written_sql(terms, "c.title")
    written, written_params = _written_sql(terms, "m.content")
    titles = (
        "SELECT c.id, c.title FROM conversations_conversation_fts f"
        " JOIN conversations_conversation_search_key k ON k.id = f.rowid"
        " JOIN conversations_conversation c ON c.id = k.conversation_id"
        " WHERE conversations_conversation_fts MATCH %s AND c.owner_id = %s"
        f"{title_written}{title_filters} ORDER BY f.rank LIMIT %s",
        [match, user.pk, *title_written_params, *title_params, TITLE_HIT_LIMIT],
    )
    page_filter, page_params = ("", []) if after is None else (" AND f.rowid < %s", [after])
    messages = (
        "SELECT m.id, m.conversation_id, m.role, m.created_at, m.provider, m.model, c.title,"
        " m.content, f.rowid"
        " FROM conversations_message_fts f"
        " JOIN conversations_message_search_key k ON k.id = f.rowid"
        " JOIN conversations_message m ON m.id = k.message_id"
        " JOIN conversations_conversation c ON c.id = m.conversation_id"
        f" WHERE conversations_message_fts MATCH %s{page_filter} AND c.owner_id = %s"
        f"{written}{message_filters} ORDER BY f.rowid DESC LIMIT %s",
        [match, *page_params, user.pk, *written_params, *message_params, MESSAGE_HIT_LIMIT + 1],
    )
    return titles, messages


def _postgres_queries(user, terms, filters, after) -> tuple[_Query, _Query, _Query]:
    """The title query and two message queries (SQL and parameters) of search_for_user.

    Which plan is fast depends on how common the words are, and PostgreSQL's estimate for a
    text query is too rough to choose (a rare word walked a million rows). So the first
    message query looks only at the user's newest PG_WINDOW messages, through the (created_at,
    id) index: a common word fills a page there. When it does not, the page is exact only from
    the second query, which takes every match from the GIN index and sorts them: few, since
    the word is rare among the newest."""
    tsquery, tsquery_params = _tsquery_sql(terms)
    title_filters, title_params = _filter_sql(filters, stamp="c.updated_at")
    message_filters, message_params = _filter_sql(filters, stamp="m.created_at")
    title_written, title_written_params = _written_sql(terms, "c.title")
    written, written_params = _written_sql(terms, "m.content")
    titles = (
        "SELECT c.id, c.title FROM conversations_conversation c,"
        f" (SELECT {tsquery} AS q) t WHERE c.search_vector @@ t.q AND c.owner_id = %s"
        f"{title_written}{title_filters}"
        " ORDER BY ts_rank(c.search_vector, t.q) DESC, c.updated_at DESC LIMIT %s",
        [*tsquery_params, user.pk, *title_written_params, *title_params, TITLE_HIT_LIMIT],
    )
    page_filter, page_params = "", []
    if after is not None:
        page_filter = " AND (m.created_at, m.id) < (%s, %s)"
        page_params = [after[0], after[1]]
    mine = (
        "SELECT m.id, m.created_at, m.search_vector, m.content FROM conversations_message m"
        " JOIN conversations_conversation c ON c.id = m.conversation_id"
        f" WHERE c.owner_id = %s{message_filters}{page_filter}"
    )
    mine_params = [user.pk, *message_params, *page_params]
    order = " ORDER BY m.created_at DESC, m.id DESC"
    outer = (
        "SELECT m.id, m.conversation_id, m.role, m.created_at, m.provider, m.model, c.title,"
        " m.content, NULL"
        " FROM ({}) top"
        " JOIN conversations_message m ON m.id = top.id"
        " JOIN conversations_conversation c ON c.id = m.conversation_id" + order
    )
    recent = (
        outer.format(
            f"SELECT m.id FROM ({mine}{order} LIMIT %s) m"
            f" WHERE m.search_vector @@ {tsquery}{written}{order} LIMIT %s"
        ),
        [*mine_params, PG_WINDOW, *tsquery_params, *written_params, MESSAGE_HIT_LIMIT + 1],
    )
    # MATERIALIZED keeps PostgreSQL from walking the index instead of using GIN.
    everything = (
        f"WITH matches AS MATERIALIZED ({mine} AND m.search_vector @@ {tsquery}{written}) "
        + outer.format(f"SELECT m.id FROM matches m{order} LIMIT %s"),
        [*mine_params, *tsquery_params, *written_params, MESSAGE_HIT_LIMIT + 1],
    )
    return titles, recent, everything


def _title_hit(terms, conversation_id, title) -> SearchHit:
    return SearchHit(
        conversation_id=_uuid(conversation_id),
        conversation_title=title,
        message_id=None,
        role="",
        created_at=None,
        provider="",
        model="",
        snippet_html=snippet_html(markdown=title or "", terms=terms),
    )


def _message_hit(terms, ident, conversation_id, role, created_at, provider, model, title, content):
    return SearchHit(
        conversation_id=_uuid(conversation_id),
        conversation_title=title,
        message_id=_uuid(ident),
        role=role,
        created_at=_datetime(created_at),
        provider=provider,
        model=model,
        snippet_html=snippet_html(markdown=content or "", terms=terms),
    )


def search_for_user(
    *, user, query: str, filters: SearchFilters | None = None, cursor: str | None = None
) -> SearchPage:
    """One page of hits: on the first, title hits (at most 10, best first); then message hits,
    newest first, MESSAGE_HIT_LIMIT per page. Each hit's snippet is escaped HTML with <mark>
    around the matched words. Two queries on the first page, one on the next ones (on
    PostgreSQL, one more for the last page or a rare word). Raises ValueError for a cursor
    that no page gave."""
    terms = search_terms(query)
    after = _cursor_parse(cursor) if cursor else None
    if not terms:
        return SearchPage(hits=[], next_cursor=None)
    filters = filters or SearchFilters()
    fallback = None
    if connection.vendor == "postgresql":
        titles, messages, fallback = _postgres_queries(user, terms, filters, after)
    elif connection.vendor == "sqlite":
        titles, messages = _sqlite_queries(user, terms, filters, after)
    else:
        raise NotImplementedError(f"No full-text search for {connection.vendor}.")
    hits: list[SearchHit] = []
    with connection.cursor() as db:
        if after is None:
            db.execute(*titles)
            hits = [_title_hit(terms, *row) for row in db.fetchall()]
        db.execute(*messages)
        rows = db.fetchall()
        if fallback is not None and len(rows) <= MESSAGE_HIT_LIMIT:
            db.execute(*fallback)
            rows = db.fetchall()
    page = rows[:MESSAGE_HIT_LIMIT]
    hits.extend(_message_hit(terms, *row[:-1]) for row in page)
    more = len(rows) > MESSAGE_HIT_LIMIT
    return SearchPage(hits=hits, next_cursor=_cursor_of(page[-1]) if more else None)


def _cursor_of(row) -> str:
    """Where the page after `row` starts: the index's row id on SQLite, (created_at, id) on
    PostgreSQL."""
    if connection.vendor == "sqlite":
        return str(row[-1])
    return f"{_datetime(row[3]).astimezone(timezone.UTC).isoformat()}~{_uuid(row[0])}"


def _cursor_parse(cursor: str):
    if connection.vendor == "sqlite":
        if not cursor.isdecimal() or len(cursor) > 18:
            raise ValueError("not a search cursor")
        return int(cursor)
    matched = _PG_CURSOR_RE.fullmatch(cursor)
    if matched is None:
        raise ValueError("not a search cursor")
    try:
        return datetime.fromisoformat(matched[1]), uuid.UUID(matched[2])
    except ValueError:
        raise ValueError("not a search cursor") from None


# For the admin, which searches every user's rows and pages through every match, where
# search_for_user returns one owner's top hits with snippets: id subqueries over the same index,
# with the same rules (search_terms: whole words and phrases, every term must match).
def has_search_index() -> bool:
    """Whether this database has the full-text index (the migration builds it only on these)."""
    return connection.vendor in {"postgresql", "sqlite"}


def _message_ids_sql(terms: list[str]) -> _Query:
    written, written_params = _written_sql(terms, "m.content")
    if connection.vendor == "postgresql":
        tsquery, tsquery_params = _tsquery_sql(terms)
        return (
            f"SELECT m.id FROM conversations_message m WHERE m.search_vector @@ {tsquery}"
            + written,
            [*tsquery_params, *written_params],
        )
    return (
        "SELECT k.message_id FROM conversations_message_fts f"
        " JOIN conversations_message_search_key k ON k.id = f.rowid"
        " JOIN conversations_message m ON m.id = k.message_id"
        " WHERE conversations_message_fts MATCH %s" + written,
        [_fts5_match(terms), *written_params],
    )


def _conversation_ids_sql(terms: list[str]) -> _Query:
    """Conversations whose title matches, or that hold a matching message."""
    messages_sql, messages_params = _message_ids_sql(terms)
    written, written_params = _written_sql(terms, "c.title")
    if connection.vendor == "postgresql":
        tsquery, titles_params = _tsquery_sql(terms)
        titles_sql = (
            f"SELECT c.id FROM conversations_conversation c WHERE c.search_vector @@ {tsquery}"
            + written
        )
    else:
        titles_sql = (
            "SELECT k.conversation_id FROM conversations_conversation_fts f"
            " JOIN conversations_conversation_search_key k ON k.id = f.rowid"
            " JOIN conversations_conversation c ON c.id = k.conversation_id"
            " WHERE conversations_conversation_fts MATCH %s" + written
        )
        titles_params = [_fts5_match(terms)]
    return (
        f"{titles_sql} UNION SELECT hit.conversation_id FROM conversations_message hit"
        f" WHERE hit.id IN ({messages_sql})",
        [*titles_params, *written_params, *messages_params],
    )


def messages_matching(*, messages: QuerySet[Message], query: str) -> QuerySet[Message]:
    """`messages` narrowed to those whose text matches `query`, whoever owns them; all of them
    when the query has no words. Needs has_search_index()."""
    terms = search_terms(query)
    if not terms:
        return messages
    return messages.filter(pk__in=RawSQL(*_message_ids_sql(terms)))


def conversations_matching(
    *, conversations: QuerySet[Conversation], query: str
) -> QuerySet[Conversation]:
    """`conversations` narrowed to those whose title matches `query` or that hold a matching
    message, whoever owns them; all of them when the query has no words. Needs
    has_search_index()."""
    terms = search_terms(query)
    if not terms:
        return conversations
    return conversations.filter(pk__in=RawSQL(*_conversation_ids_sql(terms)))
