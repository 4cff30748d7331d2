"""Export and import of conversations.

Formats:
- `chatsite.conversation` (JSON, version 1): one conversation with its whole message tree
  (ids, parents, roles, contents, statuses, providers, models, usage, errors, timestamps);
- `chatsite.export` (JSON, version 1): `{"conversations": [<chatsite.conversation>, ...]}`,
  everything a user has, produced in batches so memory stays flat;
- Markdown: the current branch, readable anywhere;
- a user message's attached files travel inside it (`attachments`: name, kind, type, size and
  the file's bytes in base64); an import checks them as an upload is checked (size, magic bytes,
  text extraction) and stores them anew;
- import also accepts an OpenAI-style `{"messages": [{"role", "content"}, ...]}` (or the bare
  list), which becomes a new conversation with one branch.

An import is validated completely before anything is written: a bad file changes nothing. It is
then written in short transactions (IMPORT_BATCH_ROWS rows, IMPORT_BATCH_CHARS of text at most),
so that no other user waits long for SQLite's single writer; its conversations stay hidden until
the last transaction shows them all at once, and a failure half-way deletes what was written.
The owner gets all of the file or none of it.
"""

import base64
import binascii
import json
import logging
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

from django.conf import settings
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.db import DatabaseError, transaction
from django.utils import timezone

from conversations import titles
from conversations.attachments.content import file_detect
from conversations.attachments.errors import AttachmentError
from conversations.attachments.models import Attachment
from conversations.attachments.selectors import attachment_map_for_messages
from conversations.attachments.services import attachment_name_clean, files_delete
from conversations.errors import ChatError
from conversations.models import Conversation, Message
from conversations.protocol import PROVIDER_OPTIONS, options_parse, text_is_storable
from conversations.services import (
    bulk_write_transaction,
    conversation_purge,
    conversation_sweep_hidden,
)

logger = logging.getLogger(__name__)

CONVERSATION_FORMAT = "chatsite.conversation"
EXPORT_FORMAT = "chatsite.export"
FORMAT_VERSION = 1
EXPORT_BATCH_SIZE = 50
# Messages read from the database at a time while exporting.
EXPORT_MESSAGE_CHUNK_SIZE = 200
MAX_IMPORT_MESSAGES = 100_000
MAX_IMPORT_CONVERSATIONS = 10_000
# The import limit of one message, in characters. Larger than what chat accepts from a user
# (CHAT_MAX_CONTENT_BYTES), because answers may be longer than questions; a message too long to
# render as Markdown quickly is shown as plain text (conversations.rendering).
MAX_CONTENT_LENGTH = 1_000_000
# Messages written per transaction. Each holds SQLite's writer lock for about 0.12 ms on a quiet
# machine (mostly the ORM building its rows and the UPDATE restoring their times), so a batch
# holds it for about 30 ms; bench/import_contention.py measures it on a busy one.
IMPORT_BATCH_ROWS = 250
# At most this much message text per transaction, for files of very long messages.
IMPORT_BATCH_CHARS = 4_000_000
# The largest count the usage columns hold on every database (PostgreSQL's `integer`).
MAX_TOKEN_COUNT = 2**31 - 1
# Imported times must survive conversion to UTC and a day of arithmetic either way.
EARLIEST_TIME = datetime(1, 1, 2, tzinfo=UTC)
LATEST_TIME = datetime(9999, 12, 30, tzinfo=UTC)
ROLES = {choice.value for choice in Message.Role}
STATUSES = {choice.value for choice in Message.Status}
# OpenAI's newer name for the system role.
ROLE_ALIASES = {"developer": "system"}


class TransferError(ValueError):
    """A file that cannot be imported; the message is shown to the user as is."""


# --- Export -------------------------------------------------------------------------------------


def _stamp(value: datetime | None) -> str | None:
    return value.isoformat() if value else None


def attachment_to_dict(attachment: Attachment) -> dict[str, Any] | None:
    """The file with its bytes, or None when storage has lost them (the export goes on)."""
    try:
        with default_storage.open(attachment.file.name, "rb") as handle:
            data = handle.read()
    except OSError:
        logger.warning(
            "attachment %s: its file cannot be read; left out of the export", attachment.pk
        )
        return None
    return {
        "name": attachment.name,
        "kind": attachment.kind,
        "content_type": attachment.content_type,
        "size": attachment.size,
        "data": base64.b64encode(data).decode("ascii"),
    }


