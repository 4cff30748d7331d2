"""Writes for conversations and messages (sync; async code calls them through chatsite.db).

Starting an exchange (send, regenerate, edit) is one transaction: ownership checks, the per-user
limit on running answers, the user message and the assistant placeholder all succeed or fail
together, so no half-written exchange is ever visible.
"""

import itertools
import logging
import secrets
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from functools import partial
from typing import Any

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.models import AbstractBaseUser
from django.db import DatabaseError, IntegrityError, connection, transaction
from django.utils import timezone

from conversations.api.selectors import api_call_stale_cutoff
from conversations.attachments.content import has_images, message_content
from conversations.attachments.selectors import attachment_file_names, attachment_map_for_messages
from conversations.attachments.services import (
    attachments_attach,
    attachments_copy,
    attachments_for_send,
    files_delete,
)
from conversations.errors import ChatError
from conversations.groups import ENGINES, generation_stop
from conversations.models import (
    Conversation,
    Folder,
    Message,
    SharedConversation,
    UserSettings,
)
from conversations.protocol import PROVIDER_OPTIONS, ChatSend, options_parse
from conversations.rendering import RENDER_VERSION, message_html
from conversations.selectors import (
    FOLDER_LIMIT,
    PINNED_LIMIT,
    answer_count_running_for_user,
    message_branch,
    message_branch_list,
    message_newest_leaf_under,
)
from providers.errors import ProviderError
from providers.models import FallbackChain, ProviderConfig
from providers.selectors import (
    provider_config_default_model,
    provider_config_models,
    provider_target_accepts_images,
    provider_target_get,
)
from providers.types import Messages

logger = logging.getLogger(__name__)

NOT_FOUND = "No such conversation or message."
INTERRUPTED_DETAIL = "The server stopped before the answer was complete."
TARGET_FIELDS = ["provider_config", "fallback_chain", "model", "updated_at"]
# Rows one transaction of a bulk write (an import, a delete) touches. SQLite has one writer at a
# time: 500 message rows with their full-text index rows take tens of milliseconds, so another
# user's chat never waits long for the lock (bench/import_contention.py measures it).
BULK_WRITE_BATCH = 500
# The longest pause a bulk write leaves between two transactions on SQLite (see
# bulk_write_transaction), so a transaction slowed by a busy machine does not stretch it too.
BULK_WRITE_MAX_PAUSE = 0.2
# A conversation hidden this long ago by an import or a delete was left by a process that died.
HIDDEN_ABANDONED_AFTER = timedelta(hours=1)


@dataclass(frozen=True)
class Exchange:
    """What the engine needs to run one answer; returned once the rows are committed."""

    conversation: Conversation
    conversation_created: bool
    # None for a regenerated answer (its user message already exists).
    user_message: Message | None
    assistant_message: Message
    target: ProviderConfig | FallbackChain
    model: str | None
    options: dict[str, Any] = field(default_factory=dict)
    history: Messages = field(default_factory=list)
    # The first user message, when the conversation has no title yet.
    title_source: str | None = None


def message_send(*, user: AbstractBaseUser, request: ChatSend, assistant_id: uuid.UUID) -> Exchange:
    """Images in the history are placeholders until attachments.services.exchange_with_images
    fills them in, after the commit and off the writer thread (conversations.generation)."""
    with transaction.atomic():
        return _message_send(user=user, request=request, assistant_id=assistant_id)


def _message_send(
    *, user: AbstractBaseUser, request: ChatSend, assistant_id: uuid.UUID
) -> Exchange:
    _lock_user_and_check_limit(user)
    created = request.conversation is None
    if created:
        conversation = Conversation(owner=user)
    else:
        conversation = _own_conversation(user, request.conversation)
    target, model = _target_and_model(conversation, request.provider, request.model)
    if request.parent is not None:
        parent = Message.objects.filter(pk=request.parent, conversation=conversation).first()
        if parent is None:
            raise ChatError("not_found", NOT_FOUND)
    else:
        parent = conversation.current_leaf
    _set_target(conversation, target, model)
    conversation.options = {**conversation.options, **request.options}
    if request.system is not None:
        conversation.system_prompt = request.system
    # Saved once, already pointing at the answer about to be inserted (foreign keys are
    # checked at commit), instead of once before and once after the messages.
    conversation.current_leaf_id = assistant_id
    conversation.save()
    attachments = attachments_for_send(user=user, attachment_ids=list(request.attachments))
    return _exchange(
        conversation, created, parent, request.content, target, model, assistant_id,
        attachments=attachments,
    )  # fmt: skip


