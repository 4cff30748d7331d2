"""The generation engine: one asyncio task per answer, independent of any socket.

A generation reads the provider's stream through a pump task into a queue, coalesces tokens into
frames (a token arriving more than CHAT_FRAME_INTERVAL_MS after the last frame goes out at once,
later ones at the end of the interval: at most one frame per interval), appends each frame to the
answer's event log (conversations.eventlog) for every subscriber on every process to read, and
saves the partial text in the background at most once per CHAT_CHECKPOINT_SECONDS. Whatever ends
it (the provider finishing or failing, a stop, the process shutting down) the text so far is kept.

Control messages go through the channel layer, never tokens (see eventlog for why):
- `chat.conversation.<id>` groups reach the sockets subscribed to a conversation: new messages,
  title changes, and answers that ended without an event log (the stale sweep);
- `chat.generation.<id>` groups reach the process running an answer: stop requests from any tab on
  any process.
"""

import asyncio
import html
import logging
import sys
import time
import uuid
import weakref
from contextlib import aclosing, suppress
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from asgiref.sync import sync_to_async
from channels.layers import get_channel_layer
from django.conf import settings
from django.utils import timezone

from attachments.content import has_images
from attachments.services import exchange_with_images
from chatsite.db import db_call
from conversations import frames, selectors, services, titles
from conversations.checkpoints import CheckpointWriter
from conversations.errors import ChatError
from conversations.eventlog import event_log, event_log_is_shared
from conversations.groups import conversation_group, generation_group
from conversations.models import Message
from conversations.protocol import ChatEdit, ChatRegenerate, ChatSend
from conversations.rendering import render_markdown
from conversations.services import Exchange
from providers.errors import ProviderError
from providers.services import stream_chat
from providers.types import ProviderInfo, Usage

logger = logging.getLogger(__name__)

# The final save is retried this many times (with a short pause) before the answer is left to the
# stale sweep, which keeps its last checkpoint.
FINISH_ATTEMPTS = 3
TITLE_MAX_CHARS = 80


def log_key(message_id: uuid.UUID) -> str:
    return message_id.hex


@dataclass(frozen=True)
class _Failure:
    error: ProviderError


_END = object()
_STOP = object()
# The server is shutting down: end the answer as `interrupted`, saving what it has.
_SHUTDOWN = object()
# Event-log writes are retried this often before a frame is given up on (the text is still
# kept and saved; readers of the log resynchronise from a snapshot).
LOG_ATTEMPTS = 3
# How long one event-log or channel-layer call may take before it counts as failed.
LOG_CALL_SECONDS = 5.0


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


def _answer_too_long() -> ProviderError:
    minutes = settings.CHAT_MAX_ANSWER_SECONDS / 60
    length = f"{minutes:g} minutes" if minutes >= 1 else f"{settings.CHAT_MAX_ANSWER_SECONDS:g} s"
    return ProviderError(
        f"The answer took longer than {length}, the most an answer may take, and was ended.",
        code="answer_too_long",
    )


