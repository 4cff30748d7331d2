"""The event log of each generation: what sockets read, from any position, on any process.

Embedded mode (no REDIS_URL, one server process): an in-process buffer. Scale mode: per
generation a Redis Stream of frames (XADD with an approximate MAXLEN cap) plus a string with the
text so far, written together in one MULTI so a snapshot (text, seq, stream id) is always
consistent; followers read from the id of their snapshot, so nothing is missed or repeated.

The answers a process writes are kept in its memory too, and its own sockets follow them there
(the usual case: the socket that asked is on the process that writes): Redis is for the other
processes, and for sockets that come back on another one. A process reads every stream its
sockets follow from other processes with one blocking XREAD on one connection and hands the
entries to the sockets (`StreamReader`): a connection per socket would run any pool dry at a few
hundred sockets. Every write goes out in batches (`WriteBatcher`) through a pool of its own, so
a write never waits behind a reader, and a thousand answers starting at once need one connection,
not a thousand.

Tokens never travel through the channel layer: channels-redis silently drops group messages once
a channel holds 100 of them, which a fast stream reaches in seconds.

Events: a delta `{seq, delta}` (seq 1, 2, ... without gaps), a `snapshot` `{seq, content}` that
replaces the text (written after an append could not be, so no follower is left with a hole), and
a final `done` carrying the `message.done` frame. Finished logs expire after
CHAT_STREAM_RETENTION_SECONDS.
"""

import asyncio
import contextlib
import json
import logging
import time
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any, Protocol

import redis.asyncio as aioredis
from django.conf import settings
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

from chatsite.loops import PerLoop

logger = logging.getLogger(__name__)

# A running generation refreshes its keys at every checkpoint; if its process dies they vanish
# after this long (well after the stale check has marked the message interrupted).
ACTIVE_TTL_SECONDS = 3600
# How long one XREAD waits before the reader checks that quiet streams still exist.
BLOCK_MS = 5000
# Entries one XREAD takes from each stream.
READ_COUNT = 500
# Consecutive failed reads after which the reader gives up on its followers (each then starts
# over from a snapshot, see the consumer) instead of keeping them waiting.
READ_ATTEMPTS = 5
# The reader's XREAD names every stream the process follows, so one costs time in proportion to
# their number, in the client and in Redis. Unpaced, it ran again as soon as any one stream had
# a new entry: with a thousand answers streaming, thousands of XREADs a second each carrying
# two thousand arguments, for one or two entries apiece. Consecutive XREADs now start at least
# this long apart per followed stream (10 ms at 1,000 streams, 0.1 ms at 10): a token waits at
# most that long, and each read carries the entries of all the streams that advanced meanwhile.
READ_PACE_SECONDS_PER_STREAM = 0.00001
# How long a process keeps its in-memory copy of an answer it finished (scale mode), for the
# sockets that were following it to read the end.
LOCAL_KEEP_SECONDS = 10
# How long past BLOCK_MS one XREAD may take before the reader treats Redis as hung.
READ_GRACE_SECONDS = 5


def _retry() -> Retry:
    """One immediate retry on a broken connection (a pooled one that Redis closed), no more.

    redis-py's default retries ten times with growing pauses; under a hung Redis each try waits
    out the socket timeout, so one append could hold an answer for minutes. Our callers retry
    on their own terms (answers.best_effort, the reader's READ_ATTEMPTS)."""
    return Retry(NoBackoff(), 1)


@dataclass(frozen=True)
class Event:
    seq: int
    delta: str = ""
    # The whole text up to `seq`, replacing what came before (after an append was lost).
    snapshot: str | None = None
    # The message.done frame, on the last event only.
    done: dict[str, Any] | None = None


@dataclass(frozen=True)
class Snapshot:
    content: str
    seq: int
    cursor: Any
    done: dict[str, Any] | None


