"""Reads for conversations and messages (sync; async code calls them through chatsite.db).

Every lookup by id that serves a user takes that user and returns None for someone else's row,
so no caller can forget the ownership check.
"""

import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime

from django.contrib.auth.models import AbstractBaseUser
from django.db import connection
from django.db.models import F, Q, Window
from django.db.models.functions import RowNumber

from conversations.models import (
    ApiCall,
    Conversation,
    Folder,
    Message,
    SharedConversation,
    UserSettings,
)


def conversation_get_for_user(
    *, user: AbstractBaseUser, conversation_id: uuid.UUID
) -> Conversation | None:
    return Conversation.objects.filter(
        pk=conversation_id, owner=user, hidden_since__isnull=True
    ).first()


def message_get_for_user(*, user: AbstractBaseUser, message_id: uuid.UUID) -> Message | None:
    return (
        Message.objects.select_related("conversation")
        .filter(pk=message_id, conversation__owner=user, conversation__hidden_since__isnull=True)
        .first()
    )


def message_get(*, message_id: uuid.UUID) -> Message | None:
    """Any user's message: for the engine only, never with an id a client sent."""
    return Message.objects.filter(pk=message_id).first()


def message_branch_list(*, leaf_id: uuid.UUID, limit: int) -> list[Message]:
    """The branch ending at `leaf_id`, root first, at most the `limit` newest messages.

    One recursive query walks the parent links, instead of one query per ancestor and instead of
    loading the whole conversation tree.
    """
    table = Message._meta.db_table
    query = f"""
        WITH RECURSIVE branch(id, parent_id, depth) AS (
            SELECT id, parent_id, 0 FROM {table} WHERE id = %s
            UNION ALL
            SELECT m.id, m.parent_id, branch.depth + 1
            FROM {table} m JOIN branch ON m.id = branch.parent_id
            WHERE branch.depth + 1 < %s
        )
        SELECT m.* FROM {table} m JOIN branch ON m.id = branch.id ORDER BY branch.depth DESC
    """
    leaf = Message._meta.pk.get_db_prep_value(leaf_id, connection)
    return list(Message.objects.raw(query, [leaf, limit]))


def message_list_streaming(*, conversation_id: uuid.UUID) -> list[Message]:
    return list(
        Message.objects.filter(
            conversation_id=conversation_id, status=Message.Status.STREAMING
        ).order_by("created_at")
    )


def message_ids_stale_streaming(*, saved_before: datetime) -> list[uuid.UUID]:
    """`streaming` answers whose last checkpoint is older than `saved_before`."""
    return list(
        Message.objects.filter(
            status=Message.Status.STREAMING, checkpointed_at__lt=saved_before
        ).values_list("pk", flat=True)[:500]
    )


def answer_count_running_for_user(*, user: AbstractBaseUser, calls_alive_since: datetime) -> int:
    """The user's running answers, chat and API together (API calls refreshed since
    `calls_alive_since`), in one query: it runs on every start of an answer."""
    # Written as SQL: the ORM took longer to build the two subqueries (about 2 ms of the
    # process's time, on every start, under the lock that orders one user's starts) than the
    # database took to answer them.
    quote = connection.ops.quote_name
    message, conversation, call = Message._meta, Conversation._meta, ApiCall._meta

    def col(meta, name: str) -> str:
        return quote(meta.get_field(name).column)

    sql = (
        f"SELECT (SELECT COUNT(*) FROM {quote(message.db_table)} m"
        f" INNER JOIN {quote(conversation.db_table)} c"
        f" ON m.{col(message, 'conversation')} = c.{col(conversation, 'id')}"
        f" WHERE c.{col(conversation, 'owner')} = %s AND m.{col(message, 'status')} = %s)"
        f" + (SELECT COUNT(*) FROM {quote(call.db_table)} WHERE {col(call, 'user')} = %s"
        f" AND {col(call, 'status')} = %s AND {col(call, 'alive_at')} >= %s)"
    )
    since = call.get_field("alive_at").get_db_prep_value(calls_alive_since, connection)
    params = [user.pk, Message.Status.STREAMING, user.pk, ApiCall.Status.RUNNING, since]
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return cursor.fetchone()[0]


# --- Reads for the chat pages (sidebar, branch pages, sibling arrows) ---------------------------