async def _with_idle_limit(stream, seconds: float):
    """The stream's chunks; once the first has come, a wait of more than `seconds` for the next
    ends it with a ProviderError (`answer_idle`). The first chunk may take as long as the
    provider's own timeout allows (a model may think, or queue, before it writes)."""
    chunk = await anext(stream, _END)
    while chunk is not _END:
        yield chunk
        try:
            chunk = await asyncio.wait_for(anext(stream, _END), seconds)
        except ProviderError:
            raise
        except TimeoutError:
            raise ProviderError(
                f"The provider sent nothing for {seconds:g} seconds, so the answer was ended.",
                code="answer_idle",
            ) from None


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
                async for chunk in _with_idle_limit(stream, settings.CHAT_ANSWER_IDLE_SECONDS):
                    self.queue.put_nowait(chunk)
        except ProviderError as exc:
            self.queue.put_nowait(_Failure(exc))
        except TimeoutError:
            self.queue.put_nowait(_Failure(_answer_too_long()))
        except Exception:
            logger.exception("generation %s: the provider stream failed", self.message_id)
            self.queue.put_nowait(_Failure(ProviderError(code="internal")))
        else:
            self.queue.put_nowait(_END)

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
        log = event_log()
        key = log_key(self.message_id)
        interval = settings.CHAT_FRAME_INTERVAL_MS / 1000
        checkpoint_every = settings.CHAT_CHECKPOINT_SECONDS
        # A generation that is alive but silent (a slow first token) still refreshes its row, so
        # the stale sweep never mistakes it for one whose process died.
        liveness_every = liveness_seconds()
        pending: list[str] = []
        last_flush = float("-inf")
        last_save = last_live = time.monotonic()
        saved_len = 0
        status, failure = Message.Status.COMPLETE, None
        pump = asyncio.create_task(self._pump())
        try:
            while True:
                now = time.monotonic()
                deadline = last_live + liveness_every
                if pending:
                    deadline = min(deadline, last_flush + interval)
                try:
                    item = await asyncio.wait_for(self.queue.get(), max(0.0, deadline - now))
                except TimeoutError:
                    item = None
                now = time.monotonic()
                if isinstance(item, str):
                    if item:
                        pending.append(item)
                elif item is _STOP:
                    status = Message.Status.STOPPED
                    break
                elif item is _END:
                    break
                elif item is _SHUTDOWN:
                    status = Message.Status.INTERRUPTED
                    failure = ProviderError(services.INTERRUPTED_DETAIL, code="interrupted")
                    break
                elif isinstance(item, _Failure):
                    status, failure = Message.Status.ERROR, item.error
                    break
                elif isinstance(item, ProviderInfo):
                    self.provider, self.model = item.provider, item.model
                elif isinstance(item, Usage):
                    self.usage = item
                if pending and now - last_flush >= interval:
                    await self._flush(log, key, pending)
                    last_flush = now
                # The length is kept as frames go out: joining the text on every token would
                # cost a long answer quadratic time.
                # On the shared clock's ticks, not this answer's own: every running answer then
                # asks at about the same moment, and the engine's writer saves them together.
                if now // checkpoint_every != last_save // checkpoint_every and (
                    self.length != saved_len
                ):
                    saved_len = self.length
                    self._save_in_background(self.content)
                    last_save = now
                if now - last_live >= liveness_every:
                    # The row's stamp (when no text changed) and the log's expiry, so neither
                    # a silent provider nor an hour of steady output looks like a dead process.
                    if saved_len == self.length:
                        self._save_in_background(None)
                    await best_effort("event log keepalive", lambda: log.keepalive(key))
                    last_live = now
        except asyncio.CancelledError:
            # The process is shutting down: keep what was written; the row becomes `interrupted`.
            pump.cancel()
            with suppress(Exception):
                await asyncio.shield(self._interrupt_on_shutdown(log, key, pending))
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

    async def _flush(self, log, key: str, pending: list[str]) -> None:
        delta = "".join(pending)
        pending.clear()
        self.seq += 1
        self.parts.append(delta)
        self.length += len(delta)
        await self._log_write(log, key)

    async def _log_write(self, log, key: str) -> None:
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

    async def _finish(self, log, key: str, status: str, failure: ProviderError | None) -> None:
        if self._checkpoint is not None:
            with suppress(Exception):
                await self._checkpoint
        content = self.content
        error_code, error_detail = "", ""
        if failure is not None:
            error_code, error_detail = failure.code, str(failure)
            if status == Message.Status.ERROR:
                # Users are told a fixed sentence (conversations.errors); the detail is here and
                # in the admin.
                logger.warning(
                    "answer %s failed: %s: %s", self.message_id, error_code, error_detail
                )
        usage = self.usage
        # Rendered once, here: the done frame and every later page view use this copy.
        content_html = await render_html(content)
        fields = {
            "message_id": self.message_id,
            "content": content,
            "status": status,
            "provider": self.provider,
            "model": self.model,
            "prompt_tokens": usage.prompt_tokens if usage else None,
            "completion_tokens": usage.completion_tokens if usage else None,
            "error_code": error_code,
            "error_detail": error_detail,
            "content_html": content_html,
        }
        await best_effort(
            f"saving answer {self.message_id}",
            lambda: db_call(services.message_finish, writes=True)(**fields),
            attempts=FINISH_ATTEMPTS,
            pause=0.2,
            # A save cut short would go on in its thread while the next attempt starts.
            per_attempt=None,
        )
        # After the save: the text is safe in the database before the log is caught up.
        if self.log_behind:
            await self._log_write(log, key)
        done = frames.message_done(
            message_id=self.message_id,
            conversation_id=self.conversation_id,
            status=status,
            content=content,
            html=content_html,
            prompt_tokens=fields["prompt_tokens"],
            completion_tokens=fields["completion_tokens"],
            error_code=error_code,
            error_detail=error_detail,
            provider=self.provider,
            model=self.model,
        )
        await best_effort("event log finish", lambda: log.finish(key, seq=self.seq, done=done))
        # Also to the conversation's sockets directly: one whose reading of the log failed (or
        # that could not read it at all) still learns that the answer ended.
        await best_effort(
            "announcing the end",
            lambda: get_channel_layer().group_send(
                conversation_group(self.conversation_id),
                {"type": "chat.message.done", "frame": done},
            ),
        )

    async def finish_after_crash(self) -> None:
        """A bug in the engine itself: save what there is as an error, tell the sockets."""
        failure = ProviderError("Something went wrong while writing this answer.", code="internal")
        await self._finish(event_log(), log_key(self.message_id), Message.Status.ERROR, failure)

    async def _interrupt_on_shutdown(self, log, key: str, pending: list[str]) -> None:
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
        self._background: list[asyncio.Task[Any]] = []
        self.checkpoints = CheckpointWriter()

    async def ensure_started(self) -> None:
        async with self._started:
            if self._channel is not None:
                return
            layer = get_channel_layer()
            self._channel = await layer.new_channel()
            self._background = [
                asyncio.create_task(self._listen(), name="chat-engine-listen"),
                asyncio.create_task(self._sweep_forever(), name="chat-engine-sweep"),
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
            if message.get("type") == "generation.stop":
                with suppress(ValueError, KeyError, TypeError):
                    generation = self.generations.get(uuid.UUID(message["message"]))
                    if generation is not None:
                        generation.stop()

    async def _sweep_forever(self) -> None:
        every = max(1.0, settings.CHAT_STALE_STREAM_SECONDS / 2)
        while True:
            await asyncio.sleep(every)
            try:
                await generation_recover_stale(engine=self)
            except asyncio.CancelledError:
                raise
            except Exception:
                logger.warning("chat engine: stale sweep failed", exc_info=True)

    async def register(self, generation: Generation) -> None:
        """Make the answer stoppable here at once; from other processes once its stop group is
        joined (see generation_start for the order)."""
        await self.ensure_started()
        self.generations[generation.message_id] = generation

    async def join_stop_group(self, generation: Generation) -> None:
        await best_effort(
            "joining the stop group",
            lambda: get_channel_layer().group_add(
                generation_group(generation.message_id), self._channel
            ),
        )

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
            try:
                await generation.finish_after_crash()
            except Exception:
                # The stale sweep will still end it, keeping its last checkpoint.
                logger.exception(
                    "generation %s: could not save after a crash", generation.message_id
                )
        finally:
            self.generations.pop(generation.message_id, None)
            with suppress(Exception):
                await get_channel_layer().group_discard(
                    generation_group(generation.message_id), self._channel
                )
        if generation.exchange.title_source:
            try:
                await _title_conversation(generation)
            except Exception:
                logger.warning("generation %s: title failed", generation.message_id, exc_info=True)

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

    async def close(self) -> None:
        for task in self._background:
            task.cancel()
        for task in self._background:
            with suppress(asyncio.CancelledError, Exception):
                await task
        self._background = []
        self._channel = None


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


_engines: "weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, Engine]" = (
    weakref.WeakKeyDictionary()
)


def generation_engine() -> Engine:
    """The engine of the running event loop (one per server process under Daphne)."""
    loop = asyncio.get_running_loop()
    engine = _engines.get(loop)
    if engine is None:
        engine = _engines[loop] = Engine()
    return engine


async def generation_engine_close() -> None:
    """Wait for this loop's generations, then stop its listeners (tests; orderly shutdown)."""
    engine = _engines.pop(asyncio.get_running_loop(), None)
    if engine is not None:
        await engine.wait_idle()
        await engine.close()


# --- Starting, stopping ----------------------------------------------------------------------


async def exchange_open(*, user, request: ChatSend | ChatRegenerate | ChatEdit) -> Exchange:
    """Save the user message and the answer's placeholder (one transaction) and open its event
    log. The log opens first, under the answer's id chosen here, so a socket that sees the
    committed `streaming` row always finds its log."""
    assistant_id = uuid.uuid4()
    log = event_log()
    await log.open(log_key(assistant_id))
    try:
        if isinstance(request, ChatSend):
            exchange = await db_call(services.message_send, writes=True)(
                user=user, request=request, assistant_id=assistant_id
            )
        elif isinstance(request, ChatRegenerate):
            exchange = await db_call(services.message_regenerate, writes=True)(
                user=user, message_id=request.message, assistant_id=assistant_id
            )
        else:
            exchange = await db_call(services.message_edit, writes=True)(
                user=user,
                message_id=request.message,
                content=request.content,
                assistant_id=assistant_id,
            )
    except BaseException:
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


async def generation_start(*, exchange: Exchange) -> Generation:
    """Start writing the answer, then announce its messages to the conversation's other sockets
    (the socket that asked hears of them directly, see the consumer).

    The upstream request goes out before any channel-layer round trip: when hundreds of answers
    start at once those round trips queue for the layer's connections, and the first token must
    not wait behind them. A stop from this process works at once (the engine's own table); the
    stop group, which carries stops from other processes, is joined before other tabs hear of
    the answer, so no tab can ask to stop an answer its process does not yet listen for."""
    generation = Generation(exchange)
    engine = generation_engine()
    await engine.register(generation)
    engine.launch(generation)
    engine.run_in_background(_announce(engine, generation))
    return generation


async def _announce(engine: Engine, generation: Generation) -> None:
    await engine.join_stop_group(generation)
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
            conversation_group(exchange.conversation.id),
            {"type": "chat.messages.created", "frames": created},
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
    await get_channel_layer().group_send(
        generation_group(message_id), {"type": "generation.stop", "message": str(message_id)}
    )
    # A live answer saves its row at least every liveness interval. One that has not is on a
    # process that died: nobody will act on the stop, so end it here, as the user asked.
    saved = message.checkpointed_at
    if saved is None or (timezone.now() - saved).total_seconds() > liveness_seconds() + 2:
        await message_interrupt_and_announce(message_id=message_id, stopped=True)


def stale_cutoff() -> datetime:
    """A `streaming` answer last saved before this belongs to a process that died."""
    return timezone.now() - timedelta(seconds=settings.CHAT_STALE_STREAM_SECONDS)


def liveness_seconds() -> float:
    """How often a running answer refreshes its row even when no text arrives."""
    return max(1.0, settings.CHAT_STALE_STREAM_SECONDS / 3)


# --- Answers whose process died ----------------------------------------------------------------


async def message_interrupt_and_announce(*, message_id: uuid.UUID, stopped: bool = False) -> bool:
    """End a `streaming` answer nobody writes any more (`interrupted`, or `stopped` when its
    user asked), keeping the most text known (its event log may hold more than its last
    checkpoint), and tell its sockets."""
    log = event_log()
    key = log_key(message_id)
    snapshot = await log.snapshot(key)
    content = snapshot.content if snapshot is not None and snapshot.done is None else None
    if not await db_call(services.message_interrupt, writes=True)(
        message_id=message_id, content=content, stopped=stopped
    ):
        return False
    message = await db_call(selectors.message_get)(message_id=message_id)
    if message is None:
        return False
    done = frames.message_done_from_row(message, html=await render_html(message.content))
    if snapshot is not None and snapshot.done is None:
        await best_effort("event log finish", lambda: log.finish(key, seq=snapshot.seq, done=done))
    await best_effort(
        "announcing the end",
        lambda: get_channel_layer().group_send(
            conversation_group(message.conversation_id),
            {"type": "chat.message.done", "frame": done},
        ),
    )
    logger.info("answer %s ended as %s (its process is gone)", message_id, message.status)
    return True


async def generation_recover_stale(*, engine: Engine | None = None) -> int:
    """Interrupt `streaming` answers not saved for CHAT_STALE_STREAM_SECONDS (their process
    died); answers running in this loop are skipped. Returns how many were interrupted."""
    engine = engine or generation_engine()
    ids = await db_call(selectors.message_ids_stale_streaming)(saved_before=stale_cutoff())
    count = 0
    for message_id in ids:
        if message_id in engine.generations:
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


# --- Titles ------------------------------------------------------------------------------------


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
    return title[:TITLE_MAX_CHARS] or None


async def _title_conversation(generation: Generation) -> None:
    text = generation.exchange.title_source or ""
    title = await _title_from_provider(text) or titles.title_from_text(text)
    conversation = await db_call(services.conversation_title_set_if_empty, writes=True)(
        conversation_id=generation.conversation_id, title=title
    )
    if conversation is not None:
        await get_channel_layer().group_send(
            conversation_group(generation.conversation_id),
            {
                "type": "chat.conversation.updated",
                "frame": frames.conversation_updated(frames.conversation_data(conversation)),
            },
        )
