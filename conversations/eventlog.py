"""The event log of each generation: what sockets read, from any position, on any process.

Embedded mode (no REDIS_URL, one server process): an in-process buffer. Scale mode: per
generation a Redis Stream of frames (XADD with an approximate MAXLEN cap) plus a string with the
text so far, written together in one MULTI so a snapshot (text, seq, stream id) is always
consistent; followers XREAD from the id of their snapshot, so nothing is missed or repeated.

Tokens never travel through the channel layer: channels-redis silently drops group messages once
a channel holds 100 of them, which a fast stream reaches in seconds.

Events: a delta `{seq, delta}` (seq 1, 2, ... without gaps) and a final `done` carrying the
`message.done` frame. Finished logs expire after CHAT_STREAM_RETENTION_SECONDS.
"""

import asyncio
import json
import weakref
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any, Protocol

import redis.asyncio as aioredis
from django.conf import settings

# A running generation refreshes its keys at every checkpoint; if its process dies they vanish
# after this long (well after the stale check has marked the message interrupted).
ACTIVE_TTL_SECONDS = 3600
# How long one XREAD waits before the follower checks that the stream still exists.
BLOCK_MS = 5000


@dataclass(frozen=True)
class Event:
    seq: int
    delta: str = ""
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
        """Add a delta; `text_so_far()` (the whole text, this delta included) rebuilds a log
        that was lost (Redis restarted without its data)."""
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
        self.deltas: list[str] = []
        self.done: dict[str, Any] | None = None
        self.changed = asyncio.Condition()


class MemoryEventLog:
    """One event loop's logs; the cursor is the number of deltas already read."""

    def __init__(self) -> None:
        self._buffers: dict[str, _Buffer] = {}

    async def open(self, generation: str) -> None:
        self._buffers[generation] = _Buffer()

    async def append(
        self, generation: str, *, seq: int, delta: str, text_so_far: Callable[[], str]
    ) -> None:
        buffer = self._buffers[generation]
        async with buffer.changed:
            buffer.deltas.append(delta)
            buffer.changed.notify_all()

    async def keepalive(self, generation: str) -> None:
        return None

    async def finish(self, generation: str, *, seq: int, done: dict[str, Any]) -> None:
        buffer = self._buffers.get(generation)
        if buffer is None:
            return
        async with buffer.changed:
            buffer.done = done
            buffer.changed.notify_all()
        asyncio.get_running_loop().call_later(
            settings.CHAT_STREAM_RETENTION_SECONDS, self._forget, generation, buffer
        )

    def _forget(self, generation: str, buffer: _Buffer) -> None:
        if self._buffers.get(generation) is buffer:
            del self._buffers[generation]

    async def discard(self, generation: str) -> None:
        self._buffers.pop(generation, None)

    async def snapshot(self, generation: str) -> Snapshot | None:
        buffer = self._buffers.get(generation)
        if buffer is None:
            return None
        seq = len(buffer.deltas)
        return Snapshot(content="".join(buffer.deltas), seq=seq, cursor=seq, done=buffer.done)

    async def follow(self, generation: str, cursor: Any = None) -> AsyncIterator[Event]:
        position = cursor or 0
        buffer = self._buffers.get(generation)
        if buffer is None:
            return
        while True:
            async with buffer.changed:
                await buffer.changed.wait_for(
                    lambda read=position: len(buffer.deltas) > read or buffer.done is not None
                )
                fresh = buffer.deltas[position:]
                done = buffer.done
            for delta in fresh:
                position += 1
                yield Event(seq=position, delta=delta)
            if done is not None and position == len(buffer.deltas):
                yield Event(seq=position, done=done)
                return


# A delta goes into the log only while its stream exists, atomically with that check (a script
# runs alone on the server). KEYS: stream, text. ARGV: delta, seq, maxlen. Returns 1 or 0.
_APPEND_IF_OPEN = """
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
redis.call('APPEND', KEYS[2], ARGV[1])
redis.call('XADD', KEYS[1], 'MAXLEN', '~', ARGV[3], '*', 'kind', 'delta', 'seq', ARGV[2],
           'delta', ARGV[1])
return 1
"""


