"""Full-text search over messages and conversation titles: one user's (the history page) or
everyone's (the admin).

The index lives in the database itself, so there is no search server to run and no
`LIKE '%term%'` scan:
- PostgreSQL: a generated `tsvector` column on messages and on conversations, each with a GIN index;
- SQLite: FTS5 tables filled by triggers (see migration `0002_message_search`).
Either way every write that changes a message's content or a title — the engine's checkpoints,
imports, the admin — keeps the index in step inside the same transaction, with no call to forget.
"""

import html
import re
import uuid
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta

from django.db import connection
from django.db.models import QuerySet
from django.db.models.expressions import RawSQL
from django.utils import timezone

from conversations.models import Conversation, Message

# Markers that the database puts around matched words; they cannot survive html.escape in a
# message, so they are unambiguous when we swap them for <mark>.
_START, _STOP = "\x02", "\x03"
_WORD_RE = re.compile(r"[^\W_]+")
MESSAGE_HIT_LIMIT = 50
TITLE_HIT_LIMIT = 10
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
    """The words of a query; punctuation and operators are dropped so no user input can form a
    syntax error (or an operator) in the database's query language."""
    return [word.lower() for word in _WORD_RE.findall(query)][:20]


def _fts5_match(terms: list[str]) -> str:
    """SQLite's FTS5 query for `terms`: every word must match, each as a prefix."""
    return " ".join(f'"{term}"*' for term in terms)


def _tsquery(terms: list[str]) -> str:
    """PostgreSQL's tsquery for `terms`: every word must match, each as a prefix."""
    return " & ".join(f"{term}:*" for term in terms)


def highlight_snippet(snippet: str) -> str:
    """Escape a snippet and turn the database's match markers into balanced <mark> elements."""
    out: list[str] = []
    open_mark = False
    for part in re.split(f"([{_START}{_STOP}])", snippet):
        if part == _START:
            if not open_mark:
                out.append("<mark>")
                open_mark = True
        elif part == _STOP:
            if open_mark:
                out.append("</mark>")
                open_mark = False
        else:
            out.append(html.escape(part))
    if open_mark:
        out.append("</mark>")
    return "".join(out)


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


def _sqlite_queries(user, terms, filters) -> tuple[_Query, _Query]:
    """The title query and the message query (SQL and parameters) of search_for_user."""
    match = _fts5_match(terms)
    title_filters, title_params = _filter_sql(filters, stamp="c.updated_at")
    message_filters, message_params = _filter_sql(filters, stamp="m.created_at")
    titles = (
        "SELECT c.id, c.title,"
        " snippet(conversations_conversation_fts, 0, char(2), char(3), '…', 16)"
        " FROM conversations_conversation_fts f"
        " JOIN conversations_conversation_search_key k ON k.id = f.rowid"
        " JOIN conversations_conversation c ON c.id = k.conversation_id"
        " WHERE conversations_conversation_fts MATCH %s AND c.owner_id = %s"
        f"{title_filters} ORDER BY f.rank LIMIT %s",
        [match, user.pk, *title_params, TITLE_HIT_LIMIT],
    )
    messages = (
        "SELECT m.id, m.conversation_id, m.role, m.created_at, m.provider, m.model, c.title,"
        " snippet(conversations_message_fts, 0, char(2), char(3), '…', 24)"
        " FROM conversations_message_fts f"
        " JOIN conversations_message_search_key k ON k.id = f.rowid"
        " JOIN conversations_message m ON m.id = k.message_id"
        " JOIN conversations_conversation c ON c.id = m.conversation_id"
        " WHERE conversations_message_fts MATCH %s AND c.owner_id = %s"
        f"{message_filters} ORDER BY f.rank, m.created_at DESC LIMIT %s",
        [match, user.pk, *message_params, MESSAGE_HIT_LIMIT],
    )
    return titles, messages


