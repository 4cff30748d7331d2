"""The generation engine: one asyncio task per answer, independent of any socket.

A generation reads the provider's stream through a pump task into a queue, coalesces tokens into
frames (a token arriving more than CHAT_FRAME_INTERVAL_MS after the last frame goes out at once,
later ones at the end of the interval: at most one frame per interval; the interval grows while
the process runs late, see LoopLag), appends each frame to the
answer's event log (conversations.eventlog) for every subscriber on every process to read, and
saves the partial text in the background at most once per CHAT_CHECKPOINT_SECONDS. Whatever ends
it (the provider finishing or failing, a stop, the process shutting down) the text so far is kept.

Control messages go through the channel layer, never tokens (see eventlog for why; their shapes
are in conversations.groups): stop requests reach the engine of the process running an answer
through the engines' group, which every process's engine is in.
"""

import asyncio
import logging
import sys
import time
import uuid
from contextlib import aclosing, suppress
from dataclasses import dataclass, field
from typing import Any

from channels.layers import get_channel_layer
from django.conf import settings
from django.utils import timezone

from chatsite.db import db_call
from chatsite.loops import PerLoop
from conversations import auto_titles, frames, groups, recovery, services
from conversations.answers import (
    answer_end_announce,
    best_effort,
    liveness_seconds,
    log_key,
    render_html,
)
from conversations.checkpoints import CheckpointWriter
from conversations.eventlog import EventLog, event_log
from conversations.models import Conversation, Message
from conversations.services import Exchange
from providers.errors import ProviderError
from providers.services import stream_chat
from providers.types import ProviderInfo, Usage

logger = logging.getLogger(__name__)

# How often an engine renews its membership of the engines' group (see join_engines_group).
ENGINES_GROUP_REJOIN_SECONDS = 3600.0

# The final save is retried this many times (with a short pause) before the answer is left to the
# stale sweep, which keeps its last checkpoint.
FINISH_ATTEMPTS = 3


@dataclass(frozen=True)
class _Failure:
    error: ProviderError


_END = object()
_STOP = object()
# The server is shutting down: end the answer as `interrupted`, saving what it has.
_SHUTDOWN = object()

# How an answer ended: its status, and the error it ended with (if any).
type Ending = tuple[str, ProviderError | None]


def _answer_too_long() -> ProviderError:
    minutes = settings.CHAT_MAX_ANSWER_SECONDS / 60
    length = f"{minutes:g} minutes" if minutes >= 1 else f"{settings.CHAT_MAX_ANSWER_SECONDS:g} s"
    return ProviderError(
        f"The answer took longer than {length}, the most an answer may take, and was ended.",
        code="answer_too_long",
    )


@dataclass
class _Pacing:
    """When a running answer last sent a frame, saved its text and showed it was alive."""

    interval: float = field(default_factory=lambda: settings.CHAT_FRAME_INTERVAL_MS / 1000)
    checkpoint_every: float = field(default_factory=lambda: settings.CHAT_CHECKPOINT_SECONDS)
    # A generation that is alive but silent (a slow first token) still refreshes its row, so
    # the stale sweep never mistakes it for one whose process died.
    liveness_every: float = field(default_factory=liveness_seconds)
    last_flush: float = float("-inf")
    last_save: float = field(default_factory=time.monotonic)
    last_live: float = field(default_factory=time.monotonic)
    saved_len: int = 0

    def wait_seconds(self, *, pending: bool) -> float:
        """How long the next item may be waited for: until the next frame or liveness is due."""
        deadline = self.last_live + self.liveness_every
        if pending:
            deadline = min(deadline, self.last_flush + self.interval)
        return max(0.0, deadline - time.monotonic())

    def checkpoint_due(self, now: float, length: int) -> bool:
        # On the shared clock's ticks, not this answer's own: every running answer then asks
        # at about the same moment, and the engine's writer saves them together.
        tick = self.checkpoint_every
        return now // tick != self.last_save // tick and length != self.saved_len


