"""Many answers ending at once, through a real Daphne process (tests.live_server): each final
save waits its turn for the database (on SQLite, its single writer) and none is lost."""

import asyncio

import pytest
from channels.db import database_sync_to_async

from conversations.models import Message
from tests.conversations.test_processes import Socket, open_socket
from tests.fake_upstream import deltas_of
from tests.live_server import LiveServer, session_cookie

pytestmark = pytest.mark.django_db(transaction=True)

ANSWERS = 50
REPLY = "one two three four five six seven eight"
END_TIMEOUT = 120


async def test_fifty_answers_ending_together_are_all_saved(
    tmp_path, django_user_model, chat_config, fake_upstream
):
    cookie = await database_sync_to_async(session_cookie)(
        await database_sync_to_async(django_user_model.objects.create_user)(username="ada")
    )
    # Every answer waits for the same slow upstream, so they end within moments of each other.
    fake_upstream.behave(reply=REPLY, chunk_delay=0.3)
    server = LiveServer(
        tmp_path / "daphne.log", CHAT_MAX_CONCURRENT_GENERATIONS=str(ANSWERS), LOG_LEVEL="INFO"
    )
    server.start()
    try:
        async with open_socket(server, cookie) as ws:
            socket = Socket(ws)
            for index in range(ANSWERS):
                await socket.send("chat.send", conversation=None, content=f"Question {index}")
            done, errors = [], []
            async with asyncio.timeout(END_TIMEOUT):
                while len(done) + len(errors) < ANSWERS:
                    frame = await socket.receive()
                    if frame["type"] == "message.done":
                        done.append(frame)
                    elif frame["type"] == "error":
                        errors.append(frame)
    finally:
        server.stop()

    assert errors == []
    assert {frame["status"] for frame in done} == {"complete"}
    rows = await database_sync_to_async(list)(
        Message.objects.filter(role="assistant").values_list("status", "content")
    )
    assert rows == [("complete", "".join(deltas_of(REPLY)))] * ANSWERS
    log = server.log_path.read_text()
    assert "database is locked" not in log and "Traceback" not in log
