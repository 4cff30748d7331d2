"""Event logs under load and under failure, as the sockets see them: every answer arrives whole,
seq without gaps, or (after a write that could not be made) as a snapshot, never with a hole."""

import asyncio
import json
import uuid

import pytest
from channels.db import database_sync_to_async
from channels.testing import WebsocketCommunicator

from chatsite.asgi import application
from conversations import answers
from conversations.eventlog import event_log
from conversations.models import Conversation
from tests.conversations.conftest import FRAME_TIMEOUT, ORIGIN
from tests.live_server import session_cookie

pytestmark = pytest.mark.django_db(transaction=True)

REPLY = " ".join(f"token{i}" for i in range(30))


async def open_sockets(cookie: str, count: int) -> list[WebsocketCommunicator]:
    sockets = []
    for _ in range(count):
        socket = WebsocketCommunicator(
            application, "/ws/chat/", headers=[ORIGIN, (b"cookie", cookie.encode())]
        )
        connected, code = await socket.connect(timeout=FRAME_TIMEOUT)
        assert connected, f"socket refused with {code}"
        sockets.append(socket)
    return sockets


async def receive(socket: WebsocketCommunicator) -> dict:
    return json.loads(await socket.receive_from(FRAME_TIMEOUT))


async def frames_until_done(socket: WebsocketCommunicator) -> list[dict]:
    """Every frame about the conversation's answer, from its message.created to its done."""
    seen = []
    while not seen or seen[-1]["type"] != "message.done":
        frame = await receive(socket)
        if frame["type"] in ("message.delta", "message.snapshot", "message.done"):
            seen.append(frame)
    return seen


def assert_whole(frames: list[dict], reply: str) -> None:
    *deltas, done = frames
    assert [frame["type"] for frame in deltas] == ["message.delta"] * len(deltas)
    assert [frame["seq"] for frame in deltas] == list(range(1, len(deltas) + 1))
    assert "".join(frame["delta"] for frame in deltas) == reply
    assert (done["status"], done["content"]) == ("complete", reply)


async def answer_with_two_tries(open_socket, user, fake_upstream, monkeypatch):
    """One question answered with each event-log write tried twice; the answer's delta and
    snapshot frames, and its done frame."""
    monkeypatch.setattr(answers, "LOG_ATTEMPTS", 2)
    fake_upstream.behave(reply=REPLY, chunk_delay=0.05)
    socket = await open_socket(user)
    await socket.send("chat.send", conversation=None, parent=None, content="Go")
    frames = await socket.receive_until("message.done")
    stream = [frame for frame in frames if frame["type"] in ("message.delta", "message.snapshot")]
    return stream, frames[-1]


@pytest.mark.redis
@pytest.mark.parametrize("followers", ["here", "as on another process"])
async def test_500_sockets_on_one_process_get_every_answer_whole_through_a_small_pool(
    clean_engine, view_thread_connections, ada, chat_config, fake_upstream, settings, request,
    followers,
):  # fmt: skip
    """One Redis connection per following socket ran the pool dry past ~100 sockets: followers
    failed, appends waited and were given up, answers arrived with holes. Sockets follow the
    answers of their own process from its memory, and others' through the process's one
    reader of Redis: both ways, every answer arrives whole."""
    if followers != "here":
        request.getfixturevalue("reads_through_redis")
    settings.CHAT_REDIS_WRITE_CONNECTIONS = 20
    settings.CHAT_REDIS_READ_CONNECTIONS = 20
    settings.CHAT_MAX_CONCURRENT_GENERATIONS = 1000
    answers, watchers = 50, 10
    # Long enough (3 s) for every answer to be running, and every socket following, at once.
    fake_upstream.behave(reply=REPLY, chunk_delay=0.1)
    conversations = await database_sync_to_async(
        lambda: [Conversation.objects.create(owner=ada) for _ in range(answers)]
    )()
    cookie = await database_sync_to_async(session_cookie)(ada)
    sockets = await open_sockets(cookie, answers * watchers)
    try:
        groups = [sockets[i * watchers : (i + 1) * watchers] for i in range(answers)]
        for conversation, group in zip(conversations, groups, strict=True):
            for socket in group:
                await socket.send_json_to(
                    {"type": "chat.subscribe", "conversation": str(conversation.id)}
                )
        for socket in sockets:
            assert (await receive(socket))["type"] == "conversation.idle"
        for conversation, group in zip(conversations, groups, strict=True):
            await group[0].send_json_to(
                {"type": "chat.send", "conversation": str(conversation.id), "content": "Go"}
            )
        received = await asyncio.gather(*(frames_until_done(socket) for socket in sockets))
    finally:
        for socket in sockets:
            await socket.disconnect()
    for frames in received:
        assert_whole(frames, REPLY)
    assert len({frames[-1]["message"] for frames in received}) == answers
    # Followed from this process's memory, or through its one reader of Redis.
    assert (event_log().reader.task is None) == (followers == "here")


