"""Fixtures for the conversation tests: the users ada and grace and ada's signed-in client,
signed-in sockets through the real ASGI stack, and a provider config that points at the fake
upstream (a real HTTP server on loopback)."""

import json
from contextlib import suppress
from typing import Any

import pytest
from asgiref.sync import sync_to_async
from channels import DEFAULT_CHANNEL_LAYER
from channels.db import database_sync_to_async
from channels.layers import channel_layers
from channels.testing import WebsocketCommunicator
from django.db import connections
from django.test import Client

from chatsite.asgi import application
from conversations.engine import generation_engine_close
from conversations.eventlog import event_log_close
from providers.models import ProviderConfig
from providers.services import provider_config_set_token
from tests.live_server import session_cookie

ORIGIN = (b"origin", b"http://127.0.0.1:8000")
# How long a test waits for one frame before failing (generous: CI shares two cores).
FRAME_TIMEOUT = 10


class ChatSocket:
    """A browser's end of /ws/chat/, as seen through chatsite.asgi."""

    def __init__(self, communicator: WebsocketCommunicator) -> None:
        self.communicator = communicator

    async def send(self, type_: str, **fields: Any) -> None:
        await self.communicator.send_to(text_data=json.dumps({"type": type_, **fields}))

    async def send_raw(self, text: str | None = None, binary: bytes | None = None) -> None:
        await self.communicator.send_to(text_data=text, bytes_data=binary)

    async def receive(self, wait: float = FRAME_TIMEOUT) -> dict[str, Any]:
        return json.loads(await self.communicator.receive_from(wait))

    async def receive_until(self, type_: str, wait: float = FRAME_TIMEOUT) -> list[dict]:
        """Frames up to and including the first of `type_`."""
        seen = []
        while True:
            frame = await self.receive(wait)
            seen.append(frame)
            if frame["type"] == type_:
                return seen

    async def nothing_more(self, wait: float = 0.3) -> bool:
        return await self.communicator.receive_nothing(wait)

    async def close(self) -> None:
        await self.communicator.disconnect()


@pytest.fixture
async def clean_engine():
    """Each test gets a fresh engine, event log and channel layer for its own event loop, and
    leaves none running behind it. (channels-redis keeps asyncio locks bound to the loop that
    made them; a layer shared by two tests' loops fails with "bound to a different loop".)"""
    channel_layers.backends.pop(DEFAULT_CHANNEL_LAYER, None)
    yield
    await generation_engine_close()
    await event_log_close()
    layer = channel_layers.backends.pop(DEFAULT_CHANNEL_LAYER, None)
    if hasattr(layer, "close_pools"):
        await layer.close_pools()


@pytest.fixture(autouse=True)
def frame_interval_fixed(settings):
    """Frames on CHAT_FRAME_INTERVAL_MS whatever the test machine's load: the interval grows
    while the loop runs late (engine.LoopLag), which a busy machine would otherwise bring to
    tests that count frames. The tests of that growth set their own bound."""
    settings.CHAT_FRAME_INTERVAL_MAX_MS = 0


@pytest.fixture
def reads_through_redis(monkeypatch):
    """In scale mode, sockets follow every answer through Redis, as a socket on another process
    than the answer's does (by default a process's own answers are followed from its memory)."""
    from conversations.eventlog import RedisEventLog

    monkeypatch.setattr(RedisEventLog, "local_reads", False)


@pytest.fixture
def chat_config(db, encryption_keys, fake_upstream) -> ProviderConfig:
    return ProviderConfig.objects.create(
        name="fake",
        provider_class="OpenAICompatible",
        api_base=fake_upstream.url + "/v1",
        default_model="fake-model",
        allowed_models=["fake-model", "fake-model-2"],
        is_default=True,
        timeout=10,
    )


@pytest.fixture
def llama_config(db, encryption_keys, llama_server) -> ProviderConfig:
    """A provider config for llama-cpp-python's server running the packaged model
    (tests/llama_server.py): a real OpenAI-compatible server we did not write."""
    config = ProviderConfig.objects.create(
        name="llama-server",
        provider_class="OpenAICompatible",
        api_base=llama_server.api_base,
        default_model=llama_server.model,
        is_default=True,
        timeout=60,
    )
    provider_config_set_token(config=config, token=llama_server.api_key)
    return config


@pytest.fixture
def ada(django_user_model):
    # No password: hashing one costs a few hundred milliseconds, and tests sign in directly.
    return django_user_model.objects.create_user(username="ada")


@pytest.fixture
def grace(django_user_model):
    """A second user, whose rows ada must never see."""
    return django_user_model.objects.create_user(username="grace")


@pytest.fixture
def root(django_user_model):
    """A staff member (presets they publish are offered to everyone)."""
    return django_user_model.objects.create_user(username="root", is_staff=True)


@pytest.fixture
def client_for():
    """A signed-in test client for any user."""

    def make(user) -> Client:
        client = Client()
        client.force_login(user)
        return client

    return make


@pytest.fixture
def signed_in(client, ada):
    """The test client with ada's session."""
    client.force_login(ada)
    return client


@pytest.fixture
async def view_thread_connections():
    yield
    # Async views run their queries on asgiref's worker thread, and the test client does not
    # close connections after a request as a server does: without this, that thread keeps a
    # PostgreSQL session open and the test database cannot be dropped at the end of the run.
    await sync_to_async(connections.close_all)()


@pytest.fixture
async def open_socket(clean_engine):
    """`await open_socket(user)`: a connected, signed-in socket, closed after the test (before
    the engine is)."""
    sockets: list[ChatSocket] = []

    async def open_(user) -> ChatSocket:
        # Through channels' wrapper, which returns the connection when done: nothing else runs
        # on asgiref's thread to close it later (database calls run on chatsite.db's threads).
        cookie = (b"cookie", (await database_sync_to_async(session_cookie)(user)).encode())
        communicator = WebsocketCommunicator(application, "/ws/chat/", headers=[ORIGIN, cookie])
        connected, code = await communicator.connect(timeout=FRAME_TIMEOUT)
        assert connected, f"socket refused with {code}"
        socket = ChatSocket(communicator)
        sockets.append(socket)
        return socket

    yield open_
    for socket in sockets:
        with suppress(Exception):
            await socket.close()
