"""Starting and stopping answers: what the consumer and the no-JavaScript form call.

The engine that writes an answer is conversations.engine; answers whose process died are
conversations.recovery's; titles after a first answer, conversations.auto_titles.
"""

import asyncio
import logging
import uuid
from contextlib import suppress

from channels.layers import get_channel_layer
from django.utils import timezone
from redis.exceptions import RedisError

from chatsite.db import db_call
from conversations import frames, groups, selectors, services
from conversations.answers import best_effort, liveness_seconds, log_key
from conversations.attachments.content import has_images
from conversations.attachments.services import exchange_with_images
from conversations.engine import Engine, Generation, generation_engine
from conversations.errors import ChatError
from conversations.eventlog import event_log
from conversations.models import Message
from conversations.protocol import ChatEdit, ChatRegenerate, ChatSend
from conversations.recovery import message_interrupt_and_announce
from conversations.services import Exchange

logger = logging.getLogger(__name__)

EVENT_LOG_UNAVAILABLE = "Answers cannot be started right now; try again in a moment."


async def exchange_open(*, user, request: ChatSend | ChatRegenerate | ChatEdit) -> Exchange:
    """Save the user message and the answer's placeholder (one transaction) and open its event
    log. The log opens first, under the answer's id chosen here, so a socket that sees the
    committed `streaming` row always finds its log."""
    assistant_id = uuid.uuid4()
    log = event_log()
    try:
        await log.open(log_key(assistant_id))
    except (RedisError, OSError) as exc:
        # Redis is down or restarting; nothing was written and nothing is wrong with the request.
        logger.warning("could not open an answer's event log: %r", exc)
        raise ChatError("unavailable", EVENT_LOG_UNAVAILABLE) from exc
    try:
        exchange = await _exchange_save(user=user, request=request, assistant_id=assistant_id)
    except BaseException:
        # The cause (a refusal, a database error) is what the user hears of, not a failed
        # cleanup; Redis expires what is left.
        with suppress(Exception):
            await log.discard(log_key(assistant_id))
        raise
    if not has_images(exchange.history):
        return exchange  # no thread hop before the first token
    # Attached images are read from storage now, after the commit and on a reader thread: the
    # transaction (SQLite's single writer) never waits for a file, local or in a bucket.
    try:
        return await db_call(exchange_with_images)(exchange)
    except ChatError as exc:
        # A file gone from storage: the answer ends as an error rather than stay `streaming`.
        await db_call(services.message_finish, writes=True)(
            message_id=assistant_id, content="", status=Message.Status.ERROR, provider="",
            model="", prompt_tokens=None, completion_tokens=None, error_code=exc.code,
            error_detail=exc.detail,
        )  # fmt: skip
        await log.discard(log_key(assistant_id))
        raise


async def _exchange_save(
    *, user, request: ChatSend | ChatRegenerate | ChatEdit, assistant_id: uuid.UUID
) -> Exchange:
    if isinstance(request, ChatSend):
        return await db_call(services.message_send, writes=True)(
            user=user, request=request, assistant_id=assistant_id
        )
    if isinstance(request, ChatRegenerate):
        return await db_call(services.message_regenerate, writes=True)(
            user=user, message_id=request.message, assistant_id=assistant_id
        )
    return await db_call(services.message_edit, writes=True)(
        user=user, message_id=request.message, content=request.content, assistant_id=assistant_id
    )


async def generation_start(*, exchange: Exchange) -> Generation:
    """Start writing the answer, then announce its messages to the conversation's other sockets
    (the socket that asked hears of them directly, see the consumer).

    The upstream request goes out before any channel-layer round trip: when hundreds of answers
    start at once those round trips queue for the layer's connections, and the first token must
    not wait behind them. A stop from this process works at once (the engine's own table); the
    engines' group, which carries stops from other processes, is joined before other tabs hear
    of the answer, so no tab can ask to stop an answer its process does not yet listen for."""
    generation = Generation(exchange)
    engine = generation_engine()
    await engine.register(generation)
    engine.launch(generation)
    engine.run_in_background(_announce(engine, generation))
    return generation


async def _announce(engine: Engine, generation: Generation) -> None:
    await engine.join_engines_group()
    exchange = generation.exchange
    created = [
        frames.message_created(message, request_id=None)
        for message in (exchange.user_message, exchange.assistant_message)
        if message is not None
    ]
    # A failed announcement costs other tabs a live view (they catch up on their next
    # subscribe); it must not cost the answer.
    await best_effort(
        "announcing new messages",
        lambda: get_channel_layer().group_send(
            groups.conversation_group(exchange.conversation.id), groups.messages_created(created)
        ),
    )


async def generation_run_to_completion(*, user, request: ChatSend) -> Exchange:
    """Send and wait for the whole answer (the no-JavaScript form). If the waiting request goes
    away, the answer is still written and saved."""
    exchange = await exchange_open(user=user, request=request)
    generation = await generation_start(exchange=exchange)
    assert generation.task is not None
    await asyncio.shield(generation.task)
    return exchange


async def generation_stop(*, user, message_id: uuid.UUID) -> None:
    """Stop an answer of `user`'s, wherever it runs. A finished answer is left as it is."""
    message = await db_call(selectors.message_get_for_user)(user=user, message_id=message_id)
    if message is None or message.role != Message.Role.ASSISTANT:
        raise ChatError("not_found", services.NOT_FOUND)
    if message.status != Message.Status.STREAMING:
        return
    local = generation_engine().generations.get(message_id)
    if local is not None:
        local.stop()
        return
    await get_channel_layer().group_send(groups.ENGINES, groups.generation_stop(message_id))
    # A live answer saves its row at least every liveness interval. One that has not is on a
    # process that died: nobody will act on the stop, so end it here, as the user asked.
    saved = message.checkpointed_at
    if saved is None or (timezone.now() - saved).total_seconds() > liveness_seconds() + 2:
        await message_interrupt_and_announce(message_id=message_id, stopped=True)
