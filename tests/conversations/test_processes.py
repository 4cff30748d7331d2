"""Answers across real server processes: Daphne subprocesses sharing this run's database (and, in
scale mode, Redis), browsers' sockets played by a real WebSocket client."""

import asyncio
import json
from contextlib import AsyncExitStack, suppress

import pytest
from channels.db import database_sync_to_async
from redis import Redis
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from conversations.groups import ENGINES
from conversations.models import Message
from tests.live_server import LiveServer, child_pids, connection_owners, session_cookie

pytestmark = pytest.mark.django_db(transaction=True)

REPLY = " ".join(f"word{i}" for i in range(60))
WAIT = 15


@pytest.fixture
def cookie(django_user_model):
    return session_cookie(django_user_model.objects.create_user(username="ada"))


@pytest.fixture
def servers(tmp_path, chat_config):
    started: list[LiveServer] = []

    def start(name: str, **env: str) -> LiveServer:
        server = LiveServer(tmp_path / f"{name}.log", **env)
        server.start()
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()


class Socket:
    def __init__(self, ws) -> None:
        self.ws = ws

    async def send(self, type_: str, **fields) -> None:
        await self.ws.send(json.dumps({"type": type_, **fields}))

    async def receive(self) -> dict:
        return json.loads(await asyncio.wait_for(self.ws.recv(), WAIT))

    async def until(self, type_: str) -> list[dict]:
        frames = []
        while True:
            frames.append(await self.receive())
            if frames[-1]["type"] == type_:
                return frames


def open_socket(server: LiveServer, cookie: str):
    return connect(
        server.ws_url + "/ws/chat/", origin=server.url, additional_headers={"Cookie": cookie}
    )


def text_of(frames: list[dict]) -> tuple[str, list[int]]:
    text, seqs = "", []
    for frame in frames:
        if frame["type"] == "message.snapshot":
            text, seqs = frame["content"], [frame["seq"]]
        elif frame["type"] == "message.delta":
            text += frame["delta"]
            seqs.append(frame["seq"])
    return text, seqs


@database_sync_to_async
def message_row(message_id: str) -> Message:
    return Message.objects.get(pk=message_id)


async def saved_words(message_id: str, *, at_least: int) -> None:
    """Return once the row holds `at_least` words of the answer."""
    async with asyncio.timeout(WAIT):
        while True:
            if len((await message_row(message_id)).content.split()) >= at_least:
                return
            await asyncio.sleep(0.05)


@pytest.mark.postgres
@pytest.mark.redis
async def test_answer_started_on_one_process_is_followed_and_stopped_from_another(
    servers, cookie, fake_upstream
):
    fake_upstream.behave(reply=REPLY, chunk_delay=0.05)
    server_a, server_b = servers("a"), servers("b")
    async with open_socket(server_a, cookie) as ws_a, open_socket(server_b, cookie) as ws_b:
        a, b = Socket(ws_a), Socket(ws_b)
        await a.send("chat.send", conversation=None, content="Count for me")
        conversation = (await a.receive())["conversation"]
        await a.until("message.created")  # the question
        answer = (await a.until("message.created"))[-1]["message"]
        seen_by_a = await a.until("message.delta")
        seen_by_a += [await a.receive(), await a.receive()]

        await b.send("chat.subscribe", conversation=conversation["id"])
        created = await b.receive()
        assert (created["type"], created["message"]["id"]) == ("message.created", answer["id"])
        snapshot = await b.receive()
        assert snapshot["type"] == "message.snapshot"
        assert snapshot["message"] == answer["id"]
        assert snapshot["seq"] >= 3
        followed = [snapshot, await b.receive(), await b.receive()]
        assert [frame["type"] for frame in followed[1:]] == ["message.delta"] * 2

        await b.send("chat.stop", message=answer["id"])
        followed += await b.until("message.done")
        seen_by_a += await a.until("message.done")

    done_b, done_a = followed.pop(), seen_by_a.pop()
    assert done_a == done_b
    assert done_b["status"] == "stopped"
    text_b, seqs_b = text_of(followed)
    text_a, seqs_a = text_of(seen_by_a)
    # B saw the snapshot and then every delta after it, without a gap or a repeat; A saw all.
    assert seqs_b == list(range(seqs_b[0], seqs_b[0] + len(seqs_b)))
    assert seqs_a == list(range(1, len(seqs_a) + 1))
    assert text_a == text_b == done_b["content"]
    assert REPLY.startswith(done_b["content"]) and done_b["content"] != REPLY
    row = await message_row(answer["id"])
    assert (row.status, row.content) == (Message.Status.STOPPED, done_b["content"])


