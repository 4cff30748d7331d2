"""A new conversation's title, written when its first answer ends: by the provider named in
CHAT_TITLE_PROVIDER when there is one and it answers in time (after the answer), else the first
words of the first message (with the answer's final save; conversations.titles holds the rules
for title text)."""

import asyncio
import logging
import uuid
from contextlib import aclosing

from channels.layers import get_channel_layer
from django.conf import settings

from chatsite.db import db_call
from conversations import frames, groups, services, titles
from providers.errors import ProviderError
from providers.services import stream_chat

logger = logging.getLogger(__name__)

TITLE_PROMPT = (
    "Write a short title (at most six words, no quotes, no final punctuation) for a chat that "
    "starts with this message:\n\n{text}"
)


async def _title_from_provider(text: str) -> str | None:
    name = settings.CHAT_TITLE_PROVIDER
    if not name:
        return None
    from providers.selectors import provider_target_get

    try:
        target = await db_call(provider_target_get)(name=name)
        parts: list[str] = []
        messages = [{"role": "user", "content": TITLE_PROMPT.format(text=text[:2000])}]
        async with asyncio.timeout(15):
            async with aclosing(stream_chat(target, messages, max_tokens=24)) as stream:
                async for chunk in stream:
                    if isinstance(chunk, str):
                        parts.append(chunk)
    except (ProviderError, TimeoutError) as exc:
        logger.info("title provider %s failed (%s); using the first words", name, exc)
        return None
    title = " ".join("".join(parts).split()).strip(" \"'.")
    return title[: titles.TITLE_MAX_CHARS] or None


def title_now(text: str | None) -> str | None:
    """The title an answer's final save gives its conversation (conversations.services
    .message_finish): the first words of `text`, the conversation's first message when it has no
    title yet, unless a title provider is set (conversation_title_write asks it later)."""
    if not text or settings.CHAT_TITLE_PROVIDER:
        return None
    return titles.title_from_text(text)


async def conversation_title_write(*, conversation_id: uuid.UUID, text: str) -> None:
    """Title the conversation from its first message, unless it has a title already, and tell
    its sockets."""
    title = await _title_from_provider(text) or titles.title_from_text(text)
    conversation = await db_call(services.conversation_title_set_if_empty, writes=True)(
        conversation_id=conversation_id, title=title
    )
    if conversation is not None:
        frame = frames.conversation_updated(frames.conversation_data(conversation))
        await get_channel_layer().group_send(
            groups.conversation_group(conversation_id), groups.conversation_updated(frame)
        )
