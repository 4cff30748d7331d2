"""The local model under a real Daphne process: killing its worker never takes the server down."""

import asyncio
import json
import os
import signal
import urllib.request
from pathlib import Path

import pytest
from channels.db import database_sync_to_async
from websockets.asyncio.client import connect

from providers.models import ProviderConfig
from tests.live_server import LiveServer, session_cookie

pytest.importorskip("llama_cpp", reason="needs llama-cpp-python (the `local` dependency group)")

pytestmark = [pytest.mark.local_model, pytest.mark.django_db(transaction=True)]

WAIT = 60
STORY = "Write a long story about a dragon."


@pytest.fixture
def server(tmp_path, db):
    ProviderConfig.objects.create(
        name="Local",
        provider_class="LlamaCpp",
        default_model="SmolLM2-135M-Instruct.Q4_1.gguf",
        is_default=True,
    )
    live = LiveServer(tmp_path / "server.log")
    live.start()
    yield live
    live.stop()


def children_of(pid: int) -> list[int]:
    """Processes whose parent is `pid` (from /proc: no extra library for one lookup)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(") ", 1)[1].split()
            except (FileNotFoundError, ProcessLookupError):
                continue
            if int(fields[1]) == pid:
                found.append(int(entry.name))
    return found


async def answer(ws, content: str, conversation=None, *, on_first_delta=None) -> tuple[str, dict]:
    await ws.send(
        json.dumps(
            {
                "type": "chat.send",
                "conversation": conversation,
                "parent": None,
                "content": content,
                "options": {"temperature": 0, "max_tokens": 300},
            }
        )
    )
    first = True
    while True:
        frame = json.loads(await asyncio.wait_for(ws.recv(), WAIT))
        if frame["type"] == "conversation.created":
            conversation = frame["conversation"]["id"]
        elif frame["type"] == "message.delta" and first and on_first_delta:
            first = False
            on_first_delta()
        elif frame["type"] == "message.done":
            return conversation, frame


def page_status(server: LiveServer) -> int:
    """The status of the front page (the sign-in page it redirects to) for a new visitor."""
    with urllib.request.urlopen(server.url + "/", timeout=WAIT) as response:
        return response.status


async def test_a_worker_killed_under_daphne_ends_one_answer_and_the_server_serves_on(
    server, django_user_model
):
    user = await database_sync_to_async(django_user_model.objects.create_user)(username="ada")
    cookie = await database_sync_to_async(session_cookie)(user)
    killed = []

    def kill_the_worker() -> None:
        [worker] = children_of(server.process.pid)
        os.kill(worker, signal.SIGKILL)
        killed.append(worker)

    url = server.ws_url + "/ws/chat/"
    async with connect(url, origin=server.url, additional_headers={"Cookie": cookie}) as ws:
        conversation, done = await answer(ws, STORY, on_first_delta=kill_the_worker)
        assert killed
        assert done["status"] == "error"
        assert done["error"]["code"] == "local_model_stopped"
        assert done["error"]["detail"].startswith("The local model stopped unexpectedly (SIGKILL).")
        assert server.process.poll() is None
        assert await asyncio.to_thread(page_status, server) == 200
        _, done = await answer(ws, "Who wrote Romeo and Juliet?", conversation)
        assert done["status"] == "complete" and done["content"].strip()
    [worker] = children_of(server.process.pid)
    assert worker not in killed
