"""Answers from the local model through /ws/chat/, with its real worker process: a worker that dies
mid-answer ends that answer with an error and nothing else."""

import os
import signal

import pytest
from channels.db import database_sync_to_async

from conversations.models import Message
from providers.models import ProviderConfig
from tests.conversations.test_consumers import joined, message_row, read_answer, start_chat

pytest.importorskip("llama_cpp", reason="needs llama-cpp-python (the `local` dependency group)")

from providers.llamacpp import PACKAGED_MODEL
from providers.llamacpp_supervisor import local_model

pytestmark = [pytest.mark.local_model, pytest.mark.django_db(transaction=True)]

STORY = "Write a long story about a dragon."
# Long enough at 50 ms a word (ten seconds) to be still streaming when the worker is killed.
SLOW_REPLY = " ".join(f"word{i}" for i in range(200))


@pytest.fixture
def local_config(db) -> ProviderConfig:
    return ProviderConfig.objects.create(
        name="Local", provider_class="LlamaCpp", default_model=PACKAGED_MODEL, timeout=60
    )


@pytest.fixture
def bob(django_user_model):
    return django_user_model.objects.create_user(username="bob")


async def next_answer(socket, conversation: str, content: str, **fields) -> dict:
    """Send a follow-up; returns its assistant message."""
    await socket.send(
        "chat.send", conversation=conversation, parent=None, content=content, **fields
    )
    while True:
        frame = await socket.receive()
        if frame["type"] == "message.created" and frame["message"]["role"] == "assistant":
            return frame["message"]


async def test_a_worker_killed_mid_answer_ends_that_answer_only_and_the_next_one_completes(
    open_socket, ada, bob, chat_config, local_config, fake_upstream
):
    # bob's answer comes from the fake upstream (the site default), slowly.
    fake_upstream.behave(reply=SLOW_REPLY, chunk_delay=0.05)
    bob_socket = await open_socket(bob)
    _, _, bob_answer = await start_chat(bob_socket, content="Hello")
    bob_first = await bob_socket.receive()
    assert bob_first["type"] == "message.delta"

    ada_socket = await open_socket(ada)
    conversation, _, answer = await start_chat(
        ada_socket,
        content=STORY,
        provider="Local",
        options={"max_tokens": 400, "temperature": 0},
    )
    first = await ada_socket.receive()
    assert first["type"] == "message.delta" and first["message"] == answer["id"]
    assert (await message_row(bob_answer["id"])).status == Message.Status.STREAMING
    os.kill(local_model.worker.pid, signal.SIGKILL)

    deltas, done = await read_answer(ada_socket, answer["id"])
    assert done["status"] == "error"
    assert done["error"]["code"] == "local_model_stopped"
    assert done["error"]["detail"].startswith("The local model stopped unexpectedly (SIGKILL).")
    assert done["content"] == joined([first, *deltas])
    row = await message_row(answer["id"])
    assert (row.status, row.error_code, row.content) == (
        Message.Status.ERROR,
        "local_model_stopped",
        done["content"],
    )

    # bob's stream, live across the crash, ends complete and whole.
    bob_deltas, bob_done = await read_answer(bob_socket, bob_answer["id"])
    assert bob_deltas, "bob's answer had ended before the crash: the test proves nothing"
    assert bob_done["status"] == "complete"
    assert bob_done["content"] == joined([bob_first, *bob_deltas]) == SLOW_REPLY

    # The next local answer gets a fresh worker.
    again = await next_answer(
        ada_socket,
        conversation["id"],
        "Who wrote Romeo and Juliet?",
        provider="Local",
        options={"max_tokens": 64, "temperature": 0},
    )
    _, done = await read_answer(ada_socket, again["id"])
    assert done["status"] == "complete", done
    assert done["content"].strip()
    assert await database_sync_to_async(Message.objects.filter(status="error").count)() == 1