class EventLog(Protocol):
    async def open(self, generation: str) -> None: ...
    async def append(
        self, generation: str, *, seq: int, delta: str, text_so_far: Callable[[], str]
    ) -> None:
        """Add a delta; `text_so_far()` (the whole text, this delta included) starts the log
        again when it was lost (Redis restarted without its data)."""
        ...

    async def resync(self, generation: str, *, seq: int, content: str) -> None:
        """Record the whole text as of `seq` (after appends that could not be written)."""
        ...

    async def keepalive(self, generation: str) -> None: ...
    async def finish(self, generation: str, *, seq: int, done: dict[str, Any]) -> None: ...
    async def discard(self, generation: str) -> None: ...
    async def snapshot(self, generation: str) -> Snapshot | None: ...
    def follow(self, generation: str, cursor: Any = None) -> AsyncIterator[Event]:
        """Events after `cursor` (None: from the start) until `done` or the log disappears."""
        ...


class _Buffer:
    def __init__(self) -> None:
        self.events: list[Event] = []
        self.parts: list[str] = []
        self.length = 0
        self.seq = 0
        self.done: dict[str, Any] | None = None
        # Discarded or forgotten: its followers stop (and read the row instead).
        self.gone = False
        self.changed = asyncio.Condition()


class MemoryEventLog:
    """One event loop's logs; the cursor is the number of events already read.

    `keep_seconds`: how long a finished log stays (None: CHAT_STREAM_RETENTION_SECONDS, for
    late readers). `expire_seconds`: when set, a log that is never finished is dropped that long
    after it opened, as Redis expires its keys.
    """

    def __init__(
        self, *, keep_seconds: float | None = None, expire_seconds: float | None = None
    ) -> None:
        self._buffers: dict[str, _Buffer] = {}
        self.keep_seconds = keep_seconds
        self.expire_seconds = expire_seconds

    async def open(self, generation: str) -> None:
        buffer = self._buffers[generation] = _Buffer()
        if self.expire_seconds is not None:
            asyncio.get_running_loop().call_later(
                self.expire_seconds, self._forget, generation, buffer
            )

    def holds(self, generation: str) -> bool:
        return generation in self._buffers

    async def _add(self, generation: str, event: Event) -> None:
        buffer = self._buffers.get(generation)
        # A seq the buffer holds already is an append repeated after a failure elsewhere (see
        # RedisEventLog.append); a missing buffer, an answer discarded meanwhile.
        if buffer is None or event.seq <= buffer.seq:
            return
        async with buffer.changed:
            if event.snapshot is not None:
                buffer.parts = [event.snapshot]
                buffer.length = len(event.snapshot)
            else:
                buffer.parts.append(event.delta)
                buffer.length += len(event.delta)
            buffer.seq = event.seq
            buffer.events.append(event)
            buffer.changed.notify_all()

    async def append(
        self, generation: str, *, seq: int, delta: str, text_so_far: Callable[[], str]
    ) -> None:
        await self._add(generation, Event(seq=seq, delta=delta))

    async def resync(self, generation: str, *, seq: int, content: str) -> None:
        buffer = self._buffers.get(generation)
        if (
            buffer is not None
            and buffer.seq == seq - 1
            and content.startswith("".join(buffer.parts))
        ):
            # Nothing is missing here (only another copy of the log lost a frame): the new part
            # goes out as an ordinary delta.
            await self._add(generation, Event(seq=seq, delta=content[buffer.length :]))
        else:
            await self._add(generation, Event(seq=seq, snapshot=content))

    async def keepalive(self, generation: str) -> None:
        return None

    async def finish(self, generation: str, *, seq: int, done: dict[str, Any]) -> None:
        buffer = self._buffers.get(generation)
        if buffer is None:
            return
        async with buffer.changed:
            buffer.done = done
            buffer.changed.notify_all()
        keep = self.keep_seconds
        asyncio.get_running_loop().call_later(
            settings.CHAT_STREAM_RETENTION_SECONDS if keep is None else keep,
            self._forget,
            generation,
            buffer,
        )

    def _forget(self, generation: str, buffer: _Buffer) -> None:
        if self._buffers.get(generation) is buffer:
            del self._buffers[generation]
            if buffer.done is None:
                # Never finished here (its process's engine never ran it, or another process
                # ended it): whoever still follows it stops, and reads the row instead.
                buffer.gone = True
                asyncio.get_running_loop().create_task(_notify(buffer))

    async def discard(self, generation: str) -> None:
        buffer = self._buffers.pop(generation, None)
        if buffer is not None:
            buffer.gone = True
            await _notify(buffer)

    async def snapshot(self, generation: str) -> Snapshot | None:
        buffer = self._buffers.get(generation)
        if buffer is None:
            return None
        return Snapshot(
            content="".join(buffer.parts),
            seq=buffer.seq,
            cursor=len(buffer.events),
            done=buffer.done,
        )

    async def follow(self, generation: str, cursor: Any = None) -> AsyncIterator[Event]:
        position = cursor or 0
        buffer = self._buffers.get(generation)
        if buffer is None:
            return
        while True:
            async with buffer.changed:
                await buffer.changed.wait_for(
                    lambda read=position: (
                        len(buffer.events) > read or buffer.done is not None or buffer.gone
                    )
                )
                fresh = buffer.events[position:]
                done = buffer.done
            if buffer.gone and done is None and not fresh:
                return  # discarded: the consumer reads how the answer ended from its row
            for event in fresh:
                position += 1
                yield event
            if done is not None and position == len(buffer.events):
                yield Event(seq=buffer.seq, done=done)
                return


