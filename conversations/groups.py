"""Names of the channel-layer groups the chat uses, in one place for the engine, the consumer and
the services that notify them."""

import uuid


def conversation_group(conversation_id: uuid.UUID) -> str:
    """The sockets subscribed to a conversation: new messages, titles, answers' ends."""
    return f"chat.conversation.{conversation_id.hex}"


def generation_group(message_id: uuid.UUID) -> str:
    """The process writing an answer: stop requests."""
    return f"chat.generation.{message_id.hex}"


def user_group(user_id: int) -> str:
    """Every socket of one user, on every process: told to check their session again."""
    return f"chat.user.{user_id}"
