"""Server → client frames of the /ws/chat/ protocol (docs/protocol.md), built in one place so the
consumer, the engine and the docs cannot drift apart. Pure functions: no I/O."""

import uuid
from typing import Any

from conversations.errors import error_detail_for_user
from conversations.models import Conversation, Message


def _id(value: uuid.UUID | None) -> str | None:
    return str(value) if value is not None else None


def _stamp(value) -> str | None:
    return value.isoformat() if value is not None else None


def conversation_data(conversation: Conversation) -> dict[str, Any]:
    return {
        "id": str(conversation.id),
        "title": conversation.title,
        "model": conversation.model,
        "archived": conversation.archived,
        "created_at": _stamp(conversation.created_at),
        "updated_at": _stamp(conversation.updated_at),
    }


def message_data(message: Message) -> dict[str, Any]:
    data = {
        "id": str(message.id),
        "conversation": str(message.conversation_id),
        "parent": _id(message.parent_id),
        "role": message.role,
        "content": message.content,
        "status": message.status,
        "provider": message.provider,
        "model": message.model,
        "created_at": _stamp(message.created_at),
    }
    # A question just sent with files carries them (set by the send, see conversations.services).
    if attached := getattr(message, "attached", None):
        from attachments.selectors import attachment_data

        data["attachments"] = [attachment_data(row) for row in attached]
    return data


def conversation_created(conversation: Conversation, *, request_id: str | None) -> dict[str, Any]:
    return {
        "type": "conversation.created",
        "conversation": conversation_data(conversation),
        "request_id": request_id,
    }


def conversation_updated(conversation: dict[str, Any]) -> dict[str, Any]:
    return {"type": "conversation.updated", "conversation": conversation}


def conversation_idle(conversation_id: uuid.UUID) -> dict[str, Any]:
    return {"type": "conversation.idle", "conversation": str(conversation_id)}


def message_created(message: Message, *, request_id: str | None) -> dict[str, Any]:
    return {"type": "message.created", "message": message_data(message), "request_id": request_id}


def message_delta(
    *, message_id: uuid.UUID, conversation_id: uuid.UUID, seq: int, delta: str
) -> dict[str, Any]:
    return {
        "type": "message.delta",
        "message": str(message_id),
        "conversation": str(conversation_id),
        "seq": seq,
        "delta": delta,
    }


def message_snapshot(
    *, message_id: uuid.UUID, conversation_id: uuid.UUID, seq: int, content: str
) -> dict[str, Any]:
    return {
        "type": "message.snapshot",
        "message": str(message_id),
        "conversation": str(conversation_id),
        "seq": seq,
        "content": content,
    }


def message_done(
    *,
    message_id: uuid.UUID,
    conversation_id: uuid.UUID,
    status: str,
    content: str,
    html: str,
    prompt_tokens: int | None,
    completion_tokens: int | None,
    error_code: str,
    error_detail: str,
    provider: str,
    model: str,
) -> dict[str, Any]:
    usage = None
    if prompt_tokens is not None or completion_tokens is not None:
        usage = {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens}
    return {
        "type": "message.done",
        "message": str(message_id),
        "conversation": str(conversation_id),
        "status": status,
        "content": content,
        "html": html,
        "usage": usage,
        "error": (
            {
                "code": error_code,
                "detail": error_detail_for_user(code=error_code, detail=error_detail),
            }
            if error_code
            else None
        ),
        "provider": provider,
        "model": model,
    }


def message_done_from_row(message: Message, *, html: str) -> dict[str, Any]:
    return message_done(
        message_id=message.id,
        conversation_id=message.conversation_id,
        status=message.status,
        content=message.content,
        html=html,
        prompt_tokens=message.prompt_tokens,
        completion_tokens=message.completion_tokens,
        error_code=message.error_code,
        error_detail=message.error_detail,
        provider=message.provider,
        model=message.model,
    )


def error(*, code: str, detail: str, request_id: str | None) -> dict[str, Any]:
    return {"type": "error", "code": code, "detail": detail, "request_id": request_id}