async def _notify(buffer: _Buffer) -> None:
    async with buffer.changed:
        buffer.changed.notify_all()


def _stream_id(entry_id: str) -> tuple[int, int]:
    milliseconds, _, sequence = entry_id.partition("-")
    return int(milliseconds), int(sequence or 0)


def _event_of(fields: dict[str, str]) -> Event | None:
    kind = fields.get("kind")
    seq = int(fields.get("seq", 0))
    if kind == "delta":
        return Event(seq=seq, delta=fields["delta"])
    if kind == "snapshot":
        return Event(seq=seq, snapshot=fields["content"])
    if kind == "done":
        return Event(seq=seq, done=json.loads(fields["done"]))
    return None  # the `start` marker


# What a subscription's queue carries besides lists of events: the stream is gone.
_VANISHED = object()


class _Subscription:
    """One socket's reading of one stream: the entries after `cursor`, through `queue`."""

    def __init__(self, stream: str, cursor: str) -> None:
        self.stream = stream
        self.cursor = cursor
        self.position = _stream_id(cursor)
        self.queue: asyncio.Queue[Any] = asyncio.Queue()


class StreamReader:
    """Every stream this process's sockets follow, read with one blocking XREAD on one connection
    and handed to the sockets' subscriptions.

    Each stream is read from the oldest cursor among its subscriptions; each subscription gets
    only the entries after its own cursor. A subscription added while the XREAD blocks wakes it
    through a stream of this reader's own (`wake`), so a new follower never waits out BLOCK_MS;
    that wake-up stream is read from its last id, so a wake-up sent just before the XREAD is not
    missed either.
    """

    def __init__(self, url: str, writer: aioredis.Redis, checker: aioredis.Redis) -> None:
        # The one connection that blocks; its socket timeout outlasts BLOCK_MS.
        self.connection = aioredis.Redis.from_url(
            url,
            decode_responses=True,
            socket_timeout=settings.REDIS_SOCKET_TIMEOUT,
            single_connection_client=True,
            retry=_retry(),
        )
        self.writer = writer
        self.checker = checker
        self.subscriptions: dict[str, list[_Subscription]] = {}
        self.wake_key = f"chat:reader:{uuid.uuid4().hex}:wake"
        self.wake_cursor = "0-0"
        self.blocked = False
        self.wake_sent = False
        self.has_work = asyncio.Event()
        self.last_entry: dict[str, float] = {}
        self.checked_at = time.monotonic()
        self.task: asyncio.Task[None] | None = None
        self.wake_task: asyncio.Task[None] | None = None

    def subscribe(self, stream: str, cursor: str) -> _Subscription:
        subscription = _Subscription(stream, cursor)
        self.subscriptions.setdefault(stream, []).append(subscription)
        self.last_entry.setdefault(stream, time.monotonic())
        self.has_work.set()
        if self.task is None or self.task.done():
            self.task = asyncio.create_task(self._run(), name="chat-stream-reader")
        elif self.blocked and not self.wake_sent:
            self.wake_sent = True
            self.wake_task = asyncio.create_task(self._wake())
        return subscription

    def unsubscribe(self, subscription: _Subscription) -> None:
        followers = self.subscriptions.get(subscription.stream)
        if followers is None or subscription not in followers:
            return
        followers.remove(subscription)
        if not followers:
            del self.subscriptions[subscription.stream]
            self.last_entry.pop(subscription.stream, None)

    async def _wake(self) -> None:
        try:
            async with self.writer.pipeline(transaction=False) as pipe:
                pipe.xadd(self.wake_key, {"wake": 1}, maxlen=10, approximate=True)
                pipe.expire(self.wake_key, ACTIVE_TTL_SECONDS)
                await pipe.execute()
        except Exception:
            logger.warning("stream reader: wake-up failed", exc_info=True)

    def _streams_to_read(self) -> dict[str, str]:
        streams = {
            stream: min(followers, key=lambda s: s.position).cursor
            for stream, followers in self.subscriptions.items()
        }
        streams[self.wake_key] = self.wake_cursor
        return streams

    async def _run(self) -> None:
        failures = 0
        started = float("-inf")
        while True:
            if not self.subscriptions:
                self.has_work.clear()
                await self.has_work.wait()
                continue
            gap = len(self.subscriptions) * READ_PACE_SECONDS_PER_STREAM
            if (wait := started + gap - time.monotonic()) > 0:
                await asyncio.sleep(wait)
            started = time.monotonic()
            streams = self._streams_to_read()
            self.blocked, self.wake_sent = True, False
            try:
                async with asyncio.timeout(BLOCK_MS / 1000 + READ_GRACE_SECONDS):
                    answer = await self.connection.xread(streams, count=READ_COUNT, block=BLOCK_MS)
                # Inside the try: a bug in handing over entries must not end this task, which
                # would leave every follower of the process waiting forever.
                self._deliver(answer, streams)
                failures = 0
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                failures += 1
                logger.warning("stream reader: reading failed (%d)", failures, exc_info=True)
                if failures >= READ_ATTEMPTS:
                    self._fail_everyone(exc)
                    failures = 0
                await asyncio.sleep(0.1 * 2**failures)
                continue
            finally:
                self.blocked = False
            await self._end_vanished()

    def _deliver(self, answer: Any, streams: dict[str, str]) -> None:
        # RESP2 answers a list of [stream, entries]; RESP3 a mapping.
        for stream, entries in answer.items() if isinstance(answer, dict) else answer or ():
            if not entries:
                continue
            if stream == self.wake_key:
                self.wake_cursor = entries[-1][0]
                continue
            followers = self.subscriptions.get(stream)
            if not followers:
                continue
            self.last_entry[stream] = time.monotonic()
            read_from = _stream_id(streams[stream])
            parsed = [(_stream_id(entry_id), entry_id, fields) for entry_id, fields in entries]
            for subscription in followers:
                # One that subscribed from further back while this read was under way would
                # miss the entries in between: the next read starts from its cursor.
                if subscription.position >= read_from:
                    self._hand_over(subscription, parsed)

    @staticmethod
    def _hand_over(subscription: _Subscription, parsed: list) -> None:
        events = []
        for position, entry_id, fields in parsed:
            if position <= subscription.position:
                continue
            subscription.position, subscription.cursor = position, entry_id
            event = _event_of(fields)
            if event is not None:
                events.append(event)
        if events:
            subscription.queue.put_nowait(events)

    async def _end_vanished(self) -> None:
        """Followers of a stream that has not moved for BLOCK_MS and no longer exists (expired,
        or discarded) are told so, at most once per BLOCK_MS."""
        now = time.monotonic()
        if now - self.checked_at < BLOCK_MS / 1000:
            return
        self.checked_at = now
        quiet = [
            stream for stream, moved in self.last_entry.items() if now - moved >= BLOCK_MS / 1000
        ]
        if not quiet:
            return
        try:
            async with self.checker.pipeline(transaction=False) as pipe:
                for stream in quiet:
                    pipe.exists(stream)
                found = await pipe.execute()
        except Exception:
            logger.warning("stream reader: checking for expired streams failed", exc_info=True)
            return
        for stream, exists in zip(quiet, found, strict=True):
            if not exists:
                for subscription in self.subscriptions.pop(stream, []):
                    subscription.queue.put_nowait(_VANISHED)
                self.last_entry.pop(stream, None)

    def _fail_everyone(self, exc: Exception) -> None:
        for followers in self.subscriptions.values():
            for subscription in followers:
                subscription.queue.put_nowait(exc)
        self.subscriptions.clear()
        self.last_entry.clear()

    async def close(self) -> None:
        if self.task is not None:
            self.task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self.task
        await self.connection.aclose()