async def test_append_that_fails_even_when_retried_reaches_followers_as_a_snapshot(
    open_socket, view_thread_connections, ada, chat_config, fake_upstream, monkeypatch,
    reads_through_redis,
):  # fmt: skip
    """Before, the frame was dropped: followers saw seq jump (or, with the in-process log, the
    next frame under the lost one's seq) and the log's text lacked it."""
    log_class = type(event_log())
    original = log_class.append

    async def lost_at_seq_2(self, key, *, seq, delta, text_so_far):
        if seq == 2:
            raise ConnectionError("event log unreachable")
        await original(self, key, seq=seq, delta=delta, text_so_far=text_so_far)

    monkeypatch.setattr(log_class, "append", lost_at_seq_2)
    stream, done = await answer_with_two_tries(open_socket, ada, fake_upstream, monkeypatch)
    first, snapshot, *deltas = stream
    assert (first["type"], first["seq"]) == ("message.delta", 1)
    # The lost frame's text arrives inside the next one, a snapshot; live deltas continue.
    assert (snapshot["type"], snapshot["seq"]) == ("message.snapshot", 3)
    assert [frame["seq"] for frame in deltas] == list(range(4, 4 + len(deltas)))
    text = ""
    for frame in stream:
        text = frame["content"] if frame["type"] == "message.snapshot" else text + frame["delta"]
    assert text == REPLY == done["content"]
    # A socket that catches up from a snapshot of the log gets the whole text too.
    late = await event_log().snapshot(answers.log_key(uuid.UUID(done["message"])))
    assert late.content == REPLY


@pytest.mark.redis
async def test_a_redis_append_that_fails_costs_this_process_s_followers_nothing(
    open_socket, view_thread_connections, ada, chat_config, fake_upstream, monkeypatch
):
    """The socket that asked follows its answer from its process's memory: when Redis could not
    take frame 2, it still gets every frame as a delta, and Redis's copy, for sockets on other
    processes, is whole again from the next frame on."""
    from conversations.eventlog import WriteBatcher

    original = WriteBatcher.write

    class Recording:
        def __init__(self) -> None:
            self.commands: list[tuple] = []

        def __getattr__(self, name: str):
            return lambda *args, **kwargs: self.commands.append((name, *args))

    async def lost_at_seq_2(self, stage):
        recording = Recording()
        stage(recording)
        if any(command[0] == "eval" and command[6] == 2 for command in recording.commands):
            raise ConnectionError("event log unreachable")
        return await original(self, stage)

    monkeypatch.setattr(WriteBatcher, "write", lost_at_seq_2)
    stream, done = await answer_with_two_tries(open_socket, ada, fake_upstream, monkeypatch)
    assert_whole([*stream, done], REPLY)
    log = event_log()
    log.local_reads = False  # this one instance reads as another process would
    shared = await log.snapshot(answers.log_key(uuid.UUID(done["message"])))
    assert (shared.content, shared.done["status"]) == (REPLY, "complete")


async def test_a_send_while_redis_is_unreachable_is_refused_as_unavailable_and_writes_nothing(
    open_socket, view_thread_connections, ada, chat_config, settings
):
    """Before, the socket got `internal` ("Something went wrong"), as for a bug."""
    from tests.live_server import free_port

    settings.REDIS_URL = f"redis://127.0.0.1:{free_port()}/0"
    socket = await open_socket(ada)
    await socket.send("chat.send", conversation=None, parent=None, content="Go", request_id="r1")
    [*_, error] = await socket.receive_until("error")
    assert (error["code"], error["request_id"]) == ("unavailable", "r1")
    assert "try again" in error["detail"]
    assert await database_sync_to_async(Conversation.objects.count)() == 0


