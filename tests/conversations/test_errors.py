"""How an answer's failure reaches people: users read a fixed sentence, admins the detail (the
admin, the log); and every answer ends, however the upstream behaves."""

import socket as sockets

import pytest
from channels.db import database_sync_to_async

from providers.models import ProviderConfig
from tests.conversations.test_consumers import message_row, read_answer, start_chat

pytestmark = pytest.mark.django_db(transaction=True)

REPLY = " ".join(f"word{i}" for i in range(60))


def closed_port() -> int:
    with sockets.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@database_sync_to_async
def point_at_nothing(config: ProviderConfig) -> str:
    where = f"127.0.0.1:{closed_port()}"
    config.api_base = f"http://{where}/v1"
    config.save()
    return where


async def test_users_never_see_upstream_addresses_admins_and_logs_do(
    open_socket, ada, chat_config, caplog, admin_client
):
    where = await point_at_nothing(chat_config)
    socket = await open_socket(ada)
    _, _, answer = await start_chat(socket)
    _, done = await read_answer(socket, answer["id"])
    assert done["error"] == {
        "code": "upstream_unavailable",
        "detail": "Could not connect to the provider.",
    }
    row = await message_row(answer["id"])
    assert where in row.error_detail
    assert where in caplog.text
    page = await database_sync_to_async(admin_client.get)(
        f"/admin/conversations/message/{row.pk}/change/"
    )
    assert where in page.content.decode()


async def test_an_answer_that_runs_too_long_is_ended_keeping_its_text(
    open_socket, ada, chat_config, fake_upstream, settings
):
    settings.CHAT_MAX_ANSWER_SECONDS = 1
    fake_upstream.behave(reply=REPLY, chunk_delay=0.2)
    socket = await open_socket(ada)
    _, _, answer = await start_chat(socket)
    _, done = await read_answer(socket, answer["id"])
    assert done["status"] == "error"
    assert done["error"] == {
        "code": "answer_too_long",
        "detail": "The answer took longer than 1 s, the most an answer may take, and was ended.",
    }
    assert done["content"] and REPLY.startswith(done["content"]) and done["content"] != REPLY
    row = await message_row(answer["id"])
    assert (row.status, row.content) == ("error", done["content"])


async def test_an_upstream_that_goes_quiet_mid_answer_is_given_up_on(
    open_socket, ada, chat_config, fake_upstream, settings
):
    settings.CHAT_ANSWER_IDLE_SECONDS = 1
    fake_upstream.behave(reply="one two three", chunk_delay=3)
    socket = await open_socket(ada)
    _, _, answer = await start_chat(socket)
    _, done = await read_answer(socket, answer["id"])
    assert done["error"] == {
        "code": "answer_idle",
        "detail": "The provider sent nothing for 1 seconds, so the answer was ended.",
    }
    assert done["content"] == "one "
