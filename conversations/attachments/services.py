"""Writes of attachments: upload, claim by a message, and deletion of the stored files.

A file goes to storage before its row is written (a failed row write deletes it again), and is
deleted from storage only after the rows that name it are gone: a crash in between leaves an
unreferenced file at worst, never a row whose file is missing.
"""

import logging
import os
import uuid
from dataclasses import replace
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.core.files.uploadedfile import UploadedFile
from django.db import connection, transaction
from django.utils import timezone

from conversations.attachments.content import IMAGE_PLACEHOLDER, data_url, file_detect
from conversations.attachments.errors import AttachmentError
from conversations.attachments.models import Attachment
from conversations.errors import ChatError

logger = logging.getLogger(__name__)

MAX_NAME_LENGTH = 255


def attachment_name_clean(*, name: str) -> str:
    """The file name as shown and exported: its last path segment, without control characters,
    at most MAX_NAME_LENGTH characters (keeping the extension)."""
    base = name.replace("\\", "/").rsplit("/", 1)[-1]
    base = "".join(ch for ch in base if ch.isprintable()).strip()
    base = base.encode("utf-8", "replace").decode("utf-8") or "file"
    if len(base) > MAX_NAME_LENGTH:
        stem, extension = os.path.splitext(base)
        extension = extension[:20]
        base = stem[: MAX_NAME_LENGTH - len(extension)] + extension
    return base


def attachment_create(*, user: AbstractBaseUser, upload: UploadedFile) -> Attachment:
    """Check and store one uploaded file as an unsent attachment of `user`."""
    name = attachment_name_clean(name=upload.name or "")
    limit = settings.ATTACHMENT_MAX_FILE_BYTES
    if upload.size is not None and upload.size > limit:
        raise AttachmentError("too_large", f"{name} is larger than {_size(limit)}.")
    data = upload.read(limit + 1)
    if len(data) > limit:
        raise AttachmentError("too_large", f"{name} is larger than {_size(limit)}.")
    detected = file_detect(
        name=name,
        declared_type=upload.content_type or "",
        data=data,
        max_text_chars=settings.ATTACHMENT_MAX_TEXT_CHARS,
    )
    attachment_sweep_unsent(user=user)
    row = Attachment(
        owner=user,
        name=name,
        kind=detected.kind,
        content_type=detected.content_type,
        size=len(data),
        text=detected.text,
    )
    row.file.save(str(row.id), ContentFile(data), save=False)
    try:
        row.save(force_insert=True)
    except BaseException:
        files_delete(names=[row.file.name])
        raise
    return row


def attachments_create_many(
    *, user: AbstractBaseUser, uploads: list[UploadedFile]
) -> list[Attachment]:
    """The files of one no-JavaScript send, all stored or none (within the per-message limits)."""
    if len(uploads) > settings.ATTACHMENT_MAX_FILES:
        raise ChatError(
            "too_large", f"At most {settings.ATTACHMENT_MAX_FILES} files can go with one message."
        )
    total = sum(upload.size or 0 for upload in uploads)
    if total > settings.ATTACHMENT_MAX_MESSAGE_BYTES:
        raise ChatError(
            "too_large",
            f"The files of one message may total {_size(settings.ATTACHMENT_MAX_MESSAGE_BYTES)}.",
        )
    created: list[Attachment] = []
    try:
        for upload in uploads:
            created.append(attachment_create(user=user, upload=upload))
    except BaseException:
        attachments_discard_unsent(user=user, attachments=created)
        raise
    return created


def attachments_discard_unsent(*, user: AbstractBaseUser, attachments: list[Attachment]) -> None:
    """Delete uploads of a send that failed (those still unsent)."""
    for row in attachments:
        attachment_delete_unsent(user=user, attachment_id=row.id)


def attachment_delete_unsent(*, user: AbstractBaseUser, attachment_id: uuid.UUID) -> bool:
    """Remove a file the user uploaded but has not sent (the chip's remove button)."""
    row = Attachment.objects.filter(pk=attachment_id, owner=user, message__isnull=True).first()
    if row is None:
        return False
    name = row.file.name
    row.delete()
    files_delete(names=[name])
    return True


def attachment_sweep_unsent(*, user: AbstractBaseUser) -> int:
    """Delete the user's uploads never sent within ATTACHMENT_UNSENT_HOURS; returns how many."""
    cutoff = timezone.now() - timedelta(hours=settings.ATTACHMENT_UNSENT_HOURS)
    stale = Attachment.objects.filter(owner=user, message__isnull=True, created_at__lt=cutoff)
    names = list(stale.values_list("file", flat=True))
    if not names:
        return 0
    stale.delete()
    files_delete(names=names)
    return len(names)