@pytest.mark.postgres
@pytest.mark.redis
async def test_answer_of_a_killed_process_is_interrupted_by_another(servers, cookie, fake_upstream):
    fake_upstream.behave(reply=REPLY, chunk_delay=0.1)
    fast_sweep = {"CHAT_STALE_STREAM_SECONDS": "3", "CHAT_CHECKPOINT_SECONDS": "0.2"}
    server_a, server_b = servers("a", **fast_sweep), servers("b", **fast_sweep)
    async with open_socket(server_a, cookie) as ws_a:
        a = Socket(ws_a)
        await a.send("chat.send", conversation=None, content="Count for me")
        conversation = (await a.receive())["conversation"]
        await a.until("message.created")
        answer = (await a.until("message.created"))[-1]["message"]
        for _ in range(6):
            await a.until("message.delta")
        server_a.kill()
    async with open_socket(server_b, cookie) as ws_b:
        b = Socket(ws_b)
        await b.send("chat.subscribe", conversation=conversation["id"])
        frames = await b.until("message.done")
    done = frames[-1]
    assert done["status"] == "interrupted"
    assert done["error"]["code"] == "interrupted"
    # Everything the dead process had sent is kept (its event log outlives it in Redis).
    assert len(done["content"].split()) >= 6
    assert REPLY.startswith(done["content"])
    row = await message_row(answer["id"])
    assert (row.status, row.content) == (Message.Status.INTERRUPTED, done["content"])


async def test_answer_of_a_killed_server_is_interrupted_when_it_starts_again(
    servers, cookie, fake_upstream
):
    """Embedded mode's story (one process, in-memory stream): the restart finds the answer."""
    fake_upstream.behave(reply=REPLY, chunk_delay=0.1)
    # With Redis the restarted process cannot tell a dead answer from one another process
    # writes, so it waits for the answer to go stale (3 s here).
    server = servers("only", CHAT_CHECKPOINT_SECONDS="0.2", CHAT_STALE_STREAM_SECONDS="3")
    async with open_socket(server, cookie) as ws:
        first = Socket(ws)
        await first.send("chat.send", conversation=None, content="Count for me")
        conversation = (await first.receive())["conversation"]
        await first.until("message.created")
        answer = (await first.until("message.created"))[-1]["message"]
        for _ in range(6):
            await first.until("message.delta")
        # Killed once a checkpoint with those words has landed (one does every 0.2 s).
        await saved_words(answer["id"], at_least=6)
        server.kill()
    server.start()
    async with open_socket(server, cookie) as ws:
        again = Socket(ws)
        await again.send("chat.subscribe", conversation=conversation["id"], message=answer["id"])
        done = (await again.until("message.done"))[-1]
    assert done["status"] == "interrupted"
    assert len(done["content"].split()) >= 6
    assert REPLY.startswith(done["content"])


async def test_signed_out_browser_sees_close_code_4401(servers):
    """Through a real Daphne: a refused handshake would read as 1006 and the page would retry
    forever instead of sending the user to the login page."""
    server = servers("only")
    async with connect(server.ws_url + "/ws/chat/", origin=server.url) as ws:
        with pytest.raises(ConnectionClosed) as closed:
            await asyncio.wait_for(ws.recv(), WAIT)
    assert closed.value.rcvd.code == 4401