def message_regenerate(
    *, user: AbstractBaseUser, message_id: uuid.UUID, assistant_id: uuid.UUID
) -> Exchange:
    with transaction.atomic():
        _lock_user_and_check_limit(user)
        answer = _own_message(user, message_id)
        if answer.role != Message.Role.ASSISTANT or answer.parent_id is None:
            raise ChatError("invalid", "Only an answer can be regenerated.")
        if answer.status == Message.Status.STREAMING:
            raise ChatError("busy", "This answer is still being written; stop it first.")
        conversation = answer.conversation
        target, model = _target_and_model(conversation, None, None)
        _set_target(conversation, target, model)
        _save_target_and_leaf(conversation, assistant_id)
        # The branch up to the question, which ends it: the question itself comes with it.
        branch = message_branch_list(leaf_id=answer.parent_id, limit=settings.CHAT_HISTORY_MESSAGES)
        question = branch[-1]
        assistant = _placeholder(conversation, question, target, model, assistant_id)
        assistant.save(force_insert=True)
        return _finish_exchange(conversation, False, None, assistant, target, model, branch)


def message_edit(
    *, user: AbstractBaseUser, message_id: uuid.UUID, content: str, assistant_id: uuid.UUID
) -> Exchange:
    with transaction.atomic():
        _lock_user_and_check_limit(user)
        original = _own_message(user, message_id)
        if original.role != Message.Role.USER:
            raise ChatError("invalid", "Only a user message can be edited.")
        conversation = original.conversation
        target, model = _target_and_model(conversation, None, None)
        _set_target(conversation, target, model)
        _save_target_and_leaf(conversation, assistant_id)
        parent = None
        if original.parent_id is not None:
            parent = Message.objects.filter(pk=original.parent_id).first()
        # The edited question keeps the original's files.
        return _exchange(
            conversation, False, parent, content, target, model, assistant_id,
            copy_attachments_of=original.id,
        )  # fmt: skip


def message_checkpoint(*, message_id: uuid.UUID, content: str | None) -> None:
    """Save the partial answer (or, with None, only refresh the liveness stamp)."""
    fields: dict[str, Any] = {"checkpointed_at": timezone.now()}
    if content is not None:
        fields["content"] = content
    Message.objects.filter(pk=message_id, status=Message.Status.STREAMING).update(**fields)


def message_checkpoint_many(*, checkpoints: dict[uuid.UUID, str | None]) -> None:
    """Several answers' checkpoints (see message_checkpoint) in one transaction: the texts in
    UPDATE ... CASE statements (as few as the database's parameter limit allows), the stamps
    alone in another."""
    now = timezone.now()
    texts = [(key, value) for key, value in checkpoints.items() if value is not None]
    stamps = [key for key, value in checkpoints.items() if value is None]
    with transaction.atomic():
        for chunk in itertools.batched(texts, _CHECKPOINTS_PER_STATEMENT, strict=False):
            _checkpoint_texts(chunk, now)
        if stamps:
            Message.objects.filter(status=Message.Status.STREAMING, pk__in=stamps).update(
                checkpointed_at=now
            )


# Three parameters per answer: within SQLite's oldest limit (999) in one statement.
_CHECKPOINTS_PER_STATEMENT = 300


