"""Reads of attachments; every one is scoped to its owner."""

import uuid
from collections import defaultdict
from typing import Any

from django.contrib.auth.models import AbstractBaseUser
from django.urls import reverse

from conversations.attachments.models import Attachment


def attachment_data(row: Attachment) -> dict[str, Any]:
    """What the script shows of an attachment (the composer's chip, the message's file)."""
    return {
        "id": str(row.id),
        "name": row.name,
        "size": row.size,
        "kind": row.kind,
        "content_type": row.content_type,
        "tokens": row.token_estimate,
        "url": reverse("attachment", kwargs={"attachment_id": row.id}),
    }


def attachment_get_for_user(
    *, user: AbstractBaseUser, attachment_id: uuid.UUID
) -> Attachment | None:
    """The user's attachment: unsent, or on a message of one of their visible conversations.
    None for anyone else's (the caller answers 404: whether it exists is not theirs to know)."""
    row = (
        Attachment.objects.filter(pk=attachment_id, owner=user)
        .select_related("message__conversation")
        .first()
    )
    if row is None or row.message_id is None:
        return row
    conversation = row.message.conversation
    if conversation.owner_id != user.pk or conversation.hidden_since is not None:
        return None
    return row


def attachment_map_for_messages(
    *, message_ids: list[uuid.UUID]
) -> dict[uuid.UUID, list[Attachment]]:
    """Each message's attachments, oldest first, in one query (the file bytes are not read)."""
    found: dict[uuid.UUID, list[Attachment]] = defaultdict(list)
    if not message_ids:
        return found
    for row in Attachment.objects.filter(message_id__in=message_ids).order_by("created_at"):
        found[row.message_id].append(row)
    return found


def attachment_file_names(*, message_ids: list[uuid.UUID]) -> list[str]:
    """The stored file names of these messages' attachments (read before the rows go)."""
    return list(
        Attachment.objects.filter(message_id__in=message_ids)
        .exclude(file="")
        .values_list("file", flat=True)
    )
