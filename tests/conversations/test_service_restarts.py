"""Services restarted under a running site: a real Daphne process (tests.live_server) using a
Redis or PostgreSQL server of the test's own (tests.own_services), restarted mid-stream."""

import asyncio
import subprocess
import sys
import time
import urllib.error
import urllib.request
from contextlib import suppress
from functools import partial

import pytest
from django.conf import settings
from websockets.exceptions import ConnectionClosed

from conversations.models import Message
from tests.conversations.test_processes import REPLY, Socket, message_row, open_socket, text_of
from tests.live_server import LiveServer, session_cookie
from tests.own_services import OwnPostgres, OwnRedis

pytestmark = pytest.mark.django_db(transaction=True)

FINAL = {Message.Status.COMPLETE, Message.Status.ERROR, Message.Status.INTERRUPTED}
# How long an answer may take to end once its service is back (generous: a busy machine).
END_TIMEOUT = 60


@pytest.fixture
def own_redis(tmp_path):
    redis = OwnRedis(tmp_path)
    redis.start()
    yield redis
    redis.stop()


@pytest.fixture
def cookie(django_user_model):
    return session_cookie(django_user_model.objects.create_user(username="ada"))


async def answer_end(
    server: LiveServer, cookie: str, socket: Socket, conversation: str
) -> tuple[dict, list[dict] | None]:
    """The answer's `message.done`, on this socket or, if the server closed it, on a new one
    subscribed to the conversation (as the page's script reconnects); with the frames the new
    socket showed before it (None when the first socket lasted)."""
    async with asyncio.timeout(END_TIMEOUT):
        with suppress(ConnectionClosed):
            return (await socket.until("message.done"))[-1], None
        while True:
            with suppress(ConnectionClosed, OSError):
                async with open_socket(server, cookie) as ws:
                    again = Socket(ws)
                    await again.send("chat.subscribe", conversation=conversation)
                    frames = [await again.receive()]
                    while frames[-1]["type"] not in ("message.done", "error"):
                        frames.append(await again.receive())
                    if frames[-1]["type"] == "message.done":
                        return frames[-1], frames[:-1]
            # Refused while the service is still down: the page's script tries again too.
            await asyncio.sleep(0.5)


async def start_answer(socket: Socket, deltas: int) -> tuple[str, str]:
    """Send a message and read until `deltas` deltas arrived; (conversation id, answer id)."""
    await socket.send("chat.send", conversation=None, content="Count for me")
    conversation = (await socket.receive())["conversation"]["id"]
    await socket.until("message.created")
    answer = (await socket.until("message.created"))[-1]["message"]["id"]
    for _ in range(deltas):
        await socket.until("message.delta")
    return conversation, answer


async def a_new_chat_completes(server: LiveServer, cookie: str) -> dict:
    async with asyncio.timeout(END_TIMEOUT), open_socket(server, cookie) as ws:
        socket = Socket(ws)
        await socket.send("chat.send", conversation=None, content="Again")
        return (await socket.until("message.done"))[-1]


async def test_redis_restarted_mid_stream_ends_the_answer_and_new_chats_work(
    tmp_path, chat_config, cookie, fake_upstream, own_redis
):
    fake_upstream.behave(reply=REPLY, chunk_delay=0.1)
    server = LiveServer(tmp_path / "daphne.log", REDIS_URL=own_redis.url)
    server.start()
    try:
        async with open_socket(server, cookie) as ws:
            socket = Socket(ws)
            conversation, answer = await start_answer(socket, deltas=5)
            await asyncio.to_thread(own_redis.restart)
            done, shown = await answer_end(server, cookie, socket, conversation)

        assert done["status"] in FINAL
        if shown is not None:
            # What a reconnected page shows (snapshot, then deltas) is the answer's text.
            assert text_of(shown)[0] == done["content"]
        row = await message_row(answer)
        assert row.status == done["status"]
        # The stored text is what was sent, cut at a word or whole: never garbled or repeated.
        assert REPLY.startswith(row.content) and row.content == done["content"]
        fake_upstream.behave(reply="Back to normal.")
        again = await a_new_chat_completes(server, cookie)
        assert (again["status"], again["content"]) == ("complete", "Back to normal.")
    finally:
        server.stop()


# --- PostgreSQL ---------------------------------------------------------------------------------

SETUP_SITE = """
import json, sys
from django.conf import settings
from django.contrib.auth import get_user_model
from django.test import Client
from providers.models import ProviderConfig

ProviderConfig.objects.create(
    name="fake", provider_class="OpenAICompatible", api_base=sys.argv[-1] + "/v1",
    default_model="fake-model", allowed_models=["fake-model"], is_default=True, timeout=10,
)
client = Client()
client.force_login(get_user_model().objects.create_user(username="ada"))
print(settings.SESSION_COOKIE_NAME + "=" + client.cookies[settings.SESSION_COOKIE_NAME].value)
"""


def site_on(postgres: OwnPostgres, server: LiveServer, upstream_url: str) -> str:
    """Migrate the private database, add a provider and a user; the user's session cookie."""
    env = {**server.child_env(), "DATABASE_URL": postgres.url}
    manage = [sys.executable, "manage.py"]
    run = partial(subprocess.run, cwd=settings.BASE_DIR, env=env, check=True, text=True)
    run([*manage, "migrate", "--no-input"], capture_output=True)
    setup = run(
        [sys.executable, "-c", _django_script(SETUP_SITE), upstream_url], capture_output=True
    )
    return setup.stdout.strip().splitlines()[-1]


def _django_script(body: str) -> str:
    return "import django; django.setup()\n" + body


def page_status(server: LiveServer, cookie: str) -> tuple[int, str]:
    request = urllib.request.Request(server.url + "/", headers={"Cookie": cookie})
    try:
        with urllib.request.urlopen(request, timeout=END_TIMEOUT) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode()


def page_comes_back(server: LiveServer, cookie: str) -> bool:
    deadline = time.monotonic() + END_TIMEOUT
    while time.monotonic() < deadline:
        if page_status(server, cookie)[0] == 200:
            return True
        time.sleep(0.5)
    return False


async def test_postgres_restarted_requests_fail_cleanly_while_down_and_work_after(
    tmp_path, fake_upstream
):
    postgres = OwnPostgres()
    postgres.start()
    server = LiveServer(tmp_path / "daphne.log", DATABASE_URL=postgres.url)
    try:
        cookie = await asyncio.to_thread(site_on, postgres, server, fake_upstream.url)
        server.start()
        fake_upstream.behave(reply="Before the restart.")
        async with open_socket(server, cookie) as ws:
            socket = Socket(ws)
            await socket.send("chat.send", conversation=None, content="Hello")
            assert (await socket.until("message.done"))[-1]["status"] == "complete"

            await asyncio.to_thread(postgres.stop)
            status, body = await asyncio.to_thread(page_status, server, cookie)
            assert status == 503 and "Temporarily unavailable" in body
            await socket.send("chat.send", conversation=None, content="Hello?")
            refused = await socket.until("error")
            assert refused[-1]["code"] == "unavailable"

            await asyncio.to_thread(postgres.start)
            # The connection pool reconnects in the background, with a backoff: pages come
            # back once it has (503 until then, never an error page).
            assert await asyncio.to_thread(page_comes_back, server, cookie)
            fake_upstream.behave(reply="After the restart.")
            await socket.send("chat.send", conversation=None, content="Hello again")
            done = (await socket.until("message.done"))[-1]
            assert (done["status"], done["content"]) == ("complete", "After the restart.")
    finally:
        server.stop()
        postgres.remove()