def _checkpoint_texts(texts: tuple[tuple[uuid.UUID, str], ...], now: datetime) -> None:
    # Written as SQL: with hundreds of answers streaming, the ORM spent more of the process's
    # time building a CASE of When() expressions than the database spent running it, and that
    # time is taken from the event loop that streams every answer.
    meta = Message._meta
    quote = connection.ops.quote_name
    column = {
        name: quote(meta.get_field(name).column)
        for name in ("id", "content", "checkpointed_at", "status")
    }
    ids = [meta.pk.get_db_prep_value(key, connection) for key, _ in texts]
    cases = " ".join(["WHEN %s THEN %s"] * len(texts))
    sql = (
        f"UPDATE {quote(meta.db_table)} SET {column['content']} = CASE {column['id']} {cases}"
        f" END, {column['checkpointed_at']} = %s WHERE {column['id']} IN"
        f" ({', '.join(['%s'] * len(ids))}) AND {column['status']} = %s"
    )
    stamp = meta.get_field("checkpointed_at").get_db_prep_value(now, connection)
    params = [value for key, (_, text) in zip(ids, texts, strict=True) for value in (key, text)]
    with connection.cursor() as cursor:
        cursor.execute(sql, [*params, stamp, *ids, Message.Status.STREAMING])


def message_html_store(*, messages: list[Message]) -> None:
    """Save the HTML rendered for messages shown on a page, in one statement (a page holds a
    bounded number of messages). Only a cache: when the database is busy or down, the page
    shows anyway."""
    try:
        Message.objects.bulk_update(messages, ["content_html", "content_html_version"])
    except DatabaseError:
        logger.warning("could not store rendered HTML; it is rendered again next time")


def message_finish(
    *,
    message_id: uuid.UUID,
    content: str,
    status: str,
    provider: str,
    model: str,
    prompt_tokens: int | None,
    completion_tokens: int | None,
    error_code: str = "",
    error_detail: str = "",
    content_html: str | None = None,
    title: str | None = None,
) -> Conversation | None:
    """The final write of an answer. Unconditional: the generation that ran knows best, even if a
    stale check wrongly marked its row `interrupted` meanwhile.

    With `title`, the conversation gets it too unless it has one already (a first answer; in the
    same transaction, which saves every new conversation a round trip to the database thread):
    the conversation is returned when its title was set, else None."""
    now = timezone.now()
    fields: dict[str, Any] = {
        "content": content,
        "status": status,
        "prompt_tokens": prompt_tokens,
        "completion_tokens": completion_tokens,
        "error_code": error_code[:64],
        "error_detail": error_detail[:500],
        "checkpointed_at": now,
        "completed_at": now,
    }
    if content_html is not None:
        fields["content_html"] = content_html
        fields["content_html_version"] = RENDER_VERSION
    if provider:
        fields["provider"] = provider[:64]
    if model:
        fields["model"] = model[:200]
    # As SQL, like the checkpoints: the ORM took a millisecond and a half to build these two
    # statements, four times what SQLite took to run them, and every answer ends with them
    # (time that holds the GIL the event loop streams with).
    messages = Message._meta
    quote = connection.ops.quote_name
    message_pk = messages.pk.get_db_prep_value(message_id, connection)
    with transaction.atomic():
        if not _rows_update(Message, fields, f"{quote(messages.pk.column)} = %s", [message_pk]):
            return None
        owner = (
            f"{quote(Conversation._meta.pk.column)} = (SELECT"
            f" {quote(messages.get_field('conversation').column)} FROM"
            f" {quote(messages.db_table)} WHERE {quote(messages.pk.column)} = %s)"
        )
        if title:
            untitled = f"{owner} AND {quote(Conversation._meta.get_field('title').column)} = %s"
            changes = {"updated_at": now, "title": title[:200]}
            if _rows_update(Conversation, changes, untitled, [message_pk, ""]):
                return Conversation.objects.get(messages__pk=message_id)
        _rows_update(Conversation, {"updated_at": now}, owner, [message_pk])
        return None


def _rows_update(model: type[Any], values: dict[str, Any], where: str, params: list[Any]) -> int:
    """UPDATE `model`'s rows matching `where` (SQL with its `params`) to `values`, given by field
    name and prepared by each field as the ORM prepares them; the number of rows changed.
    `where` is SQL written in this module, never text from a request: values go in `params`."""
    meta = model._meta
    quote = connection.ops.quote_name
    assignments, prepared = [], []
    for name, value in values.items():
        field = meta.get_field(name)
        assignments.append(f"{quote(field.column)} = %s")
        prepared.append(field.get_db_prep_save(value, connection))
    sql = f"UPDATE {quote(meta.db_table)} SET {', '.join(assignments)} WHERE {where}"
    with connection.cursor() as cursor:
        cursor.execute(sql, [*prepared, *params])
        return cursor.rowcount