SIDEBAR_PAGE_SIZE = 50
BRANCH_PAGE_SIZE = 50
# The sidebar's first page shows every pinned conversation and every folder, so both are capped
# (services refuse more): the page stays a fixed number of bounded queries.
PINNED_LIMIT = 50
FOLDER_LIMIT = 100
# Conversations shown inside each folder of the sidebar; the folder's own page lists them all.
FOLDER_PREVIEW_SIZE = 10

SIDEBAR_FIELDS = ("id", "title", "updated_at", "archived", "owner_id", "pinned_at", "folder_id")


@dataclass(frozen=True)
class FolderSection:
    folder: Folder
    conversations: list[Conversation]  # the newest FOLDER_PREVIEW_SIZE
    has_more: bool


@dataclass(frozen=True)
class SidebarPage:
    # Unpinned conversations outside folders (or, for the archive and a folder's page, all of
    # them), newest activity first.
    conversations: list[Conversation]
    # Opaque keyset cursor for the next (older) page, None on the last page.
    next_cursor: str | None
    # Only on the first page of the sidebar: pinned conversations, then folders, lead it.
    pinned: list[Conversation] = field(default_factory=list)
    folders: list[FolderSection] = field(default_factory=list)


@dataclass(frozen=True)
class SiblingPosition:
    index: int  # 1-based, in creation order
    count: int
    previous_id: uuid.UUID | None
    next_id: uuid.UUID | None


@dataclass(frozen=True)
class BranchItem:
    message: Message
    siblings: SiblingPosition


@dataclass(frozen=True)
class BranchPage:
    items: list[BranchItem]  # oldest first
    has_older: bool
    # False when the page ends above the branch's leaf (opened at an old search hit).
    is_tail: bool


def _sidebar_cursor(conversation: Conversation) -> str:
    return f"{conversation.updated_at.isoformat()}~{conversation.id}"


def sidebar_cursor_parse(*, cursor: str) -> tuple[datetime, uuid.UUID] | None:
    """The (updated_at, id) a sidebar cursor stands for; None for a string that is no cursor of
    ours (the one rule for the page's form and the query)."""
    stamp, _, ident = cursor.partition("~")
    try:
        parsed = datetime.fromisoformat(stamp)
        if parsed.tzinfo is None:
            return None
        # Converted here, where an out-of-range time fails as a bad cursor, not in the driver.
        return parsed.astimezone(UTC), uuid.UUID(ident)
    except (ValueError, OverflowError):
        return None


def conversation_sidebar_page(
    *,
    user,
    archived: bool = False,
    cursor: str | None = None,
    folder: Folder | None = None,
    limit: int = SIDEBAR_PAGE_SIZE,
) -> SidebarPage:
    """One page of the user's conversations, newest activity first.

    Keyset pagination on (updated_at, id) rather than OFFSET: a page costs the same whether it is
    the first or the hundredth, and conversations moving to the top do not shift later pages.
    The sidebar's first page also carries the pinned conversations and the folders with their
    newest conversations (three more queries, two when there are no folders); later pages hold
    only the rest, so no conversation shows twice. The archive and a folder's page are plain
    lists.
    """
    queryset = Conversation.objects.filter(
        owner=user, archived=archived, hidden_since__isnull=True
    ).only(*SIDEBAR_FIELDS)
    sectioned = not archived and folder is None
    if folder is not None:
        queryset = queryset.filter(folder=folder)
    elif sectioned:
        queryset = queryset.filter(pinned_at__isnull=True, folder__isnull=True)
    position = sidebar_cursor_parse(cursor=cursor) if cursor else None
    if position is not None:
        stamp, ident = position
        queryset = queryset.filter(Q(updated_at__lt=stamp) | Q(updated_at=stamp, id__lt=ident))
    rows = list(queryset.order_by("-updated_at", "-id")[: limit + 1])
    more = len(rows) > limit
    rows = rows[:limit]
    next_cursor = _sidebar_cursor(rows[-1]) if more else None
    if not sectioned or position is not None:
        return SidebarPage(conversations=rows, next_cursor=next_cursor)
    return SidebarPage(
        conversations=rows,
        next_cursor=next_cursor,
        pinned=conversation_list_pinned(user=user),
        folders=_folder_sections(user=user),
    )


def _shown_in_sidebar(user):
    return Conversation.objects.filter(owner=user, archived=False, hidden_since__isnull=True)


