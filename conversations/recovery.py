"""Answers whose process died: found by their old checkpoint and ended as `interrupted` (or
`stopped`, when their user asked), keeping the most text known, at server start and by every
process's engine in a sweep every few seconds.
"""

import logging
import uuid
from collections.abc import Container

from chatsite.db import db_call
from conversations import frames, selectors, services
from conversations.answers import answer_end_announce, log_key, render_html, stale_cutoff
from conversations.eventlog import event_log, event_log_is_shared

logger = logging.getLogger(__name__)


async def message_interrupt_and_announce(*, message_id: uuid.UUID, stopped: bool = False) -> bool:
    """End a `streaming` answer nobody writes any more (`interrupted`, or `stopped` when its
    user asked), keeping the most text known (its event log may hold more than its last
    checkpoint), and tell its sockets."""
    log = event_log()
    snapshot = await log.snapshot(log_key(message_id))
    log_open = snapshot is not None and snapshot.done is None
    if not await db_call(services.message_interrupt, writes=True)(
        message_id=message_id, content=snapshot.content if log_open else None, stopped=stopped
    ):
        return False
    message = await db_call(selectors.message_get)(message_id=message_id)
    if message is None:
        return False
    done = frames.message_done_from_row(message, html=await render_html(message.content))
    await answer_end_announce(
        log=log, message_id=message_id, seq=snapshot.seq if log_open else None, done=done
    )
    logger.info("answer %s ended as %s (its process is gone)", message_id, message.status)
    return True


async def generation_recover_stale(*, running: Container[uuid.UUID] = ()) -> int:
    """Interrupt `streaming` answers not saved for CHAT_STALE_STREAM_SECONDS (their process
    died); `running` (the answers this process writes) are skipped. Returns how many were
    interrupted."""
    ids = await db_call(selectors.message_ids_stale_streaming)(saved_before=stale_cutoff())
    count = 0
    for message_id in ids:
        if message_id in running:
            continue
        if await message_interrupt_and_announce(message_id=message_id):
            count += 1
    return count


def generation_recover_on_start() -> int:
    """At server start (sync, before serving). With the in-process event log this process was the
    only writer, so every `streaming` answer is dead; with Redis other processes may be writing,
    so only stale ones are."""
    cutoff = stale_cutoff() if event_log_is_shared() else None
    return services.message_interrupt_dead(saved_before=cutoff)