def message_interrupt(
    *, message_id: uuid.UUID, content: str | None = None, stopped: bool = False
) -> bool:
    """End a `streaming` answer whose generation is gone, keeping its text (the last checkpoint,
    or `content` when the event log still holds more): `interrupted`, or `stopped` when its
    user asked for that. False when the answer had already ended."""
    fields: dict[str, Any] = {"completed_at": timezone.now()}
    if stopped:
        fields["status"] = Message.Status.STOPPED
    else:
        fields.update(
            status=Message.Status.INTERRUPTED,
            error_code="interrupted",
            error_detail=INTERRUPTED_DETAIL,
        )
    if content is not None:
        fields["content"] = content
    return bool(
        Message.objects.filter(pk=message_id, status=Message.Status.STREAMING).update(**fields)
    )


def message_interrupt_dead(*, saved_before: datetime | None) -> int:
    """Interrupt every `streaming` answer (saved_before=None) or those whose last checkpoint is
    older than `saved_before`, keeping their checkpointed text. Returns how many."""
    rows = Message.objects.filter(status=Message.Status.STREAMING)
    if saved_before is not None:
        rows = rows.filter(checkpointed_at__lt=saved_before)
    return rows.update(
        status=Message.Status.INTERRUPTED,
        completed_at=timezone.now(),
        error_code="interrupted",
        error_detail=INTERRUPTED_DETAIL,
    )


def conversation_title_set_if_empty(
    *, conversation_id: uuid.UUID, title: str
) -> Conversation | None:
    """Set the title unless the user (or another answer) already gave one; the updated
    conversation, or None when nothing changed."""
    if not Conversation.objects.filter(pk=conversation_id, title="").update(title=title[:200]):
        return None
    return Conversation.objects.filter(pk=conversation_id).first()


def provider_options(*, stored: dict[str, Any] | None) -> dict[str, Any]:
    """The conversation's options that go to the provider: the sampling options a user may set,
    checked again here because the stored ones may come from an imported file. Never api_base,
    proxy or api_key: those are the admin's, and a user who could set them could send the
    admin's token anywhere."""
    chosen = {key: value for key, value in (stored or {}).items() if key in PROVIDER_OPTIONS}
    try:
        options, _ = options_parse(chosen)
    except ChatError as exc:
        logger.warning("ignoring stored options that are not valid: %s", exc.detail)
        return {}
    return options


# --- helpers of the exchange transaction ---------------------------------------------------------


def _lock_user_and_check_limit(user: AbstractBaseUser) -> None:
    answer_slot_check(user=user)


def answer_slot_check(*, user: AbstractBaseUser) -> None:
    """Refuse (ChatError `rate_limited`) when the user already has CHAT_MAX_CONCURRENT_GENERATIONS
    answers running: chat answers and API calls together. Call inside the transaction that
    starts the answer, which this makes wait for the user's other starts."""
    # The user row lock serialises one user's starts across processes on PostgreSQL, so two
    # simultaneous sends cannot both pass the limit. SQLite has no row locks (the query would
    # run for nothing): its IMMEDIATE transactions already serialise every writer.
    if connection.features.has_select_for_update:
        get_user_model().objects.select_for_update().filter(pk=user.pk).first()
    limit = settings.CHAT_MAX_CONCURRENT_GENERATIONS
    running = answer_count_running_for_user(user=user, calls_alive_since=api_call_stale_cutoff())
    if running >= limit:
        raise ChatError(
            "rate_limited", f"You already have {limit} answers running; wait or stop one."
        )


def _own_conversation(user: AbstractBaseUser, conversation_id: uuid.UUID) -> Conversation:
    # With its provider links and its leaf (the new message's parent) in the same query; only
    # the conversation's row is locked.
    rows = Conversation.objects.select_related("provider_config", "fallback_chain", "current_leaf")
    if connection.features.has_select_for_update_of:
        rows = rows.select_for_update(of=("self",))
    conversation = rows.filter(pk=conversation_id, owner=user, hidden_since__isnull=True).first()
    if conversation is None:
        raise ChatError("not_found", NOT_FOUND)
    return conversation