def conversation_list_pinned(*, user) -> list[Conversation]:
    return list(
        _shown_in_sidebar(user)
        .filter(pinned_at__isnull=False)
        .only(*SIDEBAR_FIELDS)
        .order_by("-pinned_at", "-id")[:PINNED_LIMIT]
    )


def folder_list_for_user(*, user) -> list[Folder]:
    return list(Folder.objects.filter(owner=user).order_by("name", "id")[:FOLDER_LIMIT])


def folder_get_for_user(*, user, folder_id: uuid.UUID) -> Folder | None:
    return Folder.objects.filter(pk=folder_id, owner=user).first()


def _folder_sections(*, user) -> list[FolderSection]:
    folders = folder_list_for_user(user=user)
    if not folders:
        return []
    # The newest few of every folder in one query: rows numbered within their folder.
    ranked = (
        _shown_in_sidebar(user)
        .filter(folder__in=[folder.pk for folder in folders], pinned_at__isnull=True)
        .only(*SIDEBAR_FIELDS)
        .annotate(
            rank=Window(
                RowNumber(),
                partition_by=[F("folder_id")],
                order_by=[F("updated_at").desc(), F("id").desc()],
            )
        )
        .filter(rank__lte=FOLDER_PREVIEW_SIZE + 1)
        .order_by("folder_id", "rank")
    )
    by_folder: dict[uuid.UUID, list[Conversation]] = {}
    for row in ranked:
        by_folder.setdefault(row.folder_id, []).append(row)
    sections = []
    for folder in folders:
        rows = by_folder.get(folder.pk, [])
        sections.append(
            FolderSection(
                folder=folder,
                conversations=rows[:FOLDER_PREVIEW_SIZE],
                has_more=len(rows) > FOLDER_PREVIEW_SIZE,
            )
        )
    return sections


def conversation_for_page(*, user, conversation_id: uuid.UUID) -> Conversation:
    """The user's conversation with its provider links; raises Conversation.DoesNotExist for
    anyone else's id, so a guessed id looks exactly like a missing one."""
    return Conversation.objects.select_related("provider_config", "fallback_chain").get(
        id=conversation_id, owner=user, hidden_since__isnull=True
    )


def message_newest_leaf_under(
    *, conversation: Conversation, message_id: uuid.UUID
) -> uuid.UUID | None:
    """The newest leaf below (or at) a message of this conversation, or None. A child is always
    newer than its parent, so the newest message of a subtree is one of its leaves."""
    from django.db import connection

    table = Message._meta.db_table
    query = f"""
        WITH RECURSIVE sub(id) AS (
            SELECT id FROM {table} WHERE id = %s AND conversation_id = %s
            UNION ALL
            SELECT m.id FROM {table} m JOIN sub ON m.parent_id = sub.id
        )
        SELECT m.id FROM {table} m JOIN sub ON m.id = sub.id ORDER BY m.created_at DESC LIMIT 1
    """
    pk = Message._meta.pk
    with connection.cursor() as cursor:
        cursor.execute(
            query,
            [pk.get_db_prep_value(message_id, connection),
             pk.get_db_prep_value(conversation.pk, connection)],
        )  # fmt: skip
        row = cursor.fetchone()
    return uuid.UUID(str(row[0])) if row else None


def message_leaf_for_conversation(*, conversation: Conversation) -> uuid.UUID | None:
    """The leaf of the branch the user looks at: the stored pointer, else the newest message."""
    if conversation.current_leaf_id:
        return conversation.current_leaf_id
    newest = (
        Message.objects.filter(conversation=conversation)
        .order_by("-created_at")
        .values_list("id", flat=True)
        .first()
    )
    return newest


def _sibling_positions(
    *, conversation: Conversation, messages: list[Message]
) -> dict[uuid.UUID, SiblingPosition]:
    parents = {message.parent_id for message in messages}
    condition = Q(parent_id__in=[parent for parent in parents if parent is not None])
    if None in parents:
        condition |= Q(parent__isnull=True)
    groups: dict[uuid.UUID | None, list[uuid.UUID]] = {}
    for ident, parent in (
        Message.objects.filter(condition, conversation=conversation)
        .order_by("created_at", "id")
        .values_list("id", "parent_id")
    ):
        groups.setdefault(parent, []).append(ident)
    positions = {}
    for message in messages:
        group = groups.get(message.parent_id) or [message.id]
        index = group.index(message.id) if message.id in group else 0
        positions[message.id] = SiblingPosition(
            index=index + 1,
            count=len(group),
            previous_id=group[index - 1] if index > 0 else None,
            next_id=group[index + 1] if index + 1 < len(group) else None,
        )
    return positions