def _pool(url: str, size: int) -> aioredis.Redis:
    """A client whose commands wait for one of `size` connections instead of failing when all
    are busy (redis-py's default pool raises "Too many connections")."""
    pool = aioredis.BlockingConnectionPool.from_url(
        url,
        max_connections=size,
        timeout=settings.REDIS_POOL_WAIT_SECONDS,
        decode_responses=True,
        socket_timeout=settings.REDIS_SOCKET_TIMEOUT,
        retry=_retry(),
    )
    return aioredis.Redis(connection_pool=pool)


class WriteBatcher:
    """Every event-log write of this process, sent to Redis together: whatever was asked while
    the previous batch was on its way goes out as one MULTI, on one connection of the pool.

    A frame per answer per interval, for a thousand answers, is tens of thousands of appends a
    second; one round trip each spent most of the process's CPU in the Redis client. And when a
    thousand people pressed Enter at once, each start opened its log on a connection of its own:
    past the pool's size they queued for one, and past REDIS_POOL_WAIT_SECONDS a quarter of them
    failed. Each caller still waits for (and gets) the replies to its own commands, or the
    batch's error, and retries on its own terms.
    """

    def __init__(self, redis: aioredis.Redis) -> None:
        self.redis = redis
        self.pending: list[tuple[Callable[[Any], object], asyncio.Future[list[Any]]]] = []
        self.writing = False
        self.task: asyncio.Task[None] | None = None

    async def write(self, stage: Callable[[Any], object]) -> list[Any]:
        """Have `stage(pipeline)` queue its commands in the next batch; their replies."""
        done: asyncio.Future[list[Any]] = asyncio.get_running_loop().create_future()
        self.pending.append((stage, done))
        if not self.writing:
            self.writing = True
            self.task = asyncio.create_task(self._write())
        return await done

    async def _write(self) -> None:
        try:
            while self.pending:
                # A write whose caller gave up (a timed-out attempt, retried on its own) is not
                # sent: while Redis is slow those would only make every batch longer.
                batch = [entry for entry in self.pending if not entry[1].cancelled()]
                self.pending = []
                if not batch:
                    continue
                try:
                    replies = await self._write_batch(batch)
                except Exception as exc:
                    for _, done in batch:
                        if not done.done():
                            done.set_exception(exc)
                else:
                    for (_, done), reply in zip(batch, replies, strict=True):
                        if not done.done():
                            done.set_result(reply)
        finally:
            self.writing = False

    async def _write_batch(self, batch: list) -> list[list[Any]]:
        async with self.redis.pipeline(transaction=True) as pipe:
            counts = []
            for stage, _ in batch:
                queued = len(pipe)
                stage(pipe)
                counts.append(len(pipe) - queued)
            flat = await pipe.execute()
        replies, at = [], 0
        for count in counts:
            replies.append(flat[at : at + count])
            at += count
        return replies