def _own_message(user: AbstractBaseUser, message_id: uuid.UUID) -> Message:
    message = (
        Message.objects.select_related(
            "conversation__provider_config", "conversation__fallback_chain"
        )
        .filter(pk=message_id, conversation__owner=user, conversation__hidden_since__isnull=True)
        .first()
    )
    if message is None:
        raise ChatError("not_found", NOT_FOUND)
    return message


def _target_and_model(
    conversation: Conversation, provider: str | None, model: str | None
) -> tuple[ProviderConfig | FallbackChain, str | None]:
    current = _current_target(conversation)
    try:
        target = current if provider is None and current else provider_target_get(name=provider)
    except ProviderError as exc:
        raise ChatError(exc.code, exc.message) from None
    same_target = target == current
    if isinstance(target, ProviderConfig):
        allowed = provider_config_models(config=target)
        if model is not None:
            if allowed and model not in allowed:
                raise ChatError("model_not_found", "That model is not offered by this provider.")
            return target, model
        if same_target and conversation.model and (not allowed or conversation.model in allowed):
            return target, conversation.model
        return target, provider_config_default_model(config=target) or None
    if model is not None:
        return target, model
    return target, (conversation.model or None) if same_target else None


def _current_target(conversation: Conversation) -> ProviderConfig | FallbackChain | None:
    if conversation.pk is None:
        return None
    if conversation.provider_config_id:
        config = conversation.provider_config
        return config if config.enabled else None
    if conversation.fallback_chain_id:
        chain = conversation.fallback_chain
        return chain if chain.enabled else None
    return None


def _set_target(
    conversation: Conversation, target: ProviderConfig | FallbackChain, model: str | None
) -> None:
    if isinstance(target, ProviderConfig):
        conversation.provider_config, conversation.fallback_chain = target, None
    else:
        conversation.provider_config, conversation.fallback_chain = None, target
    conversation.model = model or ""


def _save_target_and_leaf(conversation: Conversation, assistant_id: uuid.UUID) -> None:
    # Only what changed: the row was read without a lock, and a rename or a title written
    # meanwhile must survive. The leaf already points at the answer about to be inserted
    # (foreign keys are checked at commit).
    conversation.current_leaf_id = assistant_id
    conversation.save(update_fields=[*TARGET_FIELDS, "current_leaf"])


def _placeholder(
    conversation: Conversation,
    parent: Message,
    target: ProviderConfig | FallbackChain,
    model: str | None,
    assistant_id: uuid.UUID,
) -> Message:
    """The answer's row, not saved yet."""
    if parent.status == Message.Status.STREAMING:
        raise ChatError("busy", "An answer is still being written here; stop it first.")
    return Message(
        id=assistant_id,
        conversation=conversation,
        parent=parent,
        role=Message.Role.ASSISTANT,
        status=Message.Status.STREAMING,
        provider=target.name if isinstance(target, ProviderConfig) else "",
        model=model or "",
        checkpointed_at=timezone.now(),
    )


def _exchange(
    conversation: Conversation,
    created: bool,
    parent: Message | None,
    content: str,
    target: ProviderConfig | FallbackChain,
    model: str | None,
    assistant_id: uuid.UUID,
    *,
    attachments: list | None = None,
    copy_attachments_of: uuid.UUID | None = None,
) -> Exchange:
    if parent is not None and parent.status == Message.Status.STREAMING:
        raise ChatError("busy", "An answer is still being written here; stop it first.")
    question = Message(
        conversation=conversation, parent=parent, role=Message.Role.USER, content=content
    )
    assistant = _placeholder(conversation, question, target, model, assistant_id)
    # Both rows in one INSERT: every send writes them, and each statement the ORM builds costs
    # more of the database thread's time (and the GIL) than SQLite takes to run it.
    Message.objects.bulk_create([question, assistant])
    own = list(attachments or [])
    attachments_attach(attachments=own, message_id=question.id)
    if copy_attachments_of is not None:
        own += attachments_copy(from_message_id=copy_attachments_of, to_message_id=question.id)
    # For the message.created frames: other tabs show the files too.
    question.attached = own
    attached = None
    if parent is None:
        # A new thread: the question is the whole branch, no need to read it back (nor its
        # attachments: they are the question's own).
        branch = [question]
        attached = {question.id: own} if own else {}
    else:
        branch = message_branch_list(leaf_id=question.id, limit=settings.CHAT_HISTORY_MESSAGES)
    return _finish_exchange(
        conversation, created, question, assistant, target, model, branch, attached=attached
    )