async def test_server_told_to_stop_ends_running_answers_as_interrupted(
    servers, cookie, fake_upstream
):
    fake_upstream.behave(reply=REPLY, chunk_delay=0.1)
    server = servers("only")
    async with open_socket(server, cookie) as ws:
        socket = Socket(ws)
        await socket.send("chat.send", conversation=None, content="Count for me")
        await socket.until("message.created")
        answer = (await socket.until("message.created"))[-1]["message"]
        seen = [await socket.until("message.delta") for _ in range(4)]
        server.stop()  # SIGTERM, as a supervisor or Ctrl+C sends it
        frames = []
        with suppress(ConnectionClosed):
            while True:
                frames.append(await socket.receive())
    done = [frame for frame in frames if frame["type"] == "message.done"]
    row = await message_row(answer["id"])
    # Saved before the process exited, with everything sent so far; not left `streaming`.
    assert row.status == Message.Status.INTERRUPTED
    assert len(row.content.split()) >= len(seen)
    assert REPLY.startswith(row.content)
    assert done and done[0]["status"] == "interrupted" and done[0]["content"] == row.content


@pytest.mark.postgres
@pytest.mark.redis
async def test_a_server_joins_the_engines_group_once_and_leaves_it_when_stopped(
    servers, cookie, fake_upstream, settings
):
    """Stops from other processes reach a server through the engines' group in Redis: its first
    answer puts it there, later answers add nothing, and a server told to stop takes itself out
    (stops queued for a process that is gone help nobody)."""
    group = f"asgi:group:{ENGINES}"
    with Redis.from_url(settings.REDIS_URL) as redis:
        before = set(redis.zrange(group, 0, -1))
        server = servers("only")
        async with open_socket(server, cookie) as ws:
            socket = Socket(ws)
            for question in ("One", "Two", "Three"):
                await socket.send("chat.send", conversation=None, content=question)
                await socket.until("message.done")
        joined = set(redis.zrange(group, 0, -1)) - before
        assert len(joined) == 1, joined
        server.stop()
        assert not joined & set(redis.zrange(group, 0, -1))


@pytest.mark.postgres
@pytest.mark.redis
async def test_deactivating_a_user_closes_their_sockets_on_every_process(
    servers, cookie, clean_engine, django_user_model
):
    server_a, server_b = servers("a"), servers("b")
    async with open_socket(server_a, cookie) as ws_a, open_socket(server_b, cookie) as ws_b:

        def deactivate():
            ada = django_user_model.objects.get(username="ada")
            ada.is_active = False
            ada.save(update_fields=["is_active"])

        await database_sync_to_async(deactivate)()
        for ws in (ws_a, ws_b):
            with pytest.raises(ConnectionClosed) as closed:
                await asyncio.wait_for(ws.recv(), WAIT)
            assert closed.value.rcvd.code == 4401


@pytest.mark.postgres
@pytest.mark.redis
async def test_two_processes_on_one_port_stream_every_answer_whole(
    servers, fake_upstream, django_user_model
):
    """SERVER_PROCESSES=2 (chatsite.supervisor): sockets spread over both processes, and each
    answer arrives whole whichever process runs it."""
    fake_upstream.behave(reply=REPLY, chunk_delay=0.01)
    server = servers("pair", SERVER_PROCESSES="2")

    def cookies() -> list[str]:
        users = [django_user_model.objects.create_user(username=f"user{i}") for i in range(24)]
        return [session_cookie(user) for user in users]

    async with AsyncExitStack() as stack:
        sockets = [
            await stack.enter_async_context(open_socket(server, cookie))
            for cookie in await database_sync_to_async(cookies)()
        ]
        # Every socket is open, so accepted: its server end is held by one of the processes.
        children = child_pids(server.process.pid)
        owners = connection_owners(server.port, children)
        assert len(children) == 2
        assert {owners[ws.local_address[1]] for ws in sockets} == children

        async def ask(ws) -> list[dict]:
            chat = Socket(ws)
            await chat.send("chat.send", conversation=None, content="Count for me")
            return await chat.until("message.done")

        answers = await asyncio.gather(*(ask(ws) for ws in sockets))
    for frames in answers:
        text, seqs = text_of(frames)
        assert (frames[-1]["status"], frames[-1]["content"]) == ("complete", REPLY)
        assert text == REPLY
        assert seqs == list(range(1, len(seqs) + 1))