def _attachment_dicts(attachments: list[Attachment]) -> list[dict[str, Any]]:
    return [item for item in map(attachment_to_dict, attachments) if item is not None]


def message_to_dict(
    message: Message, attachments: list[Attachment] | None = None
) -> dict[str, Any]:
    usage = None
    if message.prompt_tokens is not None or message.completion_tokens is not None:
        usage = {
            "prompt_tokens": message.prompt_tokens,
            "completion_tokens": message.completion_tokens,
        }
    error = None
    if message.error_code or message.error_detail:
        error = {"code": message.error_code, "detail": message.error_for_user}
    return {
        "id": str(message.id),
        "parent": str(message.parent_id) if message.parent_id else None,
        "role": message.role,
        "content": message.content,
        "status": message.status,
        "provider": message.provider,
        "model": message.model,
        "usage": usage,
        "error": error,
        "created_at": _stamp(message.created_at),
        "completed_at": _stamp(message.completed_at),
        # Only on messages that have files, so exports without any are as they were.
        **({"attachments": _attachment_dicts(attachments)} if attachments else {}),
    }


def _conversation_meta(conversation: Conversation) -> dict[str, Any]:
    return {
        "format": CONVERSATION_FORMAT,
        "version": FORMAT_VERSION,
        "conversation": {
            "id": str(conversation.id),
            "title": conversation.title,
            "provider": conversation.target_name,
            "model": conversation.model,
            "system_prompt": conversation.system_prompt,
            "options": conversation.options or {},
            "archived": conversation.archived,
            "current_leaf": str(conversation.current_leaf_id)
            if conversation.current_leaf_id
            else None,
            "created_at": _stamp(conversation.created_at),
            "updated_at": _stamp(conversation.updated_at),
        },
    }


def conversation_to_dict(conversation: Conversation, messages: list[Message]) -> dict[str, Any]:
    attached = attachment_map_for_messages(message_ids=[message.id for message in messages])
    return {
        **_conversation_meta(conversation),
        "messages": [message_to_dict(message, attached.get(message.id)) for message in messages],
    }


def conversation_export_json(*, conversation: Conversation) -> str:
    """The whole message tree, oldest first (two queries)."""
    messages = list(Message.objects.filter(conversation=conversation).order_by("created_at", "id"))
    return json.dumps(conversation_to_dict(conversation, messages), ensure_ascii=False, indent=2)


def conversations_export_all(
    *,
    user,
    batch_size: int = EXPORT_BATCH_SIZE,
    message_chunk_size: int = EXPORT_MESSAGE_CHUNK_SIZE,
) -> Iterator[str]:
    """Every conversation of `user` as one `chatsite.export` document, yielded in pieces of
    one message (or one conversation's opening) each.

    Keyset batches of conversations, each with one query for all their messages, read from the
    database `message_chunk_size` rows at a time: the memory used is one batch of conversations
    and one chunk of messages, however long the history and its conversations are.
    """
    yield (
        f'{{"format": "{EXPORT_FORMAT}", "version": {FORMAT_VERSION}, '
        f'"exported_at": {json.dumps(_stamp(timezone.now()))}, "conversations": ['
    )
    base = Conversation.objects.filter(owner=user, hidden_since__isnull=True).select_related(
        "provider_config", "fallback_chain"
    )
    last_id = None
    first = True
    while True:
        batch_query = base.order_by("id")
        if last_id is not None:
            batch_query = batch_query.filter(id__gt=last_id)
        batch = list(batch_query[:batch_size])
        if not batch:
            break
        # Ordered by conversation in the database's own id order, the order of the batch, so
        # one pass over both writes each conversation's messages below its opening.
        messages = (
            Message.objects.filter(conversation__in=batch)
            .order_by("conversation_id", "created_at", "id")
            .iterator(chunk_size=message_chunk_size)
        )
        message = next(messages, None)
        attached = _attachments_of_conversations(batch)
        for conversation in batch:
            # The conversation's object without its closing brace, then its messages' list.
            opening = json.dumps(_conversation_meta(conversation), ensure_ascii=False)[:-1]
            yield ("" if first else ", ") + opening + ', "messages": ['
            first = False
            separator = ""
            while message is not None and message.conversation_id == conversation.id:
                yield separator + json.dumps(
                    message_to_dict(message, attached.get(message.id)), ensure_ascii=False
                )
                separator = ", "
                message = next(messages, None)
            yield "]}"
        last_id = batch[-1].id
    yield "]}\n"