def _finish_exchange(
    conversation: Conversation,
    created: bool,
    question: Message | None,
    assistant: Message,
    target: ProviderConfig | FallbackChain,
    model: str | None,
    branch: list[Message],
    *,
    attached: dict[uuid.UUID, list] | None = None,
) -> Exchange:
    """The Exchange for an answer whose rows are written; `branch` ends at its question.
    `attached`: the branch's attachments by message, when the caller knows them already."""
    history: Messages = []
    if conversation.system_prompt:
        history.append({"role": "system", "content": conversation.system_prompt})
    # Attached files go into their messages' content (attachments.content); images as
    # placeholders, filled in after the transaction.
    if attached is None:
        attached = attachment_map_for_messages(
            message_ids=[message.id for message in branch if message.role == Message.Role.USER]
        )
    history.extend(
        {
            "role": message.role,
            "content": message_content(
                text=message.content,
                attachments=attached[message.id],
                # Images go as images with the question being answered only (message_content).
                images=message.id == branch[-1].id,
            )
            if message.id in attached
            else message.content,
        }
        for message in branch
        if message.content or message.id in attached
    )
    # Refused here, before any row is kept or any request goes out: a provider without vision
    # would drop the image or fail upstream, either way after the user waited. Only the question
    # being answered carries images (earlier ones are named in their text).
    if has_images(history) and not provider_target_accepts_images(target=target):
        raise ChatError(
            "vision_unsupported",
            "This model cannot see images. Choose a model with vision, or remove the image.",
        )
    title_source = None
    if not conversation.title:
        first = next((m for m in branch if m.role == Message.Role.USER), None)
        title_source = first.content if first else None
    return Exchange(
        conversation=conversation,
        conversation_created=created,
        user_message=question,
        assistant_message=assistant,
        target=target,
        model=model,
        options=provider_options(stored=conversation.options),
        history=history,
        title_source=title_source,
    )


# --- Page actions: rename, archive, delete, branch switch, settings ------------------------------
# Callers have already checked ownership (selectors.conversation_for_page). These use update()
# rather than save() so that tidying a conversation does not bump `updated_at` and reorder the
# sidebar; only new messages move a conversation to the top.


def conversation_rename(*, conversation: Conversation, title: str) -> Conversation:
    conversation.title = " ".join(title.split())[:200]
    Conversation.objects.filter(pk=conversation.pk).update(title=conversation.title)
    return conversation


def conversation_set_archived(*, conversation: Conversation, archived: bool) -> Conversation:
    conversation.archived = archived
    Conversation.objects.filter(pk=conversation.pk).update(archived=archived)
    return conversation


def conversation_delete(*, conversation: Conversation) -> None:
    """Delete a conversation with all its messages, in short transactions.

    The first hides the conversation from its owner and asks its running answers to stop; the
    messages then go BULK_WRITE_BATCH at a time, and the conversation row last. A process that
    dies half-way leaves a hidden conversation, which `conversation_sweep_hidden` removes (at
    the owner's next delete or import).
    """
    with transaction.atomic():
        running = list(
            Message.objects.filter(
                conversation=conversation, status=Message.Status.STREAMING
            ).values_list("pk", flat=True)
        )
        Conversation.objects.filter(pk=conversation.pk).update(
            current_leaf=None, hidden_since=timezone.now()
        )
        # Answers still being written for it would go on costing upstream tokens for nothing.
        for message_id in running:
            transaction.on_commit(partial(_request_stop, message_id))
    conversation_purge(conversation_id=conversation.pk)
    conversation_sweep_hidden(user=conversation.owner)


@contextmanager
def bulk_write_transaction() -> Iterator[None]:
    """One transaction of a bulk write, then (on SQLite) a pause as long as it took. SQLite's
    busy handler polls for the lock with sleeps of up to 100 ms: a bulk writer that takes the
    lock back at once would starve every other writer, however short its transactions."""
    started = time.monotonic()
    with transaction.atomic():
        yield
    if connection.vendor == "sqlite":
        time.sleep(min(time.monotonic() - started, BULK_WRITE_MAX_PAUSE))


