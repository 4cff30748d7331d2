"""Server → client frames of the /ws/chat/ protocol (docs/protocol.md): one frozen dataclass per
frame type, whose fields are the frame's fields; the functions below build them from rows and
return the JSON object that is sent. tests/conversations/test_protocol_document.py holds the
document to these classes (and the client frames of conversations.protocol), both ways.

Stdlib dataclasses rather than pydantic or msgspec: the server builds these frames itself (their
values are typed at the call), so nothing needs validating on the way out, and no package is
added for it. Pure functions: no I/O."""

import uuid
from dataclasses import dataclass, fields
from datetime import datetime
from typing import Any, ClassVar

from conversations.errors import error_detail_for_user
from conversations.models import Conversation, Message, meta_title


@dataclass(frozen=True, kw_only=True, slots=True)
class ServerFrame:
    type: ClassVar[str]

    def as_json(self) -> dict[str, Any]:
        """The frame as sent: `type` first, then the fields in their order."""
        return {"type": self.type, **{f.name: getattr(self, f.name) for f in fields(self)}}


@dataclass(frozen=True, kw_only=True, slots=True)
class ConversationCreated(ServerFrame):
    type: ClassVar[str] = "conversation.created"
    conversation: dict[str, Any]
    request_id: str | None


@dataclass(frozen=True, kw_only=True, slots=True)
class ConversationUpdated(ServerFrame):
    type: ClassVar[str] = "conversation.updated"
    conversation: dict[str, Any]


@dataclass(frozen=True, kw_only=True, slots=True)
class ConversationIdle(ServerFrame):
    type: ClassVar[str] = "conversation.idle"
    conversation: str


@dataclass(frozen=True, kw_only=True, slots=True)
class MessageCreated(ServerFrame):
    type: ClassVar[str] = "message.created"
    message: dict[str, Any]
    request_id: str | None


@dataclass(frozen=True, kw_only=True, slots=True)
class MessageDelta(ServerFrame):
    type: ClassVar[str] = "message.delta"
    message: str
    conversation: str
    seq: int
    delta: str


@dataclass(frozen=True, kw_only=True, slots=True)
class MessageSnapshot(ServerFrame):
    type: ClassVar[str] = "message.snapshot"
    message: str
    conversation: str
    seq: int
    content: str


@dataclass(frozen=True, kw_only=True, slots=True)
class MessageDone(ServerFrame):
    type: ClassVar[str] = "message.done"
    message: str
    conversation: str
    status: str
    content: str
    html: str
    usage: dict[str, int | None] | None
    error: dict[str, str] | None
    provider: str
    model: str
    meta: str
    duration_ms: int | None


@dataclass(frozen=True, kw_only=True, slots=True)
class ErrorFrame(ServerFrame):
    type: ClassVar[str] = "error"
    code: str
    detail: str
    request_id: str | None


SERVER_FRAMES: tuple[type[ServerFrame], ...] = (
    ConversationCreated,
    ConversationUpdated,
    ConversationIdle,
    MessageCreated,
    MessageDelta,
    MessageSnapshot,
    MessageDone,
    ErrorFrame,
)


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
        from conversations.attachments.selectors import attachment_data

        data["attachments"] = [attachment_data(row) for row in attached]
    return data


def conversation_created(conversation: Conversation, *, request_id: str | None) -> dict[str, Any]:
    return ConversationCreated(
        conversation=conversation_data(conversation), request_id=request_id
    ).as_json()


def conversation_updated(conversation: dict[str, Any]) -> dict[str, Any]:
    return ConversationUpdated(conversation=conversation).as_json()


def conversation_idle(conversation_id: uuid.UUID) -> dict[str, Any]:
    return ConversationIdle(conversation=str(conversation_id)).as_json()


def message_created(message: Message, *, request_id: str | None) -> dict[str, Any]:
    return MessageCreated(message=message_data(message), request_id=request_id).as_json()


def message_delta(
    *, message_id: uuid.UUID, conversation_id: uuid.UUID, seq: int, delta: str
) -> dict[str, Any]:
    return MessageDelta(
        message=str(message_id), conversation=str(conversation_id), seq=seq, delta=delta
    ).as_json()


def message_snapshot(
    *, message_id: uuid.UUID, conversation_id: uuid.UUID, seq: int, content: str
) -> dict[str, Any]:
    return MessageSnapshot(
        message=str(message_id), conversation=str(conversation_id), seq=seq, content=content
    ).as_json()


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
    started_at: datetime | None = None,
    finished_at: datetime | None = None,
) -> dict[str, Any]:
    usage = None
    if prompt_tokens is not None or completion_tokens is not None:
        usage = {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens}
    error = None
    if error_code:
        detail = error_detail_for_user(code=error_code, detail=error_detail)
        error = {"code": error_code, "detail": detail}
    return MessageDone(
        message=str(message_id),
        conversation=str(conversation_id),
        status=status,
        content=content,
        html=html,
        usage=usage,
        error=error,
        provider=provider,
        model=model,
        meta=meta_title(
            provider=provider,
            model=model,
            prompt_tokens=prompt_tokens,
            completion_tokens=completion_tokens,
        ),
        # The time to answer, from the answer's row being made to its end (the user sees it).
        duration_ms=_milliseconds(started_at, finished_at) if started_at and finished_at else None,
    ).as_json()


def _milliseconds(start: datetime, end: datetime) -> int:
    return max(round((end - start).total_seconds() * 1000), 0)


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
        started_at=message.created_at,
        finished_at=message.completed_at,
    )


def error(*, code: str, detail: str, request_id: str | None) -> dict[str, Any]:
    return ErrorFrame(code=code, detail=detail, request_id=request_id).as_json()