@pytest.mark.redis
async def test_a_thousand_logs_opened_at_once_go_out_in_a_few_transactions(clean_engine, settings):
    """Each start opened its log in a transaction on a connection of its own: at 1,000
    simultaneous sends a quarter waited out the pool's wait and failed. Now they go out
    together (Redis's own count of EXECs tells)."""
    settings.CHAT_REDIS_WRITE_CONNECTIONS = 2
    log = event_log()

    async def execs() -> int:
        stats = await log.reads.info("commandstats")
        return stats.get("cmdstat_exec", {}).get("calls", 0)

    keys = [uuid.uuid4().hex for _ in range(1000)]
    before = await execs()
    try:
        await asyncio.gather(*(log.open(key) for key in keys))
        opened_in = await execs() - before
        log.local_reads = False
        snapshots = await asyncio.gather(*(log.snapshot(key) for key in keys[::100]))
    finally:
        await asyncio.gather(*(log.discard(key) for key in keys))
    assert [(s.content, s.seq) for s in snapshots] == [("", 0)] * 10
    assert opened_in <= 3, opened_in


async def test_a_follower_of_an_answer_discarded_meanwhile_stops(clean_engine):
    """A socket following a log that is then discarded (its start failed after the row was
    seen) must not wait forever: it stops, and the consumer reads the row."""
    log = event_log()
    key = uuid.uuid4().hex
    await log.open(key)

    async def follow() -> list:
        return [event async for event in log.follow(key)]

    follower = asyncio.create_task(follow())
    await asyncio.sleep(0.05)
    await log.discard(key)
    assert await asyncio.wait_for(follower, FRAME_TIMEOUT) == []


async def test_a_log_never_finished_is_dropped_and_its_followers_stop():
    """Redis expires an answer's keys if nothing finishes it; the in-memory log does too."""
    from conversations.eventlog import MemoryEventLog

    log = MemoryEventLog(expire_seconds=0.2)
    await log.open("orphan")
    await log.append("orphan", seq=1, delta="half", text_so_far=lambda: "half")

    async def follow() -> list:
        return [event async for event in log.follow("orphan")]

    events = await asyncio.wait_for(follow(), FRAME_TIMEOUT)
    assert [event.delta for event in events] == ["half"]
    assert not log.holds("orphan")


@pytest.mark.redis
async def test_a_process_keeps_its_copy_of_a_finished_answer_briefly_then_reads_redis(
    clean_engine, monkeypatch
):
    """A copy per finished answer for the whole retention would cost a busy process gigabytes;
    late readers get Redis's copy instead."""
    from conversations import eventlog

    monkeypatch.setattr(eventlog, "LOCAL_KEEP_SECONDS", 0.1)
    log = event_log()
    key = uuid.uuid4().hex
    await log.open(key)
    await log.append(key, seq=1, delta="all of it", text_so_far=lambda: "all of it")
    await log.finish(key, seq=1, done={"type": "message.done", "message": key})
    try:
        assert log.local.holds(key)
        for _ in range(200):
            if not log.local.holds(key):
                break
            await asyncio.sleep(0.01)
        snapshot = await log.snapshot(key)
    finally:
        await log.discard(key)
    assert not log.local.holds(key)
    assert (snapshot.content, snapshot.done["message"]) == ("all of it", key)
    assert isinstance(snapshot.cursor, str)  # Redis's


async def test_appends_written_together_fail_together_when_redis_is_unreachable():
    """Each waiting generation gets the error (and retries on its own); none waits forever."""
    import redis

    from conversations.eventlog import RedisEventLog
    from tests.live_server import free_port

    log = RedisEventLog(f"redis://127.0.0.1:{free_port()}/0")
    try:
        results = await asyncio.wait_for(
            asyncio.gather(
                *(log.append(f"answer-{i}", seq=1, delta="x", text_so_far=str) for i in range(5)),
                return_exceptions=True,
            ),
            FRAME_TIMEOUT,
        )
    finally:
        await log.close()
    assert all(isinstance(result, redis.ConnectionError) for result in results), results