def conversation_purge(*, conversation_id: uuid.UUID) -> None:
    """Delete a (hidden) conversation's messages a batch per transaction, then the row itself."""
    for batch in _message_id_batches(conversation_id):
        with bulk_write_transaction():
            files = attachment_file_names(message_ids=batch)
            # Links into the batch are cut first: otherwise the deletion collector follows the
            # self-referencing `parent` cascade one tree level per query.
            Message.objects.filter(parent_id__in=batch).update(parent=None)
            Message.objects.filter(pk__in=batch).only("pk").delete()
        # The attachment rows went with their messages; their files go once that committed.
        files_delete(names=files)
    Conversation.objects.filter(pk=conversation_id).delete()


def _message_id_batches(conversation_id: uuid.UUID) -> Iterator[list[uuid.UUID]]:
    """The ids of the conversation's remaining messages, a batch at a time (read between the
    transactions that delete them)."""
    messages = Message.objects.filter(conversation_id=conversation_id)
    while batch := list(messages.values_list("pk", flat=True)[:BULK_WRITE_BATCH]):
        yield batch


def conversation_sweep_hidden(*, user: AbstractBaseUser) -> int:
    """Remove the user's conversations that an import or a delete hid and never finished (its
    process died); returns how many."""
    cutoff = timezone.now() - HIDDEN_ABANDONED_AFTER
    stale = list(
        Conversation.objects.filter(owner=user, hidden_since__lt=cutoff).values_list(
            "pk", flat=True
        )
    )
    for conversation_id in stale:
        conversation_purge(conversation_id=conversation_id)
    return len(stale)


def _request_stop(message_id: uuid.UUID) -> None:
    """Ask whichever process runs the answer to stop it (the engine listens on this group)."""
    async_to_sync(get_channel_layer().group_send)(ENGINES, generation_stop(message_id))


def conversation_switch_branch(*, conversation: Conversation, message: Message) -> uuid.UUID:
    """Show the branch through `message` (a sibling arrow): the current leaf becomes the newest
    leaf below it. Returns that leaf's id."""
    leaf = message_newest_leaf_under(conversation=conversation, message_id=message.pk)
    if leaf is None:
        raise ChatError("not_found", NOT_FOUND)
    Conversation.objects.filter(pk=conversation.pk).update(current_leaf_id=leaf)
    conversation.current_leaf_id = leaf
    return leaf


def conversation_update_settings(
    *,
    conversation: Conversation,
    provider_config: ProviderConfig | None,
    fallback_chain: FallbackChain | None,
    model: str,
    system_prompt: str,
    temperature: float | None,
    max_tokens: int | None,
) -> Conversation:
    """Store the composer's settings on the conversation; None removes an option, so the
    provider's own default applies again."""
    options = dict(conversation.options or {})
    for key, value in (("temperature", temperature), ("max_tokens", max_tokens)):
        if value is None:
            options.pop(key, None)
        else:
            options[key] = value
    conversation.provider_config = provider_config
    conversation.fallback_chain = None if provider_config is not None else fallback_chain
    conversation.model = model[:200]
    conversation.system_prompt = system_prompt
    conversation.options = options
    Conversation.objects.filter(pk=conversation.pk).update(
        provider_config=conversation.provider_config,
        fallback_chain=conversation.fallback_chain,
        model=conversation.model,
        system_prompt=system_prompt,
        options=options,
    )
    return conversation


# --- Share links ---------------------------------------------------------------------------------

# 32 random bytes: 43 URL-safe characters, far beyond guessing.
SHARE_TOKEN_BYTES = 32
SHARED_STATUSES = {
    Message.Status.COMPLETE,
    Message.Status.STOPPED,
    Message.Status.ERROR,
    Message.Status.INTERRUPTED,
}


def _shared_message(message: Message) -> dict[str, Any]:
    # Only what the page shows: no ids, provider names or errors meant for the owner.
    final_answer = message.role == Message.Role.ASSISTANT and message.status in SHARED_STATUSES
    return {
        "role": message.role,
        "content": message.content,
        "html": message_html(message) if final_answer and message.content else None,
    }


