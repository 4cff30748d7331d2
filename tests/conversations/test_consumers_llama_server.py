"""One whole chat through /ws/chat/ with a real OpenAI-compatible server we did not write as the
upstream: llama-cpp-python's server, running the packaged model (tests/llama_server.py)."""

import pytest
from channels.db import database_sync_to_async

from conversations.models import Message
from tests.conversations.test_consumers import read_answer, start_chat

pytestmark = [pytest.mark.local_model, pytest.mark.django_db(transaction=True)]


async def test_chat_over_the_socket_with_llama_cpp_server_upstream(
    open_socket, django_user_model, llama_config, llama_server
):
    user = await database_sync_to_async(django_user_model.objects.create_user)(username="ada")
    socket = await open_socket(user)
    _, _, answer = await start_chat(
        socket,
        content="Write a long story about a dragon.",
        options={"max_tokens": 24, "temperature": 0},
    )
    assert answer["provider"] == "llama-server"
    deltas, done = await read_answer(socket, answer["id"])
    assert len(deltas) > 1, done
    assert [frame["seq"] for frame in deltas] == list(range(1, len(deltas) + 1))
    assert done["status"] == "complete", done
    assert done["content"] == "".join(frame["delta"] for frame in deltas)
    assert done["content"].strip()
    assert (done["provider"], done["model"]) == ("llama-server", llama_server.model)
    row = await database_sync_to_async(Message.objects.get)(pk=answer["id"])
    assert (row.status, row.content) == (Message.Status.COMPLETE, done["content"])
    assert llama_server.api_key not in done["html"]