class RedisEventLog:
    def __init__(self, url: str) -> None:
        # Reads wait up to BLOCK_MS in XREAD; the socket timeout must outlast that.
        self.redis = aioredis.from_url(
            url, decode_responses=True, socket_timeout=settings.REDIS_SOCKET_TIMEOUT
        )
        self._append_if_open = self.redis.register_script(_APPEND_IF_OPEN)

    @staticmethod
    def _keys(generation: str) -> tuple[str, str]:
        return f"chat:generation:{generation}:events", f"chat:generation:{generation}:text"

    async def open(self, generation: str) -> None:
        events, text = self._keys(generation)
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.delete(events)
            pipe.set(text, "", ex=ACTIVE_TTL_SECONDS)
            pipe.xadd(events, {"kind": "start", "seq": 0})
            pipe.expire(events, ACTIVE_TTL_SECONDS)
            await pipe.execute()

    async def append(
        self, generation: str, *, seq: int, delta: str, text_so_far: Callable[[], str]
    ) -> None:
        events, text = self._keys(generation)
        maxlen = settings.CHAT_STREAM_MAXLEN
        if await self._append_if_open(keys=[events, text], args=[delta, seq, maxlen]):
            return
        # Redis lost the log (restarted without its data): appending would leave a text key
        # holding only the deltas since, which a reader's snapshot would show as the whole
        # answer. The log starts again from the whole text; readers see the seq jump and take a
        # snapshot.
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.set(text, text_so_far(), ex=ACTIVE_TTL_SECONDS)
            pipe.xadd(events, {"kind": "start", "seq": seq})
            pipe.expire(events, ACTIVE_TTL_SECONDS)
            await pipe.execute()

    async def keepalive(self, generation: str) -> None:
        events, text = self._keys(generation)
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.expire(events, ACTIVE_TTL_SECONDS)
            pipe.expire(text, ACTIVE_TTL_SECONDS)
            await pipe.execute()

    async def finish(self, generation: str, *, seq: int, done: dict[str, Any]) -> None:
        events, text = self._keys(generation)
        retention = settings.CHAT_STREAM_RETENTION_SECONDS
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.xadd(events, {"kind": "done", "seq": seq, "done": json.dumps(done)})
            pipe.expire(events, retention)
            pipe.expire(text, retention)
            await pipe.execute()

    async def discard(self, generation: str) -> None:
        await self.redis.delete(*self._keys(generation))

    async def snapshot(self, generation: str) -> Snapshot | None:
        events, text = self._keys(generation)
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.get(text)
            pipe.xrevrange(events, count=1)
            content, last = await pipe.execute()
        if not last:
            return None
        entry_id, fields = last[0]
        done = json.loads(fields["done"]) if fields.get("kind") == "done" else None
        return Snapshot(content=content or "", seq=int(fields["seq"]), cursor=entry_id, done=done)

    async def follow(self, generation: str, cursor: Any = None) -> AsyncIterator[Event]:
        events, _ = self._keys(generation)
        position = cursor or "0-0"
        while True:
            answer = await self.redis.xread({events: position}, count=500, block=BLOCK_MS)
            if not answer:
                if not await self.redis.exists(events):
                    return
                continue
            for entry_id, fields in answer[0][1]:
                position = entry_id
                kind = fields.get("kind")
                seq = int(fields.get("seq", 0))
                if kind == "delta":
                    yield Event(seq=seq, delta=fields["delta"])
                elif kind == "done":
                    yield Event(seq=seq, done=json.loads(fields["done"]))
                    return

    async def close(self) -> None:
        await self.redis.aclose()


# Each event loop gets its own log: asyncio primitives and Redis connections belong to the loop
# that made them (one loop per process under Daphne; one per test under pytest).
_logs: "weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, EventLog]" = (
    weakref.WeakKeyDictionary()
)


def event_log() -> EventLog:
    loop = asyncio.get_running_loop()
    log = _logs.get(loop)
    if log is None:
        log = RedisEventLog(settings.REDIS_URL) if settings.REDIS_URL else MemoryEventLog()
        _logs[loop] = log
    return log


def event_log_is_shared() -> bool:
    """Whether other server processes read the same logs (Redis) or only this one (memory)."""
    return bool(settings.REDIS_URL)


async def event_log_close() -> None:
    """Close this loop's Redis connections (at the end of a loop's life, e.g. in tests)."""
    log = _logs.pop(asyncio.get_running_loop(), None)
    if isinstance(log, RedisEventLog):
        await log.close()
