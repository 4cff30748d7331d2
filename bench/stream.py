"""How fast the streaming path is: numbers to read, not a test (tests count, they do not time).

Runs the real ASGI application in this process against the fake upstream on loopback, with a
throw-away SQLite database (or DATABASE_URL / REDIS_URL from the environment, for scale mode):

    .venv/bin/python bench/stream.py [--runs 20]

Reports, per run, the time from `chat.send` to the first `message.delta`, the time from
`chat.stop` to `message.done` (the issue's budget is 200 ms), and for a fast stream how many
upstream tokens each frame carries.
"""

import argparse
import asyncio
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
scratch = tempfile.mkdtemp(prefix="chat-bench-")
os.environ.setdefault("DATABASE_URL", f"sqlite:///{scratch}/bench.sqlite3")
os.environ.update({"ENV_FILE": "", "DEBUG": "true", "LOG_LEVEL": "WARNING"})
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "chatsite.settings")

import django  # noqa: E402

django.setup()

from channels.testing import WebsocketCommunicator  # noqa: E402
from django.conf import settings  # noqa: E402
from django.contrib.auth import get_user_model  # noqa: E402
from django.core.management import call_command  # noqa: E402
from django.test import Client  # noqa: E402

from chatsite.asgi import application  # noqa: E402
from providers.models import ProviderConfig  # noqa: E402
from tests.fake_upstream import FakeUpstream  # noqa: E402


def prepare(upstream: FakeUpstream) -> bytes:
    call_command("migrate", verbosity=0)
    ProviderConfig.objects.update_or_create(
        name="bench",
        defaults={
            "provider_class": "OpenAICompatible",
            "api_base": upstream.url + "/v1",
            "default_model": "fake-model",
            "is_default": True,
        },
    )
    user, _ = get_user_model().objects.get_or_create(username="bench")
    client = Client()
    client.force_login(user)
    session = client.cookies[settings.SESSION_COOKIE_NAME].value
    return f"{settings.SESSION_COOKIE_NAME}={session}".encode()


async def open_socket(cookie: bytes) -> WebsocketCommunicator:
    socket = WebsocketCommunicator(
        application,
        "/ws/chat/",
        headers=[(b"origin", b"http://127.0.0.1:8000"), (b"cookie", cookie)],
    )
    connected, _ = await socket.connect()
    assert connected
    return socket


async def receive(socket: WebsocketCommunicator) -> dict:
    return json.loads(await socket.receive_from(10))


async def until(socket: WebsocketCommunicator, type_: str) -> list[dict]:
    frames = []
    while True:
        frames.append(await receive(socket))
        if frames[-1]["type"] == type_:
            return frames


async def one_run(cookie: bytes, upstream: FakeUpstream) -> tuple[float, float]:
    upstream.behave(reply=" ".join(f"w{i}" for i in range(200)), chunk_delay=0.02)
    socket = await open_socket(cookie)
    sent = time.perf_counter()
    await socket.send_to(text_data=json.dumps({"type": "chat.send", "content": "Hi"}))
    await until(socket, "message.created")
    answer = (await until(socket, "message.created"))[-1]["message"]["id"]
    await until(socket, "message.delta")
    first = time.perf_counter() - sent
    stop = time.perf_counter()
    await socket.send_to(text_data=json.dumps({"type": "chat.stop", "message": answer}))
    await until(socket, "message.done")
    stopped = time.perf_counter() - stop
    await socket.disconnect()
    return first, stopped


async def coalescing(cookie: bytes, upstream: FakeUpstream) -> tuple[int, int]:
    tokens = 2000
    upstream.behave(reply=" ".join(f"t{i}" for i in range(tokens)), chunk_delay=0.0005)
    socket = await open_socket(cookie)
    await socket.send_to(text_data=json.dumps({"type": "chat.send", "content": "Go"}))
    frames = await until(socket, "message.done")
    await socket.disconnect()
    return tokens, sum(1 for frame in frames if frame["type"] == "message.delta")


def summary(name: str, values: list[float]) -> str:
    ms = sorted(v * 1000 for v in values)
    p95 = ms[min(len(ms) - 1, round(0.95 * (len(ms) - 1)))]
    return f"{name}: median {statistics.median(ms):.1f} ms, p95 {p95:.1f} ms, max {ms[-1]:.1f} ms"


async def main(runs: int, cookie: bytes, upstream: FakeUpstream) -> None:
    from conversations.generation import generation_engine_close

    results = [await one_run(cookie, upstream) for _ in range(runs)]
    tokens, frames = await coalescing(cookie, upstream)
    await generation_engine_close()
    mode = "Redis" if settings.REDIS_URL else "in-process"
    print(f"{runs} runs, {connection_vendor()} + {mode} event log")
    print(summary("send -> first delta", [first for first, _ in results]))
    print(summary("stop -> done", [stopped for _, stopped in results]))
    print(f"fast stream: {tokens} tokens in {frames} frames ({tokens / frames:.1f} per frame)")


def connection_vendor() -> str:
    from django.db import connection

    return connection.vendor


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=20)
    args = parser.parse_args()
    upstream = FakeUpstream()
    try:
        cookie = prepare(upstream)
        asyncio.run(main(args.runs, cookie, upstream))
    finally:
        upstream.close()