def attachments_for_send(
    *, user: AbstractBaseUser, attachment_ids: list[uuid.UUID]
) -> list[Attachment]:
    """The attachments a send names, checked: the user's own, not sent yet, within the
    per-message limits. Call inside the send's transaction (the rows are locked on PostgreSQL,
    so two sends cannot claim the same file)."""
    if not attachment_ids:
        return []
    if len(attachment_ids) > settings.ATTACHMENT_MAX_FILES:
        raise ChatError(
            "too_large", f"At most {settings.ATTACHMENT_MAX_FILES} files can go with one message."
        )
    rows = Attachment.objects.filter(pk__in=attachment_ids, owner=user, message__isnull=True)
    if connection.features.has_select_for_update:
        rows = rows.select_for_update()
    found = {row.pk: row for row in rows}
    if len(found) != len(set(attachment_ids)):
        raise ChatError("not_found", "An attached file was not found, or was already sent.")
    total = sum(row.size for row in found.values())
    if total > settings.ATTACHMENT_MAX_MESSAGE_BYTES:
        raise ChatError(
            "too_large",
            f"The files of one message may total {_size(settings.ATTACHMENT_MAX_MESSAGE_BYTES)}.",
        )
    # In the order the user attached them.
    return [found[pk] for pk in dict.fromkeys(attachment_ids)]


def attachments_attach(*, attachments: list[Attachment], message_id: uuid.UUID) -> None:
    if attachments:
        Attachment.objects.filter(pk__in=[row.pk for row in attachments]).update(
            message_id=message_id
        )
        for row in attachments:
            row.message_id = message_id


def attachments_copy(*, from_message_id: uuid.UUID, to_message_id: uuid.UUID) -> list[Attachment]:
    """Give an edited question the files of the one it replaces: new rows naming the same
    stored files (a file is deleted with its conversation, which holds both messages)."""
    rows = list(Attachment.objects.filter(message_id=from_message_id).order_by("created_at"))
    for row in rows:
        row.pk = uuid.uuid4()
        row.id = row.pk
        row.message_id = to_message_id
        row._state.adding = True
    return Attachment.objects.bulk_create(rows)


def history_with_images(*, history: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The history with each image placeholder replaced by the image's data URL, read from
    storage. Run after the send's transaction: reading files (maybe from a remote bucket) must
    not hold the database's write lock."""
    wanted: list[uuid.UUID] = []
    for message in history:
        for part in _image_parts(message):
            wanted.append(uuid.UUID(part["image_url"]["url"].removeprefix(IMAGE_PLACEHOLDER)))
    if not wanted:
        return history
    urls = {}
    for row in Attachment.objects.filter(pk__in=wanted):
        try:
            with default_storage.open(row.file.name, "rb") as handle:
                data = handle.read()
        except OSError:
            logger.warning("attachment %s: its file cannot be read", row.pk)
            raise ChatError("not_found", f"The file of {row.name} is missing.") from None
        urls[f"{IMAGE_PLACEHOLDER}{row.pk}"] = data_url(content_type=row.content_type, data=data)
    resolved = []
    for message in history:
        if not _image_parts(message):
            resolved.append(message)
            continue
        parts = []
        for part in message["content"]:
            if part.get("type") == "image_url":
                url = urls.get(part["image_url"]["url"])
                if url is None:
                    raise ChatError("not_found", "An attached image is missing.")
                part = {"type": "image_url", "image_url": {"url": url}}
            parts.append(part)
        resolved.append({**message, "content": parts})
    return resolved


def exchange_with_images(exchange):
    """An Exchange whose history has its images filled in (see history_with_images)."""
    history = history_with_images(history=exchange.history)
    return exchange if history is exchange.history else replace(exchange, history=history)


def _image_parts(message: dict[str, Any]) -> list[dict[str, Any]]:
    content = message.get("content")
    if not isinstance(content, list):
        return []
    return [part for part in content if part.get("type") == "image_url"]


def files_delete(*, names: list[str]) -> None:
    """Delete stored files whose rows are gone. A failure is logged, not raised: the rows are
    already deleted, and the user's delete succeeded."""
    for name in names:
        if not name:
            continue
        try:
            default_storage.delete(name)
        except OSError:
            logger.warning("could not delete the stored file of a deleted attachment")


def files_delete_on_commit(*, names: list[str]) -> None:
    if names:
        transaction.on_commit(lambda: files_delete(names=names))


def _size(value: int) -> str:
    if value >= 1024 * 1024:
        return f"{value / (1024 * 1024):g} MB"
    if value >= 1024:
        return f"{value / 1024:g} KB"
    return f"{value} bytes"
