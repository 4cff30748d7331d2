"""Checkpoints of every running answer of this event loop, saved together.

Each answer saves its partial text every CHAT_CHECKPOINT_SECONDS and refreshes its liveness stamp
when silent. One transaction each cost a thousand streaming answers a thousand transactions every
few seconds, all through the database's writer (SQLite has one); whatever is asked for while the
previous batch is being written now goes out as the next batch, in one transaction
(services.message_checkpoint_many). A newer checkpoint of an answer replaces an older one still
waiting, so the batch holds at most one row per answer.
"""

import asyncio
import logging
import uuid

from chatsite.db import db_call
from conversations import services

logger = logging.getLogger(__name__)

# How long the writer lets checkpoints gather before a batch: answers ask on the same clock tick
# (see Generation.run), but each only when its next token arrives. A checkpoint is for a crash,
# so a tenth of a second late costs nothing.
LINGER_SECONDS = 0.1
# Rows per statement: bounds the statement's size (a checkpoint carries the answer's whole text).
BATCH_ROWS = 200


class CheckpointWriter:
    def __init__(self) -> None:
        # message id -> (text or None for "only the stamp", the futures of its askers)
        self.pending: dict[uuid.UUID, tuple[str | None, list[asyncio.Future[None]]]] = {}
        self.task: asyncio.Task[None] | None = None
        # The batch being written (settled if the writer stops midway).
        self.in_flight: list = []

    def save(self, *, message_id: uuid.UUID, content: str | None) -> asyncio.Future[None]:
        """Queue a checkpoint; the future ends once it is written (or raises why it was not)."""
        done = asyncio.get_running_loop().create_future()
        previous, waiting = self.pending.get(message_id, (None, []))
        # A stamp alone never replaces text that still has to be written.
        self.pending[message_id] = (content if content is not None else previous, [*waiting, done])
        if self.task is None or self.task.done():
            self.task = asyncio.create_task(self._write(), name="chat-checkpoints")
            self.task.add_done_callback(self._stopped)
        return done

    async def _write(self) -> None:
        while self.pending:
            await asyncio.sleep(LINGER_SECONDS)
            batch, self.pending = self.pending, {}
            self.in_flight = list(batch.items())
            for start in range(0, len(self.in_flight), BATCH_ROWS):
                part = self.in_flight[start : start + BATCH_ROWS]
                try:
                    await db_call(services.message_checkpoint_many, writes=True)(
                        checkpoints={key: content for key, (content, _) in part}
                    )
                except Exception as exc:
                    _settle(part, exc)
                else:
                    _settle(part, None)
            self.in_flight = []

    def _stopped(self, task: asyncio.Task[None]) -> None:
        """Cancelled (the loop is closing), even before it began, or failed: nobody may wait for
        a checkpoint forever (an answer's final save waits for its last one)."""
        if not task.cancelled() and task.exception() is None:
            return
        leftover = self.in_flight + list(self.pending.items())
        self.in_flight, self.pending = [], {}
        _settle(leftover, RuntimeError("the checkpoint writer stopped"))


def _settle(part, error: BaseException | None) -> None:
    for _, (_, waiting) in part:
        for future in waiting:
            if future.done():
                continue
            if error is None:
                future.set_result(None)
            else:
                future.set_exception(error)
