"""What every path that writes or ends an answer shares: the answer's event-log key, calls that may
fail without failing the answer, the final rendering, the liveness clock, and the end-of-answer
announcement (written once here for the engine and for the recovery of dead answers).
"""

import asyncio
import html
import logging
import uuid
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

from asgiref.sync import sync_to_async
from channels.layers import get_channel_layer
from django.conf import settings
from django.utils import timezone

from conversations import groups
from conversations.eventlog import EventLog
from conversations.rendering import render_markdown

logger = logging.getLogger(__name__)

# Event-log writes are retried this often before a frame is given up on (the text is still
# kept and saved; readers of the log resynchronise from a snapshot).
LOG_ATTEMPTS = 3
# How long one event-log or channel-layer call may take before it counts as failed.
LOG_CALL_SECONDS = 5.0


def log_key(message_id: uuid.UUID) -> str:
    return message_id.hex


def stale_cutoff() -> datetime:
    """A `streaming` answer last saved before this belongs to a process that died."""
    return timezone.now() - timedelta(seconds=settings.CHAT_STALE_STREAM_SECONDS)


def liveness_seconds() -> float:
    """How often a running answer refreshes its row even when no text arrives."""
    return max(1.0, settings.CHAT_STALE_STREAM_SECONDS / 3)


async def render_html(content: str) -> str:
    # Markdown rendering is CPU work on possibly long text: off the event loop.
    try:
        return await sync_to_async(render_markdown, thread_sensitive=False)(content)
    except Exception:
        # A renderer bug must not keep the answer from ending; plain text is always safe.
        logger.exception("rendering an answer failed; sending it as plain text")
        return f"<p>{html.escape(content)}</p>"


async def best_effort(
    what: str,
    call,
    *,
    attempts: int | None = None,
    pause: float = 0.05,
    per_attempt: float | None = LOG_CALL_SECONDS,
) -> bool:
    """Run an awaitable factory a few times; False (and a warning) when it keeps failing.

    The event log and the channel layer are how sockets hear about an answer; a Redis blip must
    not end the answer itself, whose text is kept in memory and saved to the database. Each
    attempt has `per_attempt` seconds: a Redis that hangs instead of refusing must not hold the
    answer (and its stop, and its shutdown) for the length of a socket timeout."""
    attempts = attempts or LOG_ATTEMPTS
    for attempt in range(1, attempts + 1):
        try:
            async with asyncio.timeout(per_attempt):
                await call()
            return True
        except asyncio.CancelledError:
            raise
        except Exception:
            if attempt == attempts:
                logger.warning(
                    "%s failed %d times; going on without it", what, attempt, exc_info=True
                )
                return False
            await asyncio.sleep(pause * attempt)
    return False


async def answer_end_announce(
    *,
    log: EventLog,
    message_id: uuid.UUID,
    seq: int | None,
    done: dict[str, Any],
    then: Sequence[dict[str, Any]] = (),
) -> None:
    """Close the answer's event log with `done` (unless `seq` is None: no open log to close),
    then tell the conversation's sockets directly, so one whose reading of the log failed (or
    that could not read it at all) still learns that the answer ended; `then`, the frames that
    follow the end (a new title), go in the same message."""
    if seq is not None:
        key = log_key(message_id)
        await best_effort("event log finish", lambda: log.finish(key, seq=seq, done=done))
    conversation_id = uuid.UUID(done["conversation"])
    await best_effort(
        "announcing the end",
        lambda: get_channel_layer().group_send(
            groups.conversation_group(conversation_id), groups.message_done(done, then=then)
        ),
    )
