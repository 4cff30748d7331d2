"""The channel layer's groups and the control messages each carries, in one place for the engine,
the consumer and the services that notify them. Tokens never travel here (see eventlog).

Each message's `type` names the consumer method that handles it (`chat.message.done` is
`ChatConsumer.chat_message_done`); `generation.stop` is read by the engine's listener.
"""

import uuid
from collections.abc import Sequence
from typing import Any

GENERATION_STOP = "generation.stop"


def conversation_group(conversation_id: uuid.UUID) -> str:
    """The sockets subscribed to a conversation: new messages, titles, answers' ends."""
    return f"chat.conversation.{conversation_id.hex}"


# Every process's engine, joined once per process: stop requests, each engine acting on the
# answers it runs. A group per answer cost two Redis round trips (join, leave) on every answer,
# hundreds a second when many start at once, to route a message sent on a few of them.
ENGINES = "chat.engines"


def user_group(user_id: int) -> str:
    """Every socket of one user, on every process: told to check their session again."""
    return f"chat.user.{user_id}"


def messages_created(frames: list[dict[str, Any]]) -> dict[str, Any]:
    """To a conversation group: a new exchange's `message.created` frames, in one message."""
    return {"type": "chat.messages.created", "frames": frames}


def message_done(frame: dict[str, Any], *, then: Sequence[dict[str, Any]] = ()) -> dict[str, Any]:
    """To a conversation group: an answer's `message.done`, for sockets that missed its log, and
    the frames that follow it (the conversation's new title) in the same message."""
    return {"type": "chat.message.done", "frame": frame, "then": list(then)}


def conversation_updated(frame: dict[str, Any]) -> dict[str, Any]:
    """To a conversation group: its `conversation.updated` frame (a new title)."""
    return {"type": "chat.conversation.updated", "frame": frame}


def generation_stop(message_id: uuid.UUID) -> dict[str, Any]:
    """To the engines' group: stop writing that answer (the engine running it acts)."""
    return {"type": GENERATION_STOP, "message": str(message_id)}