def _postgres_queries(user, terms, filters) -> tuple[_Query, _Query]:
    """The title query and the message query (SQL and parameters) of search_for_user."""
    tsquery = _tsquery(terms)
    options = f"StartSel={_START}, StopSel={_STOP}, MaxWords=35, MinWords=15"
    title_filters, title_params = _filter_sql(filters, stamp="c.updated_at")
    message_filters, message_params = _filter_sql(filters, stamp="m.created_at")
    titles = (
        "SELECT c.id, c.title, ts_headline(%s, c.title, q, %s)"
        " FROM conversations_conversation c, to_tsquery(%s, %s) q"
        " WHERE c.search_vector @@ q AND c.owner_id = %s"
        f"{title_filters} ORDER BY ts_rank(c.search_vector, q) DESC, c.updated_at DESC"
        " LIMIT %s",
        [PG_CONFIG, options, PG_CONFIG, tsquery, user.pk, *title_params, TITLE_HIT_LIMIT],
    )
    # The headline is computed in the outer query so only the page's rows pay for it.
    messages = (
        "SELECT m.id, m.conversation_id, m.role, m.created_at, m.provider, m.model, c.title,"
        " ts_headline(%s, m.content, to_tsquery(%s, %s), %s)"
        " FROM ("
        "  SELECT m.id, ts_rank(m.search_vector, q) AS rank"
        "  FROM conversations_message m"
        "  JOIN conversations_conversation c ON c.id = m.conversation_id,"
        "  to_tsquery(%s, %s) q"
        f"  WHERE m.search_vector @@ q AND c.owner_id = %s{message_filters}"
        "  ORDER BY rank DESC, m.created_at DESC LIMIT %s"
        " ) top"
        " JOIN conversations_message m ON m.id = top.id"
        " JOIN conversations_conversation c ON c.id = m.conversation_id"
        " ORDER BY top.rank DESC, m.created_at DESC",
        [
            PG_CONFIG, PG_CONFIG, tsquery, options,
            PG_CONFIG, tsquery, user.pk, *message_params, MESSAGE_HIT_LIMIT,
        ],
    )  # fmt: skip
    return titles, messages


def _title_hit(conversation_id, title, snippet) -> SearchHit:
    return SearchHit(
        conversation_id=_uuid(conversation_id),
        conversation_title=title,
        message_id=None,
        role="",
        created_at=None,
        provider="",
        model="",
        snippet_html=highlight_snippet(snippet or ""),
    )


def _message_hit(ident, conversation_id, role, created_at, provider, model, title, snippet):
    return SearchHit(
        conversation_id=_uuid(conversation_id),
        conversation_title=title,
        message_id=_uuid(ident),
        role=role,
        created_at=_datetime(created_at),
        provider=provider,
        model=model,
        snippet_html=highlight_snippet(snippet or ""),
    )


def search_for_user(*, user, query: str, filters: SearchFilters | None = None) -> list[SearchHit]:
    """Title hits first (at most 10), then message hits by relevance (at most 50); each hit's
    snippet is escaped HTML with <mark> around the matched words. Two queries."""
    terms = search_terms(query)
    if not terms:
        return []
    filters = filters or SearchFilters()
    if connection.vendor == "postgresql":
        titles, messages = _postgres_queries(user, terms, filters)
    elif connection.vendor == "sqlite":
        titles, messages = _sqlite_queries(user, terms, filters)
    else:
        raise NotImplementedError(f"No full-text search for {connection.vendor}.")
    with connection.cursor() as cursor:
        cursor.execute(*titles)
        hits = [_title_hit(*row) for row in cursor.fetchall()]
        cursor.execute(*messages)
        hits.extend(_message_hit(*row) for row in cursor.fetchall())
    return hits


# For the admin, which searches every user's rows and pages through every match, where
# search_for_user returns one owner's top hits with snippets: id subqueries over the same index,
# with the same word rules (search_terms, prefix matching, every word must match).
def has_search_index() -> bool:
    """Whether this database has the full-text index (the migration builds it only on these)."""
    return connection.vendor in {"postgresql", "sqlite"}


def _message_ids_sql(terms: list[str]) -> _Query:
    if connection.vendor == "postgresql":
        return (
            "SELECT m.id FROM conversations_message m WHERE m.search_vector @@ to_tsquery(%s, %s)",
            [PG_CONFIG, _tsquery(terms)],
        )
    return (
        "SELECT k.message_id FROM conversations_message_fts f"
        " JOIN conversations_message_search_key k ON k.id = f.rowid"
        " WHERE conversations_message_fts MATCH %s",
        [_fts5_match(terms)],
    )


def _conversation_ids_sql(terms: list[str]) -> _Query:
    """Conversations whose title matches, or that hold a matching message."""
    messages_sql, messages_params = _message_ids_sql(terms)
    if connection.vendor == "postgresql":
        titles_sql = (
            "SELECT c.id FROM conversations_conversation c"
            " WHERE c.search_vector @@ to_tsquery(%s, %s)"
        )
        titles_params = [PG_CONFIG, _tsquery(terms)]
    else:
        titles_sql = (
            "SELECT k.conversation_id FROM conversations_conversation_fts f"
            " JOIN conversations_conversation_search_key k ON k.id = f.rowid"
            " WHERE conversations_conversation_fts MATCH %s"
        )
        titles_params = [_fts5_match(terms)]
    return (
        f"{titles_sql} UNION SELECT hit.conversation_id FROM conversations_message hit"
        f" WHERE hit.id IN ({messages_sql})",
        [*titles_params, *messages_params],
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