@pytest.mark.redis
async def test_appends_of_many_answers_at_once_each_land_in_their_own_log(
    clean_engine, reads_through_redis
):
    log = event_log()
    keys = [uuid.uuid4().hex for _ in range(50)]
    for key in keys:
        await log.open(key)
    for seq in (1, 2):
        await asyncio.gather(
            *(log.append(key, seq=seq, delta=f"{key[:4]}-{seq} ", text_so_far=str) for key in keys)
        )
    snapshots = [await log.snapshot(key) for key in keys]
    for key in keys:
        await log.discard(key)
    assert [(s.content, s.seq) for s in snapshots] == [
        (f"{key[:4]}-1 {key[:4]}-2 ", 2) for key in keys
    ]


@pytest.mark.redis
async def test_an_append_repeated_after_its_reply_was_lost_does_not_double_the_text(
    clean_engine, reads_through_redis
):
    """A retried append (its MULTI ran, its reply did not arrive) must leave the snapshot text
    as it was: the log holds that seq already."""
    log = event_log()
    key = uuid.uuid4().hex
    await log.open(key)
    try:
        for _ in range(2):
            await log.append(key, seq=1, delta="once ", text_so_far=lambda: "once ")
        await log.append(key, seq=2, delta="twice", text_so_far=lambda: "once twice")
        snapshot = await log.snapshot(key)
    finally:
        await log.discard(key)
    assert (snapshot.content, snapshot.seq) == ("once twice", 2)


@pytest.mark.redis
async def test_an_append_to_a_log_that_redis_lost_starts_it_again_from_the_whole_text(
    clean_engine, reads_through_redis
):
    log = event_log()
    key = uuid.uuid4().hex
    await log.open(key)
    try:
        await log.append(key, seq=1, delta="before ", text_so_far=lambda: "before ")
        # What a Redis restart without its data does to this answer's keys.
        await log.redis.delete(*log._keys(key))
        await log.append(key, seq=2, delta="after", text_so_far=lambda: "before after")
        snapshot = await log.snapshot(key)
    finally:
        await log.discard(key)
    assert (snapshot.content, snapshot.seq) == ("before after", 2)


@pytest.mark.redis
async def test_the_reader_reads_many_streams_in_paced_xreads_and_loses_nothing(
    clean_engine, reads_through_redis, monkeypatch
):
    """One XREAD names every followed stream; unpaced, the reader issued one per appended entry
    or two. Paced, the number of XREADs follows the time and the number of streams, not the
    number of entries, and every follower still gets every entry in order."""
    from conversations import eventlog

    streams, rounds = 100, 40
    # 100 streams x 0.2 ms: XREADs at least 20 ms apart (10 ms per 1,000 streams in production).
    monkeypatch.setattr(eventlog, "READ_PACE_SECONDS_PER_STREAM", 0.0002)
    log = event_log()
    keys = [uuid.uuid4().hex for _ in range(streams)]
    for key in keys:
        await log.open(key)
    calls = 0
    xread = log.reader.connection.xread

    async def counted(*args, **kwargs):
        nonlocal calls
        calls += 1
        return await xread(*args, **kwargs)

    monkeypatch.setattr(log.reader.connection, "xread", counted)

    async def follow(key: str) -> str:
        text = []
        async for event in log.follow(key):
            text.append(event.delta)
        return "".join(text)

    followers = [asyncio.create_task(follow(key)) for key in keys]
    loop = asyncio.get_running_loop()
    began = loop.time()
    for seq in range(1, rounds + 1):
        await asyncio.gather(
            *(log.append(key, seq=seq, delta=f"{seq} ", text_so_far=str) for key in keys)
        )
    await asyncio.gather(
        *(
            log.finish(key, seq=rounds, done={"type": "message.done", "message": key})
            for key in keys
        )
    )
    texts = await asyncio.wait_for(asyncio.gather(*followers), FRAME_TIMEOUT * 3)
    elapsed = loop.time() - began
    for key in keys:
        await log.discard(key)
    assert texts == ["".join(f"{seq} " for seq in range(1, rounds + 1))] * streams
    # 4,000 entries, yet at most one XREAD per 20 ms (a wake-up for followers that joined
    # while the reader was blocked only ends a read early; the next still waits its turn).
    assert calls <= elapsed / 0.02 + 2, (calls, elapsed)