class LoopLag:
    """How late this event loop runs what is due, and the frame interval that follows from it.

    A frame per token costs the same CPU whatever the load (a log append, a wake-up of each
    follower, a WebSocket message), so a process streaming more than it can keep up with fell
    further behind with every token. When the loop runs late anyway, frames wait up to as long
    as it is late (CHAT_FRAME_INTERVAL_MAX_MS at most) and carry several tokens each: no later
    than the loop would have delivered them, for a fraction of the work. An idle process keeps
    CHAT_FRAME_INTERVAL_MS.
    """

    PERIOD = 0.05

    def __init__(self) -> None:
        self.seconds = 0.0

    async def measure_forever(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            due = loop.time() + self.PERIOD
            await asyncio.sleep(self.PERIOD)
            self.observe(loop.time() - due)

    def observe(self, late: float) -> None:
        # Up at once, down over a few periods: one quiet moment in a busy stretch should not
        # bring back a frame per token.
        self.seconds = late if late > self.seconds else 0.7 * self.seconds + 0.3 * late

    def frame_interval(self) -> float:
        base = settings.CHAT_FRAME_INTERVAL_MS / 1000
        return max(base, min(settings.CHAT_FRAME_INTERVAL_MAX_MS / 1000, self.seconds))


class Generation:
    """One answer being written. Created by generation_start; runs until its task ends."""

    def __init__(self, exchange: Exchange) -> None:
        self.exchange = exchange
        self.message_id = exchange.assistant_message.id
        self.conversation_id = exchange.conversation.id
        self.provider = exchange.assistant_message.provider
        self.model = exchange.assistant_message.model
        self.queue: asyncio.Queue[object] = asyncio.Queue()
        self.parts: list[str] = []
        self.length = 0
        self.seq = 0
        # An append failed (after its retries): the log lacks a frame until a resync writes it.
        self.log_behind = False
        self.usage: Usage | None = None
        self.stop_requested = False
        self.task: asyncio.Task[None] | None = None
        self._checkpoint: asyncio.Future[None] | None = None

    def stop(self) -> None:
        if not self.stop_requested:
            self.stop_requested = True
            self.queue.put_nowait(_STOP)

    def interrupt(self) -> None:
        """The server is going down: end now as `interrupted`, keeping the text."""
        self.queue.put_nowait(_SHUTDOWN)

    @property
    def content(self) -> str:
        return "".join(self.parts)

    async def _pump(self) -> None:
        exchange = self.exchange
        try:
            stream = stream_chat(
                exchange.target, exchange.history, model=exchange.model, **exchange.options
            )
            # However the upstream behaves, an answer ends: an unwatched endless one would hold
            # one of its user's slots and an upstream connection until someone stopped it.
            async with asyncio.timeout(settings.CHAT_MAX_ANSWER_SECONDS), aclosing(stream):
                await self._read(stream)
        except ProviderError as exc:
            self.queue.put_nowait(_Failure(exc))
        except TimeoutError:
            self.queue.put_nowait(_Failure(_answer_too_long()))
        except Exception:
            logger.exception("generation %s: the provider stream failed", self.message_id)
            self.queue.put_nowait(_Failure(ProviderError(code="internal")))
        else:
            self.queue.put_nowait(_END)

    async def _read(self, stream) -> None:
        """Queue the stream's chunks. The first may take as long as the provider's own timeout
        allows (a model may think, or queue, before it writes); after it, a wait of more than
        CHAT_ANSWER_IDLE_SECONDS for the next ends the answer (`answer_idle`). One timeout is
        moved on at each chunk: a wait_for per chunk cost several times as much."""
        loop = asyncio.get_running_loop()
        seconds = settings.CHAT_ANSWER_IDLE_SECONDS
        idle = asyncio.timeout(None)
        chunk = await anext(stream, _END)
        try:
            async with idle:
                while chunk is not _END:
                    self.queue.put_nowait(chunk)
                    idle.reschedule(loop.time() + seconds)
                    chunk = await anext(stream, _END)
        except TimeoutError:
            if not idle.expired():
                raise  # the answer's own time limit, not this one
            raise ProviderError(
                f"The provider sent nothing for {seconds:g} seconds, so the answer was ended.",
                code="answer_idle",
            ) from None

    def _save_in_background(self, content: str | None) -> None:
        """Checkpoint without holding up the frames; at most one save in flight. The engine's
        writer saves every answer's checkpoints together (conversations.checkpoints)."""
        if self._checkpoint is not None and not self._checkpoint.done():
            return
        self._checkpoint = generation_engine().checkpoints.save(
            message_id=self.message_id, content=content
        )
        self._checkpoint.add_done_callback(self._checkpoint_saved)

    def _checkpoint_saved(self, future: asyncio.Future[None]) -> None:
        if not future.cancelled() and future.exception() is not None:
            # The next checkpoint (or the final save) carries the text anyway.
            logger.warning(
                "generation %s: checkpoint failed: %r", self.message_id, future.exception()
            )

    async def run(self) -> None:
        log, key = event_log(), log_key(self.message_id)
        pending: list[str] = []
        pump = asyncio.create_task(self._pump())
        try:
            status, failure = await self._write(log, key, pending)
        except asyncio.CancelledError:
            # The process is shutting down: keep what was written; the row becomes `interrupted`.
            pump.cancel()
            with suppress(Exception):
                await asyncio.shield(self._interrupt_on_shutdown(pending))
            raise
        finally:
            if not pump.done():
                pump.cancel()
            # Closing the provider stream (and with it the upstream request) happens here, so a
            # stop frees the upstream before the answer is reported as ended.
            with suppress(asyncio.CancelledError, Exception):
                await pump
        if pending:
            await self._flush(log, key, pending)
        await self._finish(log, key, status, failure)

    async def _write(self, log: EventLog, key: str, pending: list[str]) -> Ending:
        """Take the pump's items until the answer ends: frames on the interval, checkpoints on
        the shared clock, liveness when silent."""
        pacing = _Pacing()
        lag = generation_engine().lag
        while True:
            pacing.interval = lag.frame_interval()
            if not self.queue.empty():
                # Under load the queue is seldom empty: no timer for the common case.
                item = self.queue.get_nowait()
            else:
                try:
                    item = await asyncio.wait_for(
                        self.queue.get(), pacing.wait_seconds(pending=bool(pending))
                    )
                except TimeoutError:
                    item = None
            now = time.monotonic()
            ending = self._take(item, pending)
            if ending is not None:
                return ending
            if pending and now - pacing.last_flush >= pacing.interval:
                await self._flush(log, key, pending)
                pacing.last_flush = now
                # Let the answer's readers send the frame now. At full speed the provider's
                # chunks are always ready, and this task and the pump would otherwise hand the
                # loop to each other until the upstream paused: the first token then reached the
                # browser 50 ms after it was written to the log.
                await asyncio.sleep(0)
            # The length is kept as frames go out: joining the text on every token would cost
            # a long answer quadratic time.
            if pacing.checkpoint_due(now, self.length):
                pacing.saved_len = self.length
                self._save_in_background(self.content)
                pacing.last_save = now
            if now - pacing.last_live >= pacing.liveness_every:
                await self._keep_alive(log, key, pacing)
                pacing.last_live = now

    def _take(self, item: object, pending: list[str]) -> Ending | None:
        """Apply one item of the pump's; how the answer ended when the item ends it."""
        if isinstance(item, str):
            if item:
                pending.append(item)
        elif item is _STOP:
            return Message.Status.STOPPED, None
        elif item is _END:
            return Message.Status.COMPLETE, None
        elif item is _SHUTDOWN:
            failure = ProviderError(services.INTERRUPTED_DETAIL, code="interrupted")
            return Message.Status.INTERRUPTED, failure
        elif isinstance(item, _Failure):
            return Message.Status.ERROR, item.error
        elif isinstance(item, ProviderInfo):
            self.provider, self.model = item.provider, item.model
        elif isinstance(item, Usage):
            self.usage = item
        return None

    async def _keep_alive(self, log: EventLog, key: str, pacing: _Pacing) -> None:
        # The row's stamp (when no text changed) and the log's expiry, so neither a silent
        # provider nor an hour of steady output looks like a dead process.
        if pacing.saved_len == self.length:
            self._save_in_background(None)
        await best_effort("event log keepalive", lambda: log.keepalive(key))

    async def _flush(self, log: EventLog, key: str, pending: list[str]) -> None:
        delta = "".join(pending)
        pending.clear()
        self.seq += 1
        self.parts.append(delta)
        self.length += len(delta)
        await self._log_write(log, key)

    async def _log_write(self, log: EventLog, key: str) -> None:
        """The newest frame into the event log; after a write that failed even when retried, the
        whole text instead, so followers get a snapshot rather than a hole."""
        seq = self.seq
        if self.log_behind:
            content = self.content
            written = await best_effort(
                "event log resync", lambda: log.resync(key, seq=seq, content=content)
            )
        else:
            delta = self.parts[-1]
            written = await best_effort(
                "event log append",
                lambda: log.append(key, seq=seq, delta=delta, text_so_far=lambda: self.content),
            )
        self.log_behind = not written

    async def _finish(
        self, log: EventLog, key: str, status: str, failure: ProviderError | None
    ) -> None:
        if self._checkpoint is not None:
            with suppress(Exception):
                await self._checkpoint
        fields = await self._final_fields(status, failure)
        titled: list[Conversation] = []

        async def save() -> None:
            conversation = await db_call(services.message_finish, writes=True)(
                **fields, title=auto_titles.title_now(self.exchange.title_source)
            )
            if conversation is not None:
                titled.append(conversation)

        await best_effort(
            f"saving answer {self.message_id}",
            save,
            attempts=FINISH_ATTEMPTS,
            pause=0.2,
            # A save cut short would go on in its thread while the next attempt starts.
            per_attempt=None,
        )
        # After the save: the text is safe in the database before the log is caught up.
        if self.log_behind:
            await self._log_write(log, key)
        row = {name: value for name, value in fields.items() if name != "content_html"}
        done = frames.message_done(
            conversation_id=self.conversation_id,
            html=fields["content_html"],
            started_at=self.exchange.assistant_message.created_at,
            finished_at=timezone.now(),
            **row,
        )
        then = [frames.conversation_updated(frames.conversation_data(c)) for c in titled]
        await answer_end_announce(
            log=log, message_id=self.message_id, seq=self.seq, done=done, then=then
        )

    async def _final_fields(self, status: str, failure: ProviderError | None) -> dict[str, Any]:
        """The answer's final row (message_finish's arguments), its HTML rendered once, here:
        the done frame and every later page view use this copy."""
        error_code, error_detail = "", ""
        if failure is not None:
            error_code, error_detail = failure.code, str(failure)
            if status == Message.Status.ERROR:
                # Users are told a fixed sentence (conversations.errors); the detail is here and
                # in the admin.
                logger.warning(
                    "answer %s failed: %s: %s", self.message_id, error_code, error_detail
                )
        content = self.content
        usage = self.usage
        return {
            "message_id": self.message_id,
            "content": content,
            "status": status,
            "provider": self.provider,
            "model": self.model,
            "prompt_tokens": usage.prompt_tokens if usage else None,
            "completion_tokens": usage.completion_tokens if usage else None,
            "error_code": error_code,
            "error_detail": error_detail,
            "content_html": await render_html(content),
        }

    async def finish_after_crash(self) -> None:
        """A bug in the engine itself: save what there is as an error, tell the sockets."""
        failure = ProviderError("Something went wrong while writing this answer.", code="internal")
        await self._finish(event_log(), log_key(self.message_id), Message.Status.ERROR, failure)

    async def _interrupt_on_shutdown(self, pending: list[str]) -> None:
        content = self.content + "".join(pending)
        await db_call(services.message_interrupt, writes=True)(
            message_id=self.message_id, content=content
        )


class Engine:
    """This event loop's generations, and its listener for stop requests from other processes."""

    def __init__(self) -> None:
        self.generations: dict[uuid.UUID, Generation] = {}
        self._tasks: set[asyncio.Task[Any]] = set()
        self._channel: str | None = None
        self._started = asyncio.Lock()
        self._joining = asyncio.Lock()
        self._joined_at = float("-inf")
        self._background: list[asyncio.Task[Any]] = []
        self.checkpoints = CheckpointWriter()
        self.lag = LoopLag()

    async def ensure_started(self) -> None:
        async with self._started:
            if self._channel is not None:
                return
            layer = get_channel_layer()
            self._channel = await layer.new_channel()
            self._background = [
                asyncio.create_task(self._listen(), name="chat-engine-listen"),
                asyncio.create_task(self._sweep_forever(), name="chat-engine-sweep"),
                asyncio.create_task(self.lag.measure_forever(), name="chat-engine-lag"),
            ]
            hook_server_shutdown(self)

    async def _listen(self) -> None:
        layer = get_channel_layer()
        while True:
            try:
                message = await layer.receive(self._channel)
            except asyncio.CancelledError:
                raise
            except Exception:
                logger.warning("chat engine: channel layer receive failed", exc_info=True)
                await asyncio.sleep(1)
                continue
            if message.get("type") == groups.GENERATION_STOP:
                with suppress(ValueError, KeyError, TypeError):
                    generation = self.generations.get(uuid.UUID(message["message"]))
                    if generation is not None:
                        generation.stop()

    async def _sweep_forever(self) -> None:
        every = max(1.0, settings.CHAT_STALE_STREAM_SECONDS / 2)
        while True:
            await asyncio.sleep(every)
            try:
                await recovery.generation_recover_stale(running=self.generations)
            except asyncio.CancelledError:
                raise
            except Exception:
                logger.warning("chat engine: stale sweep failed", exc_info=True)

    async def register(self, generation: Generation) -> None:
        """Make the answer stoppable here at once; from other processes once this engine is in
        the engines' group (see generation_start for the order)."""
        await self.ensure_started()
        self.generations[generation.message_id] = generation

    async def join_engines_group(self) -> None:
        """Be in the engines' group, which carries stops from other processes: joined by this
        process's first answer, and again by the first one after ENGINES_GROUP_REJOIN_SECONDS,
        well inside the layer's group expiry (a day), which would otherwise drop this engine."""
        if time.monotonic() - self._joined_at < ENGINES_GROUP_REJOIN_SECONDS:
            return
        async with self._joining:
            if time.monotonic() - self._joined_at < ENGINES_GROUP_REJOIN_SECONDS:
                return  # another answer joined while this one waited
            joined = await best_effort(
                "joining the engines' group",
                lambda: get_channel_layer().group_add(groups.ENGINES, self._channel),
            )
            if joined:
                self._joined_at = time.monotonic()

    def run_in_background(self, work) -> None:
        task = asyncio.create_task(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def launch(self, generation: Generation) -> None:
        generation.task = asyncio.create_task(
            self._run(generation), name=f"generation-{generation.message_id}"
        )
        self._tasks.add(generation.task)
        generation.task.add_done_callback(self._tasks.discard)

    async def _run(self, generation: Generation) -> None:
        try:
            await generation.run()
        except asyncio.CancelledError:
            raise
        except Exception:
            logger.exception("generation %s failed", generation.message_id)
            await self._save_after_crash(generation)
        finally:
            self.generations.pop(generation.message_id, None)
        source = generation.exchange.title_source
        if source and settings.CHAT_TITLE_PROVIDER:
            # A title provider's title comes after the answer; first words came with its end.
            try:
                await auto_titles.conversation_title_write(
                    conversation_id=generation.conversation_id, text=source
                )
            except Exception:
                logger.warning("generation %s: title failed", generation.message_id, exc_info=True)

    async def _save_after_crash(self, generation: Generation) -> None:
        try:
            await generation.finish_after_crash()
        except Exception:
            # The stale sweep will still end it, keeping its last checkpoint.
            logger.exception("generation %s: could not save after a crash", generation.message_id)

    async def wait_idle(self) -> None:
        """Until every generation of this loop has ended (tests, shutdown)."""
        # Only unfinished tasks are waited for: a finished one whose done-callback has not run
        # yet would make gather() return at once, forever, and this loop spin.
        while pending := [task for task in self._tasks if not task.done()]:
            await asyncio.wait(pending)

    async def shutdown(self, *, grace: float = 10.0) -> None:
        """End every running answer as `interrupted`, saved and announced, before the process
        exits (Daphne's reactor waits for this; see hook_server_shutdown)."""
        for generation in list(self.generations.values()):
            generation.interrupt()
        pending = [task for task in self._tasks if not task.done()]
        if pending:
            await asyncio.wait(pending, timeout=grace)
        if self._channel is not None:
            # Stops sent to the engines' group need not be queued for a process that is gone.
            await best_effort(
                "leaving the engines' group",
                lambda: get_channel_layer().group_discard(groups.ENGINES, self._channel),
                attempts=1,
            )

    async def close(self) -> None:
        for task in self._background:
            task.cancel()
        for task in self._background:
            with suppress(asyncio.CancelledError, Exception):
                await task
        self._background = []
        self._channel = None
        self._joined_at = float("-inf")


def hook_server_shutdown(engine: Engine) -> None:
    """Under Daphne, end running answers cleanly when the server is told to stop.

    Daphne stops its Twisted reactor on SIGTERM/SIGINT without cancelling our tasks, so without
    this an answer would stay `streaming` until a later start or another process noticed. A
    "before shutdown" trigger that returns a Deferred makes the reactor wait for it. Outside
    Daphne (tests, the bench) no reactor runs and nothing is hooked; the reactor module is only
    looked up, never imported, because importing it would install one.
    """
    reactor = sys.modules.get("twisted.internet.reactor")
    if reactor is None or not getattr(reactor, "running", False):
        return
    from twisted.internet.defer import Deferred

    def before_shutdown():
        return Deferred.fromFuture(asyncio.ensure_future(engine.shutdown()))

    reactor.addSystemEventTrigger("before", "shutdown", before_shutdown)


_engines: PerLoop[Engine] = PerLoop(Engine)


def generation_engine() -> Engine:
    """The engine of the running event loop (one per server process under Daphne)."""
    return _engines.get()


async def generation_engine_close() -> None:
    """Wait for this loop's generations, then stop its listeners (tests; orderly shutdown)."""
    engine = _engines.pop()
    if engine is not None:
        await engine.wait_idle()
        await engine.close()