def _branch_page(
    *, conversation: Conversation, rows: list[Message], limit: int, is_tail: bool
) -> BranchPage:
    # `rows` is root-first and holds up to limit + 1 messages: the extra one only says that
    # there is more above.
    has_older = len(rows) > limit
    page = rows[-limit:] if has_older else rows
    positions = _sibling_positions(conversation=conversation, messages=page)
    return BranchPage(
        items=[BranchItem(message=m, siblings=positions[m.id]) for m in page],
        has_older=has_older,
        is_tail=is_tail,
    )


def message_branch_page(
    *,
    conversation: Conversation,
    before: uuid.UUID | None = None,
    around: uuid.UUID | None = None,
    limit: int = BRANCH_PAGE_SIZE,
) -> BranchPage:
    """One page of a branch, oldest first, in a constant number of queries (at most four).

    - no argument: the newest `limit` messages of the current branch (ending at its leaf);
    - `before`: the `limit` messages above that message (scrolling up);
    - `around`: the branch through that message (e.g. a search hit on another branch), ending
      at the newest leaf below it, or at the message itself when it is further up than a page.
    Ids from another conversation give an empty page.
    """
    empty = BranchPage(items=[], has_older=False, is_tail=True)
    if before is not None:
        parent_id = (
            Message.objects.filter(pk=before, conversation=conversation)
            .values_list("parent_id", flat=True)
            .first()
        )
        if parent_id is None:
            return BranchPage(items=[], has_older=False, is_tail=False)
        rows = message_branch_list(leaf_id=parent_id, limit=limit + 1)
        return _branch_page(conversation=conversation, rows=rows, limit=limit, is_tail=False)
    if around is not None:
        leaf = message_newest_leaf_under(conversation=conversation, message_id=around)
        if leaf is None:
            return empty
        rows = message_branch_list(leaf_id=leaf, limit=limit + 1)
        if any(row.id == around for row in rows[-limit:]):
            return _branch_page(conversation=conversation, rows=rows, limit=limit, is_tail=True)
        rows = message_branch_list(leaf_id=around, limit=limit + 1)
        return _branch_page(conversation=conversation, rows=rows, limit=limit, is_tail=False)
    leaf = message_leaf_for_conversation(conversation=conversation)
    if leaf is None:
        return empty
    rows = message_branch_list(leaf_id=leaf, limit=limit + 1)
    return _branch_page(conversation=conversation, rows=rows, limit=limit, is_tail=True)


def message_branch(*, conversation: Conversation) -> list[Message]:
    """The whole current branch, root first (for exports, never for pages)."""
    leaf = message_leaf_for_conversation(conversation=conversation)
    if leaf is None:
        return []
    return message_branch_list(leaf_id=leaf, limit=10**9)


# --- Share links ---------------------------------------------------------------------------------


def share_get_by_token(*, token: str) -> SharedConversation | None:
    """The link with this token, for anyone who has it; None once revoked, while its
    conversation is being deleted, or once its owner's account is deactivated (as their API keys
    are)."""
    return SharedConversation.objects.filter(
        token=token, conversation__hidden_since__isnull=True, conversation__owner__is_active=True
    ).first()


def share_list_for_user(*, user: AbstractBaseUser) -> list[SharedConversation]:
    return list(
        SharedConversation.objects.filter(owner=user, conversation__hidden_since__isnull=True)
        .defer("messages")
        .order_by("-created_at")
    )


def share_list_for_conversation(*, conversation: Conversation) -> list[SharedConversation]:
    return list(
        SharedConversation.objects.filter(conversation=conversation)
        .defer("messages")
        .order_by("-created_at")
    )


# --- Per-user settings ---------------------------------------------------------------------------


def user_theme(*, user) -> str:
    """The theme the user chose; "system" (follow the device) for anyone who never chose."""
    if not user.is_authenticated:
        return UserSettings.Theme.SYSTEM
    theme = UserSettings.objects.filter(user=user).values_list("theme", flat=True).first()
    return theme or UserSettings.Theme.SYSTEM