def _attachments_of_conversations(batch: list[Conversation]) -> dict[uuid.UUID, list[Attachment]]:
    """The attachments of a batch's messages, by message (one query; files are read as each
    message is written out)."""
    found: dict[uuid.UUID, list[Attachment]] = {}
    rows = Attachment.objects.filter(message__conversation__in=batch).order_by("created_at")
    for row in rows:
        found.setdefault(row.message_id, []).append(row)
    return found


def conversation_export_markdown(*, conversation: Conversation, branch: list[Message]) -> str:
    """The current branch as Markdown: a heading per message, contents as written."""
    title = conversation.title or "Untitled conversation"
    lines = [f"# {title}", ""]
    if conversation.system_prompt:
        lines += ["> **System prompt:** " + conversation.system_prompt.replace("\n", "\n> "), ""]
    attached = attachment_map_for_messages(
        message_ids=[message.id for message in branch if message.role == Message.Role.USER]
    )
    for message in branch:
        who = message.role.capitalize()
        if message.role == Message.Role.ASSISTANT and (message.provider or message.model):
            who += (
                " (" + " · ".join(part for part in (message.provider, message.model) if part) + ")"
            )
        when = message.created_at.strftime("%Y-%m-%d %H:%M UTC") if message.created_at else ""
        lines += [f"## {who}" + (f" — {when}" if when else ""), "", message.content, ""]
        if files := attached.get(message.id):
            # Names only: the files themselves travel in the JSON export.
            names = ", ".join(f"`{row.name.replace('`', "'")}`" for row in files)
            lines += [f"*Attached: {names}*", ""]
        if message.status == Message.Status.STOPPED:
            lines += ["*(stopped)*", ""]
        elif message.status == Message.Status.INTERRUPTED:
            lines += ["*(interrupted)*", ""]
        elif message.status == Message.Status.ERROR:
            lines += [f"*(error: {message.error_for_user or message.error_code})*", ""]
    return "\n".join(lines).rstrip() + "\n"


# --- Import -------------------------------------------------------------------------------------


def _parse_time(value: Any, where: str) -> datetime | None:
    """An ISO 8601 string as an aware datetime in UTC (a time without an offset is UTC)."""
    if value is None:
        return None
    if not isinstance(value, str):
        raise TransferError(f"{where}: a timestamp must be an ISO 8601 string.")
    try:
        parsed = datetime.fromisoformat(value)
        # Converted here, not by the database adapter, so that a time at the edge of the
        # calendar fails as a readable error instead of an OverflowError while saving.
        parsed = parsed.replace(tzinfo=parsed.tzinfo or UTC).astimezone(UTC)
    except ValueError:
        raise TransferError(f"{where}: {value[:40]!r} is not an ISO 8601 timestamp.") from None
    except OverflowError:
        parsed = None
    if parsed is None or not EARLIEST_TIME <= parsed <= LATEST_TIME:
        raise TransferError(f"{where}: {value[:40]!r} is out of range.")
    return parsed


def _text(value: Any, where: str, *, limit: int = MAX_CONTENT_LENGTH) -> str:
    if value is None:
        return ""
    if not isinstance(value, str):
        raise TransferError(f"{where} must be a string.")
    if len(value) > limit:
        raise TransferError(f"{where} is longer than {limit} characters.")
    if not text_is_storable(value):
        raise TransferError(
            f"{where} holds a NUL character or half a surrogate pair, which cannot be stored."
        )
    return value


def _count(value: Any, where: str) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MAX_TOKEN_COUNT:
        raise TransferError(f"{where} must be an integer from 0 to {MAX_TOKEN_COUNT}.")
    return value


def _role(value: Any) -> str | None:
    """The role named by `value`, or None (also for lists and objects, which are no role)."""
    if not isinstance(value, str):
        return None
    value = ROLE_ALIASES.get(value, value)
    return value if value in ROLES else None


def _version(document: dict[str, Any], what: str) -> None:
    version = document.get("version")
    # `type`, not isinstance: true and 1.0 compare equal to 1 but are not a version.
    if type(version) is not int or version != FORMAT_VERSION:
        raise TransferError(
            f"{what} is version {str(version)[:10]} of our format; "
            f"this site reads version {FORMAT_VERSION}."
        )


def _openai_content(value: Any, where: str) -> str:
    # Content may be a string or a list of parts; only text parts can become a message.
    if isinstance(value, list):
        texts = []
        for part in value:
            if isinstance(part, dict) and part.get("type") == "text":
                texts.append(_text(part.get("text"), f"{where} text part"))
            elif isinstance(part, str):
                texts.append(_text(part, f"{where} text part"))
        if not texts:
            raise TransferError(f"{where} has no text parts.")
        return _text("\n\n".join(texts), where)
    return _text(value, where)


def _plan_openai(messages: Any, *, title: str = "", model: str = "") -> dict[str, Any]:
    if not isinstance(messages, list) or not messages:
        raise TransferError('"messages" must be a non-empty list.')
    if len(messages) > MAX_IMPORT_MESSAGES:
        raise TransferError(f"At most {MAX_IMPORT_MESSAGES} messages can be imported at once.")
    system_prompt = ""
    planned = []
    previous = None
    for index, item in enumerate(messages, start=1):
        where = f"Message {index}"
        if not isinstance(item, dict):
            raise TransferError(f"{where} is not an object with a role and a content.")
        role = _role(item.get("role"))
        if role is None:
            raise TransferError(
                f"{where} has role {str(item.get('role'))[:20]!r}; expected "
                "system, user or assistant."
            )
        content = _openai_content(item.get("content"), f"{where} content")
        if role == "system" and not planned and not system_prompt:
            system_prompt = content
            continue
        key = str(index)
        planned.append({"key": key, "parent": previous, "role": role, "content": content,
                        "status": Message.Status.COMPLETE, "provider": "", "model": "",
                        "prompt_tokens": None, "completion_tokens": None, "error_code": "",
                        "error_detail": "", "created_at": None, "completed_at": None})  # fmt: skip
        previous = key
    if not planned:
        raise TransferError("The file holds only a system prompt and no messages.")
    first_question = next((item["content"] for item in planned if item["role"] == "user"), "")
    return {
        "title": _text(title, "The title", limit=200) or titles.title_from_text(first_question),
        "provider": "",
        "model": _text(model, "The model", limit=200),
        "system_prompt": system_prompt,
        "options": {},
        "archived": False,
        "current_leaf": previous,
        "created_at": None,
        "messages": planned,
    }


def _plan_ours(document: dict[str, Any]) -> dict[str, Any]:
    _version(document, "This file")
    meta = document.get("conversation")
    messages = document.get("messages")
    if not isinstance(meta, dict) or not isinstance(messages, list):
        raise TransferError('The file needs a "conversation" object and a "messages" list.')
    if not messages:
        raise TransferError("The conversation holds no messages.")
    if len(messages) > MAX_IMPORT_MESSAGES:
        raise TransferError(f"At most {MAX_IMPORT_MESSAGES} messages can be imported at once.")
    options = meta.get("options") or {}
    if not isinstance(options, dict):
        raise TransferError('"options" must be an object.')
    # The same rules as options sent over the socket: a file must not smuggle in api_base,
    # proxy or the like, which would redirect the admin's token.
    try:
        options, _ = options_parse(
            {key: options[key] for key in PROVIDER_OPTIONS if key in options}
        )
    except ChatError as exc:
        raise TransferError(f'"options": {exc.detail}') from None
    planned: list[dict[str, Any]] = []
    keys: set[str] = set()
    for index, item in enumerate(messages, start=1):
        where = f"Message {index}"
        if not isinstance(item, dict):
            raise TransferError(f"{where} is not an object.")
        key = item.get("id")
        if not isinstance(key, str) or not key or key in keys:
            raise TransferError(f"{where} needs a unique string id.")
        keys.add(key)
        parent = item.get("parent")
        if parent is not None and not isinstance(parent, str):
            raise TransferError(f"{where}: parent must be a message id or null.")
        role = item.get("role")
        if not isinstance(role, str) or role not in ROLES:
            raise TransferError(f"{where} has an unknown role {str(role)[:20]!r}.")
        status = item.get("status")
        if status is None:
            status = Message.Status.COMPLETE
        if not isinstance(status, str) or status not in STATUSES:
            raise TransferError(f"{where} has an unknown status {str(status)[:20]!r}.")
        if status == Message.Status.STREAMING:
            # Nothing is generating it here: it is what a dead server would have left.
            status = Message.Status.INTERRUPTED
        usage = item.get("usage") or {}
        error = item.get("error") or {}
        if not isinstance(usage, dict) or not isinstance(error, dict):
            raise TransferError(f"{where}: usage and error must be objects or null.")
        planned.append({
            "key": key,
            "parent": parent,
            "role": role,
            "content": _text(item.get("content"), f"{where} content"),
            "status": status,
            "provider": _text(item.get("provider"), f"{where} provider", limit=64),
            "model": _text(item.get("model"), f"{where} model", limit=200),
            "prompt_tokens": _count(usage.get("prompt_tokens"), f"{where} prompt_tokens"),
            "completion_tokens": _count(usage.get("completion_tokens"),
                                        f"{where} completion_tokens"),
            "error_code": _text(error.get("code"), f"{where} error code", limit=64),
            "error_detail": _text(error.get("detail"), f"{where} error detail", limit=500),
            "created_at": _parse_time(item.get("created_at"), f"{where} created_at"),
            "completed_at": _parse_time(item.get("completed_at"), f"{where} completed_at"),
            "attachments": _attachments_plan(item.get("attachments"), where, role),
        })  # fmt: skip
    for item in planned:
        if item["parent"] is not None and item["parent"] not in keys:
            raise TransferError(f"A message's parent {item['parent'][:40]!r} is not in the file.")
    current_leaf = meta.get("current_leaf")
    if current_leaf is not None and (not isinstance(current_leaf, str) or current_leaf not in keys):
        raise TransferError("current_leaf names a message that is not in the file.")
    archived = meta.get("archived", False)
    if archived is None:
        archived = False
    if not isinstance(archived, bool):
        raise TransferError("archived must be true or false.")
    return {
        "title": _text(meta.get("title"), "The title", limit=200),
        "provider": _text(meta.get("provider"), "The provider", limit=64),
        "model": _text(meta.get("model"), "The model", limit=200),
        "system_prompt": _text(meta.get("system_prompt"), "The system prompt"),
        "options": options,
        "archived": archived,
        "current_leaf": current_leaf,
        "created_at": _parse_time(meta.get("created_at"), "The conversation's created_at"),
        "messages": _parents_first(planned),
    }


def _attachments_plan(value: Any, where: str, role: str) -> list[dict[str, Any]]:
    """A message's files from an export, checked as uploads are: the size limit, the kind found
    from the bytes (never the file's word for it) and the text extracted again."""
    if value is None:
        return []
    if not isinstance(value, list):
        raise TransferError(f"{where}: attachments must be a list.")
    if value and role != Message.Role.USER:
        raise TransferError(f"{where}: only a user message can have attachments.")
    if len(value) > settings.ATTACHMENT_MAX_FILES:
        raise TransferError(f"{where} has more than {settings.ATTACHMENT_MAX_FILES} attachments.")
    planned = []
    for index, item in enumerate(value, start=1):
        label = f"{where}, attachment {index}"
        if not isinstance(item, dict) or not isinstance(item.get("data"), str):
            raise TransferError(f"{label} needs its file as base64 `data`.")
        encoded = item["data"]
        # Base64 is 4 characters per 3 bytes: refused before decoding anything too large.
        if len(encoded) > (settings.ATTACHMENT_MAX_FILE_BYTES + 2) // 3 * 4:
            raise TransferError(f"{label} is larger than the attachment limit.")
        try:
            data = base64.b64decode(encoded, validate=True)
        except (binascii.Error, ValueError):
            raise TransferError(f"{label}: `data` is not valid base64.") from None
        name = attachment_name_clean(name=_text(item.get("name"), f"{label} name", limit=1000))
        try:
            detected = file_detect(
                name=name,
                declared_type=str(item.get("content_type") or ""),
                data=data,
                max_text_chars=settings.ATTACHMENT_MAX_TEXT_CHARS,
            )
        except AttachmentError as exc:
            raise TransferError(f"{label}: {exc.detail}") from None
        planned.append({"name": name, "data": data, "detected": detected})
    return planned


def _parents_first(planned: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The messages ordered so that every parent precedes its children; a cycle is an error."""
    by_key = {item["key"]: item for item in planned}
    children: dict[str | None, list[str]] = {}
    for item in planned:
        children.setdefault(item["parent"], []).append(item["key"])
    ordered: list[dict[str, Any]] = []
    queue = list(children.get(None, []))
    while queue:
        key = queue.pop()
        ordered.append(by_key[key])
        queue.extend(children.get(key, []))
    if len(ordered) != len(planned):
        raise TransferError("The messages' parent links form a loop.")
    return ordered


def import_plans(raw: bytes) -> list[dict[str, Any]]:
    """Parse and validate an uploaded file into conversation plans; raises TransferError."""
    try:
        document = json.loads(raw.decode("utf-8-sig"))
    except UnicodeDecodeError:
        raise TransferError("The file is not UTF-8 text.") from None
    except json.JSONDecodeError as exc:
        raise TransferError(f"The file is not valid JSON ({exc.msg}, line {exc.lineno}).") from None
    except ValueError:
        # Python refuses to convert integers of thousands of digits.
        raise TransferError("The file is not valid JSON (a number is too long).") from None
    except RecursionError:
        raise TransferError("The file's JSON is nested too deeply.") from None
    if isinstance(document, list):
        return [_plan_openai(document)]
    if not isinstance(document, dict):
        raise TransferError("The file must hold a JSON object or a list of messages.")
    kind = document.get("format")
    if kind == CONVERSATION_FORMAT:
        return [_plan_ours(document)]
    if kind == EXPORT_FORMAT:
        _version(document, "This export")
        conversations = document.get("conversations")
        if not isinstance(conversations, list):
            raise TransferError('The export needs a "conversations" list.')
        if not conversations:
            raise TransferError("The export holds no conversations.")
        if len(conversations) > MAX_IMPORT_CONVERSATIONS:
            raise TransferError(f"At most {MAX_IMPORT_CONVERSATIONS} conversations at once.")
        plans = []
        for index, item in enumerate(conversations, start=1):
            if not isinstance(item, dict) or item.get("format") != CONVERSATION_FORMAT:
                raise TransferError(f"Conversation {index} of the export is not one of ours.")
            try:
                plans.append(_plan_ours(item))
            except TransferError as exc:
                raise TransferError(f"Conversation {index}: {exc}") from None
        if sum(len(plan["messages"]) for plan in plans) > MAX_IMPORT_MESSAGES:
            raise TransferError(f"At most {MAX_IMPORT_MESSAGES} messages can be imported at once.")
        return plans
    if "messages" in document:
        return [_plan_openai(document["messages"], title=document.get("title") or "",
                             model=document.get("model") or "")]  # fmt: skip
    raise TransferError(
        "This is not a file we can import: expected one of our JSON exports or an object with "
        'an OpenAI-style "messages" list.'
    )


def _provider_links(name: str) -> dict[str, Any]:
    from providers.models import FallbackChain, ProviderConfig

    if not name:
        return {}
    config = ProviderConfig.objects.filter(name=name).first()
    if config is not None:
        return {"provider_config": config}
    chain = FallbackChain.objects.filter(name=name).first()
    return {"fallback_chain": chain} if chain is not None else {}


def conversations_import(*, user, raw: bytes) -> list[Conversation]:
    """Validate the whole file, then create its conversations (with new ids), all or none.
    Raises TransferError with a message for the user; on error nothing of the file stays."""
    plans = import_plans(raw)
    conversation_sweep_hidden(user=user)
    hidden_since = timezone.now()
    created = []
    try:
        for plan in plans:
            created.append(_create_from_plan(user=user, plan=plan, hidden_since=hidden_since))
        with transaction.atomic():
            Conversation.objects.filter(owner=user, hidden_since=hidden_since).update(
                hidden_since=None
            )
    except BaseException as exc:
        _discard_import(user=user, hidden_since=hidden_since)
        if isinstance(exc, DatabaseError):
            logger.exception("import failed while writing; what was written is deleted")
            raise TransferError(
                "The import could not be saved (the database is busy or unavailable). "
                "Nothing was imported; try again in a moment."
            ) from exc
        raise
    for conversation in created:
        conversation.hidden_since = None
    return created


def _discard_import(*, user, hidden_since: datetime) -> None:
    """Delete what an import that failed had written (still hidden, so never seen)."""
    try:
        leftovers = Conversation.objects.filter(owner=user, hidden_since=hidden_since)
        for conversation_id in leftovers.values_list("pk", flat=True):
            conversation_purge(conversation_id=conversation_id)
    except DatabaseError:
        # The database is gone for now: the hidden rows are swept by a later import.
        logger.exception("could not delete a failed import; it stays hidden until swept")


def _batches(items: list[dict[str, Any]]) -> Iterator[list[dict[str, Any]]]:
    """Planned messages in runs of at most IMPORT_BATCH_ROWS messages and IMPORT_BATCH_CHARS
    characters, one transaction each."""
    batch: list[dict[str, Any]] = []
    size = 0
    for item in items:
        if batch and (
            len(batch) >= IMPORT_BATCH_ROWS or size + len(item["content"]) > IMPORT_BATCH_CHARS
        ):
            yield batch
            batch, size = [], 0
        batch.append(item)
        size += len(item["content"])
    if batch:
        yield batch


def _message_row(conversation: Conversation, ids: dict[str, uuid.UUID], item: dict) -> Message:
    return Message(
        id=ids[item["key"]],
        conversation=conversation,
        parent_id=ids[item["parent"]] if item["parent"] else None,
        role=item["role"],
        content=item["content"],
        status=item["status"],
        provider=item["provider"],
        model=item["model"],
        prompt_tokens=item["prompt_tokens"],
        completion_tokens=item["completion_tokens"],
        error_code=item["error_code"],
        error_detail=item["error_detail"],
        completed_at=item["completed_at"],
    )


def _attachment_rows(user, ids: dict[str, uuid.UUID], batch: list[dict]) -> list[Attachment]:
    """The batch's attachments, their files already in storage (the rows are written with the
    messages; a failure deletes the files again)."""
    rows: list[Attachment] = []
    try:
        for item in batch:
            for planned in item.get("attachments") or []:
                detected = planned["detected"]
                row = Attachment(
                    owner=user,
                    message_id=ids[item["key"]],
                    name=planned["name"],
                    kind=detected.kind,
                    content_type=detected.content_type,
                    size=len(planned["data"]),
                    text=detected.text,
                )
                row.file.save(str(row.id), ContentFile(planned["data"]), save=False)
                rows.append(row)
    except BaseException:
        files_delete(names=[row.file.name for row in rows])
        raise
    return rows


def _create_from_plan(*, user, plan: dict[str, Any], hidden_since: datetime) -> Conversation:
    conversation = Conversation.objects.create(
        owner=user,
        title=plan["title"],
        model=plan["model"],
        system_prompt=plan["system_prompt"],
        options=plan["options"],
        archived=plan["archived"],
        hidden_since=hidden_since,
        **_provider_links(plan["provider"]),
    )
    items = plan["messages"]
    ids = {item["key"]: uuid.uuid4() for item in items}
    # created_at is auto_now_add, which bulk_create overrides; the file's times are restored
    # after it. Messages without one keep the import time, spaced so their order stays the
    # file's. Parents come before their children (_parents_first), so every batch's parents are
    # already written. Rows are made a batch at a time: 100,000 model instances held at once
    # make every garbage collection, some inside a transaction, long.
    now = timezone.now()
    for position, item in enumerate(items):
        item["created_at"] = item["created_at"] or now + timedelta(microseconds=position)
    for batch in _batches(items):
        rows = [_message_row(conversation, ids, item) for item in batch]
        files = _attachment_rows(user, ids, batch)
        try:
            with bulk_write_transaction():
                Message.objects.bulk_create(rows)
                for row, item in zip(rows, batch, strict=True):
                    row.created_at = item["created_at"]
                Message.objects.bulk_update(rows, ["created_at"])
                Attachment.objects.bulk_create(files)
        except BaseException:
            files_delete(names=[row.file.name for row in files])
            raise
    leaf = plan["current_leaf"]
    if leaf is None and items:
        leaf = max(items, key=lambda item: item["created_at"])["key"]
    leaf_id = ids[leaf] if leaf else None
    updates: dict[str, Any] = {}
    if leaf_id is not None:
        updates["current_leaf_id"] = leaf_id
    if plan["created_at"]:
        updates["created_at"] = plan["created_at"]
    # The sidebar sorts by the last activity: the file's, not the moment of the import.
    if any(item["created_at"] for item in plan["messages"]):
        updates["updated_at"] = max(row.created_at for row in rows)
    if updates:
        Conversation.objects.filter(pk=conversation.pk).update(**updates)
        for field, value in updates.items():
            setattr(conversation, field, value)
    return conversation