def share_create(*, conversation: Conversation) -> SharedConversation:
    """A new link to a copy of the conversation's current branch, as it is now (callers have
    checked ownership). The HTML is copied too, so the shared page never renders Markdown."""
    branch = message_branch(conversation=conversation)
    return SharedConversation.objects.create(
        token=secrets.token_urlsafe(SHARE_TOKEN_BYTES),
        conversation=conversation,
        owner_id=conversation.owner_id,
        title=conversation.title,
        messages=[_shared_message(message) for message in branch],
    )


def share_revoke(*, user: AbstractBaseUser, share_id: int) -> bool:
    """Delete one of the user's links; False when the user has no such link."""
    deleted, _ = SharedConversation.objects.filter(pk=share_id, owner=user).delete()
    return deleted > 0


# --- Pins and folders ----------------------------------------------------------------------------
# Like the page actions above: update() leaves `updated_at` alone, so filing a conversation does
# not reorder the sidebar. Callers have checked that the conversation and folder are the user's.


def conversation_set_pinned(*, conversation: Conversation, pinned: bool) -> Conversation:
    with transaction.atomic():
        if pinned and conversation.pinned_at is None:
            _lock_user(conversation.owner_id)
            count = Conversation.objects.filter(
                owner_id=conversation.owner_id, pinned_at__isnull=False, archived=False
            ).count()
            if count >= PINNED_LIMIT:
                raise ChatError("too_many_pins", f"You can pin up to {PINNED_LIMIT} conversations.")
        conversation.pinned_at = (conversation.pinned_at or timezone.now()) if pinned else None
        Conversation.objects.filter(pk=conversation.pk).update(pinned_at=conversation.pinned_at)
    return conversation


def conversation_move(*, conversation: Conversation, folder: Folder | None) -> Conversation:
    if folder is not None and folder.owner_id != conversation.owner_id:
        raise ChatError("not_found", "No such folder.")
    conversation.folder = folder
    Conversation.objects.filter(pk=conversation.pk).update(folder=folder)
    return conversation


def _lock_user(user_id: int) -> None:
    # Serialises one user's limit checks (two tabs creating the 100th folder at once); SQLite's
    # IMMEDIATE transactions serialise writers already (see _lock_user_and_check_limit).
    if connection.features.has_select_for_update:
        get_user_model().objects.select_for_update().filter(pk=user_id).first()


def _folder_name(name: str) -> str:
    tidy = " ".join(name.split())[:100]
    if not tidy:
        raise ChatError("invalid", "A folder needs a name.")
    return tidy


def folder_create(*, user: AbstractBaseUser, name: str) -> Folder:
    name = _folder_name(name)
    try:
        with transaction.atomic():
            _lock_user(user.pk)
            if Folder.objects.filter(owner=user).count() >= FOLDER_LIMIT:
                raise ChatError("too_many_folders", f"You can have up to {FOLDER_LIMIT} folders.")
            return Folder.objects.create(owner=user, name=name)
    except IntegrityError:
        raise ChatError("folder_exists", f"You already have a folder named “{name}”.") from None


def folder_rename(*, folder: Folder, name: str) -> Folder:
    name = _folder_name(name)
    if Folder.objects.filter(owner_id=folder.owner_id, name=name).exclude(pk=folder.pk).exists():
        raise ChatError("folder_exists", f"You already have a folder named “{name}”.")
    try:
        with transaction.atomic():
            Folder.objects.filter(pk=folder.pk).update(name=name)
    except IntegrityError:
        raise ChatError("folder_exists", f"You already have a folder named “{name}”.") from None
    folder.name = name
    return folder


def folder_delete(*, folder: Folder) -> None:
    """Delete the folder; its conversations stay, outside any folder (the foreign key is SET_NULL,
    done here in one UPDATE before the row goes)."""
    with transaction.atomic():
        Conversation.objects.filter(folder=folder).update(folder=None)
        folder.delete()


# --- Per-user settings ---------------------------------------------------------------------------


def user_theme_set(*, user: AbstractBaseUser, theme: str) -> None:
    if theme not in UserSettings.Theme.values:
        raise ChatError("invalid", "Choose System, Light or Dark.")
    UserSettings.objects.update_or_create(user=user, defaults={"theme": theme})