# One delta into an answer's log, atomically (a script runs alone on the server). KEYS: the
# stream, the text key; ARGV: delta, seq, maxlen. Returns 0, writing nothing, when the stream is
# gone (Redis lost it: the text key would then hold only the deltas since, so the caller starts
# the log again from the whole text), else 1. A seq the stream already holds is not written
# again, so an append retried after its reply was lost never doubles the text. Sent with EVAL
# rather than EVALSHA: inside a MULTI, a script that is not loaded cannot be loaded on the spot.
_APPEND = """
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
local last = redis.call('XREVRANGE', KEYS[1], '+', '-', 'COUNT', 1)[1]
if last then
  local fields = last[2]
  for i = 1, #fields, 2 do
    if fields[i] == 'seq' and tonumber(fields[i + 1]) >= tonumber(ARGV[2]) then return 1 end
  end
end
redis.call('APPEND', KEYS[2], ARGV[1])
redis.call('XADD', KEYS[1], 'MAXLEN', '~', ARGV[3], '*', 'kind', 'delta', 'seq', ARGV[2],
           'delta', ARGV[1])
return 1
"""


class RedisEventLog:
    # Whether this process's sockets follow the answers it writes from memory. Tests turn it
    # off to read every answer through Redis, as a socket on another process does.
    local_reads = True

    def __init__(self, url: str) -> None:
        # Every write of an answer's: never behind a reader.
        self.redis = _pool(url, settings.CHAT_REDIS_WRITE_CONNECTIONS)
        # Snapshots and existence checks: short reads, never blocking.
        self.reads = _pool(url, settings.CHAT_REDIS_READ_CONNECTIONS)
        self.reader = StreamReader(url, writer=self.redis, checker=self.reads)
        self.writes = WriteBatcher(self.redis)
        # The answers this process writes, as the in-process log keeps them: followed here
        # without a round trip through Redis, and without the reader's pace. Only while they
        # run and shortly after: late readers have Redis's copy, and a copy per finished
        # answer for CHAT_STREAM_RETENTION_SECONDS would cost a busy process gigabytes.
        self.local = MemoryEventLog(keep_seconds=LOCAL_KEEP_SECONDS, expire_seconds=_expiry())

    @staticmethod
    def _keys(generation: str) -> tuple[str, str]:
        return f"chat:generation:{generation}:events", f"chat:generation:{generation}:text"

    async def open(self, generation: str) -> None:
        events, text = self._keys(generation)

        def stage(pipe) -> None:
            pipe.delete(events)
            pipe.set(text, "", ex=ACTIVE_TTL_SECONDS)
            pipe.xadd(events, {"kind": "start", "seq": 0})
            pipe.expire(events, ACTIVE_TTL_SECONDS)

        await self.writes.write(stage)
        await self.local.open(generation)

    async def append(
        self, generation: str, *, seq: int, delta: str, text_so_far: Callable[[], str]
    ) -> None:
        # Here first: a follower on this process never waits for Redis. Repeated (the engine
        # retries an append whose Redis write failed), it is written here once.
        await self.local.append(generation, seq=seq, delta=delta, text_so_far=text_so_far)
        events, text = self._keys(generation)
        maxlen = settings.CHAT_STREAM_MAXLEN
        [existed] = await self.writes.write(
            lambda pipe: pipe.eval(_APPEND, 2, events, text, delta, seq, maxlen)
        )
        if existed:
            return
        # Redis lost the log (restarted without its data): the text key now holds only this
        # delta, which a reader's snapshot would show as the whole answer. The log starts again
        # from the whole text, as a snapshot that followers apply.
        await self._resync_shared(generation, seq=seq, content=text_so_far())

    async def resync(self, generation: str, *, seq: int, content: str) -> None:
        await self.local.resync(generation, seq=seq, content=content)
        await self._resync_shared(generation, seq=seq, content=content)

    async def _resync_shared(self, generation: str, *, seq: int, content: str) -> None:
        events, text = self._keys(generation)

        def stage(pipe) -> None:
            pipe.set(text, content, ex=ACTIVE_TTL_SECONDS)
            pipe.xadd(
                events,
                {"kind": "snapshot", "seq": seq, "content": content},
                maxlen=settings.CHAT_STREAM_MAXLEN,
                approximate=True,
            )
            # The stream may have been made anew by this write (after Redis lost it).
            pipe.expire(events, ACTIVE_TTL_SECONDS)

        await self.writes.write(stage)

    async def keepalive(self, generation: str) -> None:
        events, text = self._keys(generation)

        def stage(pipe) -> None:
            pipe.expire(events, ACTIVE_TTL_SECONDS)
            pipe.expire(text, ACTIVE_TTL_SECONDS)

        await self.writes.write(stage)

    async def finish(self, generation: str, *, seq: int, done: dict[str, Any]) -> None:
        events, text = self._keys(generation)
        retention = settings.CHAT_STREAM_RETENTION_SECONDS

        def stage(pipe) -> None:
            pipe.xadd(events, {"kind": "done", "seq": seq, "done": json.dumps(done)})
            pipe.expire(events, retention)
            pipe.expire(text, retention)

        # Redis first: a follower here that has the done frame may have its page reloaded on
        # another process, which must find the log ended too.
        try:
            await self.writes.write(stage)
        finally:
            await self.local.finish(generation, seq=seq, done=done)

    async def discard(self, generation: str) -> None:
        await self.local.discard(generation)
        await self.writes.write(lambda pipe: pipe.delete(*self._keys(generation)))

    async def snapshot(self, generation: str) -> Snapshot | None:
        if self.local_reads and self.local.holds(generation):
            return await self.local.snapshot(generation)
        events, text = self._keys(generation)
        async with self.reads.pipeline(transaction=True) as pipe:
            pipe.get(text)
            pipe.xrevrange(events, count=1)
            content, last = await pipe.execute()
        if not last:
            return None
        entry_id, fields = last[0]
        done = json.loads(fields["done"]) if fields.get("kind") == "done" else None
        return Snapshot(content=content or "", seq=int(fields["seq"]), cursor=entry_id, done=done)

    def follow(self, generation: str, cursor: Any = None) -> AsyncIterator[Event]:
        # A cursor is a position in the copy it came from: a number in this process's memory,
        # a stream id in Redis.
        if isinstance(cursor, int) or (
            cursor is None and self.local_reads and self.local.holds(generation)
        ):
            return self.local.follow(generation, cursor)
        return self._follow_shared(generation, cursor)

    async def _follow_shared(self, generation: str, cursor: str | None) -> AsyncIterator[Event]:
        events, _ = self._keys(generation)
        subscription = self.reader.subscribe(events, cursor or "0-0")
        try:
            while True:
                item = await subscription.queue.get()
                if item is _VANISHED:
                    return
                if isinstance(item, Exception):
                    raise item
                for event in item:
                    yield event
                    if event.done is not None:
                        return
        finally:
            self.reader.unsubscribe(subscription)

    async def close(self) -> None:
        await self.reader.close()
        await self.redis.aclose(close_connection_pool=True)
        await self.reads.aclose(close_connection_pool=True)


def _expiry() -> float:
    """When an in-memory log that was never finished is dropped: after any answer has ended."""
    return max(ACTIVE_TTL_SECONDS, settings.CHAT_MAX_ANSWER_SECONDS + 60)


def _new_event_log() -> EventLog:
    if settings.REDIS_URL:
        return RedisEventLog(settings.REDIS_URL)
    return MemoryEventLog(expire_seconds=_expiry())


# Each event loop gets its own log: asyncio primitives and Redis connections belong to its loop.
_logs: PerLoop[EventLog] = PerLoop(_new_event_log)


def event_log() -> EventLog:
    return _logs.get()


def event_log_is_shared() -> bool:
    """Whether other server processes read the same logs (Redis) or only this one (memory)."""
    return bool(settings.REDIS_URL)


async def event_log_close() -> None:
    """Close this loop's Redis connections (at the end of a loop's life, e.g. in tests)."""
    log = _logs.pop()
    if isinstance(log, RedisEventLog):
        await log.close()
