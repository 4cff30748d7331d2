"""/ws/chat/ end to end: sockets through chatsite.asgi, answers from the fake upstream (a real
HTTP server on loopback), rows in the real database. Frames are asserted as a browser sees them."""

import asyncio
import json
import threading
import uuid

import pytest
from asgiref.sync import sync_to_async
from channels.db import database_sync_to_async

from conversations.engine import generation_engine
from conversations.models import Conversation, Message
from providers.services import provider_config_set_token
from tests.fake_upstream import deltas_of

pytestmark = pytest.mark.django_db(transaction=True)

LONG_REPLY = " ".join(f"word{i}" for i in range(40))
SECRET = "sk-live-secret-token-9876"


@pytest.fixture
def bob(django_user_model):
    return django_user_model.objects.create_user(username="bob")


@database_sync_to_async
def message_row(message_id: str) -> Message:
    return Message.objects.get(pk=message_id)


@database_sync_to_async
def conversation_rows(user) -> list[Conversation]:
    return list(Conversation.objects.filter(owner=user))


async def start_chat(socket, content="Hello there", **fields):
    """Send a first message; returns (conversation frame, user message, assistant message)."""
    await socket.send("chat.send", conversation=None, parent=None, content=content, **fields)
    created = await socket.receive()
    assert created["type"] == "conversation.created", created
    user_message = await socket.receive()
    assistant = await socket.receive()
    assert user_message["type"] == assistant["type"] == "message.created"
    return created["conversation"], user_message["message"], assistant["message"]


async def read_answer(socket, message_id: str) -> tuple[list[dict], dict]:
    """Deltas (and snapshots) for one answer, up to its done frame."""
    frames = []
    while True:
        frame = await socket.receive()
        if frame.get("message") != message_id:
            continue
        if frame["type"] == "message.done":
            return frames, frame
        frames.append(frame)


def joined(frames: list[dict]) -> str:
    text = ""
    for frame in frames:
        if frame["type"] == "message.snapshot":
            text = frame["content"]
        else:
            text += frame["delta"]
    return text


def assert_contiguous(frames: list[dict]) -> None:
    expected = None
    for frame in frames:
        if frame["type"] == "message.snapshot":
            expected = frame["seq"] + 1
            continue
        if expected is None:
            expected = 1
        assert frame["seq"] == expected, [f.get("seq") for f in frames]
        expected += 1


# --- the happy path ----------------------------------------------------------------------------


async def test_first_message_streams_the_answer_frame_by_frame(
    open_socket, ada, chat_config, fake_upstream
):
    fake_upstream.behave(reply="Hello **world**, nice to meet you.")
    socket = await open_socket(ada)
    await socket.send(
        "chat.send",
        conversation=None,
        parent=None,
        content="Hi! Who are you?",
        options={"temperature": 0.3, "max_tokens": 50, "system": "Be brief."},
        request_id="r-1",
    )
    created = await socket.receive()
    assert created["type"] == "conversation.created"
    assert created["request_id"] == "r-1"
    conversation_id = created["conversation"]["id"]

    user_frame = await socket.receive()
    assert user_frame["type"] == "message.created"
    assert user_frame["message"]["role"] == "user"
    assert user_frame["message"]["content"] == "Hi! Who are you?"
    assert user_frame["message"]["conversation"] == conversation_id
    assert user_frame["message"]["parent"] is None
    assert user_frame["request_id"] == "r-1"

    assistant_frame = await socket.receive()
    assistant = assistant_frame["message"]
    assert assistant["role"] == "assistant"
    assert assistant["status"] == "streaming"
    assert assistant["parent"] == user_frame["message"]["id"]
    assert assistant["provider"] == "fake"
    assert assistant["model"] == "fake-model"

    deltas, done = await read_answer(socket, assistant["id"])
    assert [frame["type"] for frame in deltas] == ["message.delta"] * len(deltas)
    assert [frame["seq"] for frame in deltas] == list(range(1, len(deltas) + 1))
    assert joined(deltas) == "Hello **world**, nice to meet you."
    assert done["status"] == "complete"
    assert done["content"] == joined(deltas)
    assert "<strong>world</strong>" in done["html"]
    assert done["usage"] == {"prompt_tokens": 6, "completion_tokens": 6}
    assert done["error"] is None
    assert (done["provider"], done["model"]) == ("fake", "fake-model")

    updated = await socket.receive()
    assert updated["type"] == "conversation.updated"
    assert updated["conversation"]["title"] == "Hi! Who are you?"

    row = await message_row(assistant["id"])
    assert row.status == Message.Status.COMPLETE
    assert row.content == done["content"]
    assert (row.prompt_tokens, row.completion_tokens) == (6, 6)
    assert row.completed_at is not None
    # What the upstream received: the system prompt first, the options as sampling parameters.
    sent = fake_upstream.requests[-1].json
    assert sent["messages"] == [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Hi! Who are you?"},
    ]
    assert sent["temperature"] == 0.3
    assert sent["max_tokens"] == 50
    assert sent["model"] == "fake-model"


async def test_follow_up_sends_the_branch_as_history(open_socket, ada, chat_config, fake_upstream):
    fake_upstream.behave(reply="First answer.")
    socket = await open_socket(ada)
    conversation, _, assistant = await start_chat(socket, content="Question one")
    await read_answer(socket, assistant["id"])
    fake_upstream.behave(reply="Second answer.")
    await socket.send(
        "chat.send", conversation=conversation["id"], parent=None, content="Question two"
    )
    question = (await socket.receive_until("message.created"))[-1]["message"]
    assert question["parent"] == assistant["id"]
    answer = (await socket.receive_until("message.created"))[-1]["message"]
    _, done = await read_answer(socket, answer["id"])
    assert done["content"] == "Second answer."
    assert fake_upstream.requests[-1].json["messages"] == [
        {"role": "user", "content": "Question one"},
        {"role": "assistant", "content": "First answer."},
        {"role": "user", "content": "Question two"},
    ]


async def test_tokens_are_coalesced_into_fewer_frames(
    open_socket, ada, chat_config, fake_upstream, settings
):
    settings.CHAT_FRAME_INTERVAL_MS = 50
    reply = " ".join(f"t{i}" for i in range(200))
    fake_upstream.behave(reply=reply, chunk_delay=0.001)
    socket = await open_socket(ada)
    _, _, assistant = await start_chat(socket)
    deltas, done = await read_answer(socket, assistant["id"])
    assert joined(deltas) == reply == done["content"]
    assert_contiguous(deltas)
    # 200 upstream deltas in well under a second go out as a handful of frames.
    assert len(deltas) < len(deltas_of(reply)) / 4


# --- stop, disconnect, reconnect -----------------------------------------------------------------


async def test_stop_mid_stream_keeps_the_partial_answer(
    open_socket, ada, chat_config, fake_upstream
):
    fake_upstream.behave(reply=LONG_REPLY, chunk_delay=0.05)
    socket = await open_socket(ada)
    _, _, assistant = await start_chat(socket)
    first = await socket.receive()
    assert first["type"] == "message.delta"
    await socket.send("chat.stop", message=assistant["id"])
    deltas, done = await read_answer(socket, assistant["id"])
    partial = joined([first, *deltas])
    assert done["status"] == "stopped"
    assert done["content"] == partial
    assert partial and partial != LONG_REPLY
    row = await message_row(assistant["id"])
    assert (row.status, row.content) == (Message.Status.STOPPED, partial)
    # The upstream request was closed, not left running.
    assert fake_upstream.requests[-1].done.wait(5)
    assert fake_upstream.requests[-1].disconnected.is_set()


async def test_stop_from_another_socket_stops_the_answer(
    open_socket, ada, chat_config, fake_upstream
):
    fake_upstream.behave(reply=LONG_REPLY, chunk_delay=0.05)
    writer = await open_socket(ada)
    other_tab = await open_socket(ada)
    _, _, assistant = await start_chat(writer)
    await writer.receive()
    await other_tab.send("chat.stop", message=assistant["id"])
    _, done = await read_answer(writer, assistant["id"])
    assert done["status"] == "stopped"


async def test_disconnect_mid_stream_still_completes_and_saves(
    open_socket, ada, chat_config, fake_upstream
):
    fake_upstream.behave(reply=LONG_REPLY, chunk_delay=0.01)
    socket = await open_socket(ada)
    _, _, assistant = await start_chat(socket)
    assert (await socket.receive())["type"] == "message.delta"
    await socket.close()
    await generation_engine().wait_idle()
    row = await message_row(assistant["id"])
    assert row.status == Message.Status.COMPLETE
    assert row.content == LONG_REPLY


async def test_a_busy_thread_sensitive_thread_holds_up_no_socket(
    open_socket, ada, chat_config, fake_upstream
):
    """Channels hands every message a consumer handles to asgiref's one thread-sensitive thread
    first (to close old database connections): with hundreds of sockets, that thread was a
    queue every frame waited in. While something else holds it, a socket still starts, streams
    and ends an answer."""
    fake_upstream.behave(reply="Streamed past a busy thread.")
    socket = await open_socket(ada)
    entered, release = threading.Event(), threading.Event()

    def hold() -> None:
        entered.set()
        release.wait(30)

    holder = asyncio.ensure_future(sync_to_async(hold, thread_sensitive=True)())
    try:
        assert await asyncio.to_thread(entered.wait, 10)
        _, _, assistant = await start_chat(socket)
        frames, done = await read_answer(socket, assistant["id"])
        assert joined(frames) == "Streamed past a busy thread."
        assert done["status"] == "complete"
        assert not holder.done()
    finally:
        release.set()
        await holder


async def test_reconnect_mid_stream_gets_snapshot_then_live_deltas(
    open_socket, ada, chat_config, fake_upstream
):
    fake_upstream.behave(reply=LONG_REPLY, chunk_delay=0.03)
    socket = await open_socket(ada)
    conversation, _, assistant = await start_chat(socket)
    await socket.receive()
    await socket.receive()
    await socket.close()

    again = await open_socket(ada)
    await again.send("chat.subscribe", conversation=conversation["id"])
    frames, done = await read_answer(again, assistant["id"])
    assert frames[0]["type"] == "message.snapshot"
    assert frames[0]["seq"] >= 2
    assert_contiguous(frames)
    assert joined(frames) == LONG_REPLY == done["content"]


async def test_second_socket_of_the_same_user_sees_the_stream(
    open_socket, ada, chat_config, fake_upstream
):
    fake_upstream.behave(reply="One.")
    writer = await open_socket(ada)
    conversation, _, first = await start_chat(writer)
    await read_answer(writer, first["id"])
    await writer.receive_until("conversation.updated")

    watcher = await open_socket(ada)
    await watcher.send("chat.subscribe", conversation=conversation["id"])
    assert (await watcher.receive())["type"] == "conversation.idle"

    fake_upstream.behave(reply=LONG_REPLY, chunk_delay=0.005)
    await writer.send("chat.send", conversation=conversation["id"], parent=None, content="More")
    seen = await watcher.receive_until("message.created")
    assert seen[-1]["message"]["role"] == "user"
    answer = (await watcher.receive_until("message.created"))[-1]["message"]
    frames, done = await read_answer(watcher, answer["id"])
    assert_contiguous(frames)
    assert joined(frames) == LONG_REPLY == done["content"]
    _, writer_done = await read_answer(writer, answer["id"])
    assert writer_done == done


async def test_subscribe_after_the_end_sends_the_missed_done(
    open_socket, ada, chat_config, fake_upstream
):
    fake_upstream.behave(reply=LONG_REPLY, chunk_delay=0.01)
    socket = await open_socket(ada)
    conversation, _, assistant = await start_chat(socket)
    await socket.receive()
    await socket.close()
    await generation_engine().wait_idle()

    again = await open_socket(ada)
    await again.send("chat.subscribe", conversation=conversation["id"], message=assistant["id"])
    done = await again.receive()
    assert done["type"] == "message.done"
    assert done["content"] == LONG_REPLY
    assert (await again.receive())["type"] == "conversation.idle"


# --- branches ------------------------------------------------------------------------------------


async def test_regenerate_makes_a_sibling_answer(open_socket, ada, chat_config, fake_upstream):
    fake_upstream.behave(reply="First try.")
    socket = await open_socket(ada)
    _, question, first = await start_chat(socket)
    await read_answer(socket, first["id"])
    fake_upstream.behave(reply="Second try.")
    await socket.send("chat.regenerate", message=first["id"])
    created = (await socket.receive_until("message.created"))[-1]["message"]
    assert created["role"] == "assistant"
    assert created["parent"] == question["id"]
    assert created["id"] != first["id"]
    _, done = await read_answer(socket, created["id"])
    assert done["content"] == "Second try."
    assert (await message_row(first["id"])).content == "First try."


async def test_edit_makes_a_sibling_question_and_its_answer(
    open_socket, ada, chat_config, fake_upstream
):
    fake_upstream.behave(reply="About cats.")
    socket = await open_socket(ada)
    _, question, first = await start_chat(socket, content="Tell me about cats")
    await read_answer(socket, first["id"])
    fake_upstream.behave(reply="About dogs.")
    await socket.send("chat.edit", message=question["id"], content="Tell me about dogs")
    edited = (await socket.receive_until("message.created"))[-1]["message"]
    answer = (await socket.receive_until("message.created"))[-1]["message"]
    assert edited["role"] == "user"
    assert edited["parent"] == question["parent"]
    assert edited["content"] == "Tell me about dogs"
    assert answer["parent"] == edited["id"]
    _, done = await read_answer(socket, answer["id"])
    assert done["content"] == "About dogs."
    assert fake_upstream.requests[-1].json["messages"][-1]["content"] == "Tell me about dogs"
    assert (await message_row(question["id"])).content == "Tell me about cats"


# --- provider failures ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "code"), [(401, "missing_auth"), (429, "rate_limited"), (500, "upstream_error")]
)
async def test_upstream_error_status_ends_the_answer_with_an_error(
    open_socket, ada, chat_config, fake_upstream, status, code
):
    await database_sync_to_async(provider_config_set_token)(config=chat_config, token=SECRET)
    fake_upstream.behave(
        status=status, error_body={"error": {"message": f"bad key {SECRET}", "code": status}}
    )
    socket = await open_socket(ada)
    _, _, assistant = await start_chat(socket)
    _, done = await read_answer(socket, assistant["id"])
    assert done["status"] == "error"
    assert done["error"]["code"] == code
    assert SECRET not in json.dumps(done)
    row = await message_row(assistant["id"])
    assert row.status == Message.Status.ERROR
    assert row.error_code == code
    assert SECRET not in row.error_detail
    # The socket is still usable.
    await socket.send("chat.subscribe", conversation=row.conversation_id.hex)
    assert (await socket.receive_until("conversation.idle"))[-1]["type"] == "conversation.idle"


async def test_upstream_drop_mid_stream_keeps_the_partial_text(
    open_socket, ada, chat_config, fake_upstream
):
    fake_upstream.behave(reply=LONG_REPLY, drop_after=5)
    socket = await open_socket(ada)
    _, _, assistant = await start_chat(socket)
    deltas, done = await read_answer(socket, assistant["id"])
    assert done["status"] == "error"
    assert done["error"]["code"] == "upstream_dropped"
    assert done["content"] == joined(deltas) == "".join(deltas_of(LONG_REPLY)[:5])
    assert (await message_row(assistant["id"])).content == done["content"]


# --- ownership and bad input ---------------------------------------------------------------------


async def test_another_users_ids_are_rejected_everywhere(
    open_socket, ada, bob, chat_config, fake_upstream
):
    fake_upstream.behave(reply="Private answer.")
    owner = await open_socket(ada)
    conversation, question, answer = await start_chat(owner, content="my secret plan")
    await read_answer(owner, answer["id"])

    intruder = await open_socket(bob)
    attempts = [
        {"type": "chat.subscribe", "conversation": conversation["id"]},
        {"type": "chat.stop", "message": answer["id"]},
        {"type": "chat.regenerate", "message": answer["id"]},
        {"type": "chat.edit", "message": question["id"], "content": "mine now"},
        {"type": "chat.send", "conversation": conversation["id"], "content": "hi"},
    ]
    for attempt in attempts:
        await intruder.send(**{"type_": attempt.pop("type")}, **attempt, request_id="x")
        frame = await intruder.receive()
        assert frame == {
            "type": "error",
            "code": "not_found",
            "detail": "No such conversation or message.",
            "request_id": "x",
        }
    # A parent from someone else's conversation, in the intruder's own new conversation.
    await intruder.send("chat.send", conversation=None, parent=question["id"], content="hi")
    assert (await intruder.receive())["code"] == "not_found"
    # The owner's next answer reaches the owner only.
    await owner.send("chat.send", conversation=conversation["id"], content="again")
    await owner.receive_until("message.done")
    assert await intruder.nothing_more()
    assert [c.title for c in await conversation_rows(bob)] == []


@pytest.mark.parametrize(
    ("raw", "code"),
    [
        ("{not json", "bad_json"),
        ("[1, 2]", "bad_frame"),
        ('{"no": "type"}', "bad_frame"),
        ('{"type": "chat.dance"}', "unknown_type"),
        ('{"type": "chat.send", "conversation": null, "content": 5}', "invalid"),
        ('{"type": "chat.send", "conversation": null, "content": "   "}', "invalid"),
        ('{"type": "chat.send", "conversation": "nope", "content": "hi"}', "invalid"),
        ('{"type": "chat.send", "content": "hi", "options": {"temperature": "hot"}}', "invalid"),
        ('{"type": "chat.send", "content": "hi", "options": {"max_tokens": 0}}', "invalid"),
        ('{"type": "chat.send", "content": "hi", "options": {"evil": 1}}', "invalid"),
        ('{"type": "chat.stop"}', "invalid"),
        ('{"type": "chat.subscribe", "conversation": 12}', "invalid"),
        (f'{{"type": "chat.subscribe", "conversation": "{uuid.uuid4()}"}}', "not_found"),
        (f'{{"type": "chat.stop", "message": "{uuid.uuid4()}"}}', "not_found"),
        ('{"type": "chat.send", "content": "hi", "provider": "nobody"}', "provider_not_found"),
        ('{"type": "chat.send", "content": "hi", "model": "gpt-99"}', "model_not_found"),
        ('{"type": "chat.send", "content": "half a pair \\ud800"}', "invalid"),
        ('{"type": "chat.send", "content": "hi", "model": "a\\u0000b"}', "invalid"),
        ('{"type": "chat.send", "content": "hi", "options": {"system": "x\\u0000"}}', "invalid"),
    ],
)
async def test_bad_frames_get_an_error_and_the_socket_stays_open(
    open_socket, ada, chat_config, raw, code
):
    socket = await open_socket(ada)
    await socket.send_raw(raw)
    frame = await socket.receive()
    assert frame["type"] == "error"
    assert frame["code"] == code, frame
    assert frame["detail"]
    await socket.send("chat.subscribe", conversation=str(uuid.uuid4()), request_id="still-here")
    assert (await socket.receive())["request_id"] == "still-here"
    assert await conversation_rows(ada) == []


async def test_binary_and_oversize_frames_are_refused(open_socket, ada, chat_config, settings):
    settings.CHAT_MAX_CONTENT_BYTES = 1000
    socket = await open_socket(ada)
    await socket.send_raw(binary=b"\x00\x01")
    assert (await socket.receive())["code"] == "bad_frame"
    await socket.send("chat.send", conversation=None, content="x" * 1001, request_id="big")
    frame = await socket.receive()
    assert (frame["code"], frame["request_id"]) == ("too_large", "big")
    await socket.send("chat.send", conversation=None, content="é" * 501)
    assert (await socket.receive())["code"] == "too_large"
    assert await conversation_rows(ada) == []


async def test_concurrent_answers_per_user_are_limited(
    open_socket, ada, chat_config, fake_upstream, settings
):
    settings.CHAT_MAX_CONCURRENT_GENERATIONS = 1
    fake_upstream.behave(reply=LONG_REPLY, chunk_delay=0.05)
    socket = await open_socket(ada)
    _, _, assistant = await start_chat(socket)
    await socket.send("chat.send", conversation=None, content="another", request_id="second")
    frame = await socket.receive_until("error")
    assert frame[-1]["code"] == "rate_limited"
    assert frame[-1]["request_id"] == "second"
    await socket.send("chat.stop", message=assistant["id"])
    await read_answer(socket, assistant["id"])
    assert len(await conversation_rows(ada)) == 1


@pytest.mark.redis
async def test_follower_that_finds_frames_trimmed_resumes_from_a_snapshot(
    clean_engine, reads_through_redis, settings
):
    """A socket that falls behind a long answer's capped Redis Stream must not show a hole."""
    from conversations.answers import log_key
    from conversations.consumers import ChatConsumer
    from conversations.eventlog import event_log

    settings.CHAT_STREAM_MAXLEN = 5
    message_id, conversation_id = uuid.uuid4(), uuid.uuid4()
    log = event_log()
    key = log_key(message_id)
    await log.open(key)
    for seq in range(1, 401):
        await log.append(key, seq=seq, delta=f"d{seq} ", text_so_far=str)

    class Recorder(ChatConsumer):
        def __init__(self) -> None:
            self.sent: list[dict] = []
            self.done_sent = {}
            self.resynchronised = asyncio.Event()

        async def send_json(self, content, close=False) -> None:
            self.sent.append(content)
            if content["type"] == "message.snapshot":
                self.resynchronised.set()

    socket = Recorder()
    relay = asyncio.create_task(
        socket.relay(message_id, conversation_id, from_snapshot=False, row=None)
    )
    for seq in range(401, 404):
        await log.append(key, seq=seq, delta=f"d{seq} ", text_so_far=str)
    # The answer ends only once the follower has resynchronised (an answer that has ended gets
    # its done frame instead of a snapshot).
    await asyncio.wait_for(socket.resynchronised.wait(), 10)
    await log.finish(key, seq=403, done={"type": "message.done", "message": str(message_id)})
    await asyncio.wait_for(relay, 10)
    await log.discard(key)

    snapshot, *deltas, done = socket.sent
    assert snapshot["type"] == "message.snapshot"
    assert snapshot["content"] == "".join(f"d{i} " for i in range(1, snapshot["seq"] + 1))
    assert [d["seq"] for d in deltas] == list(range(snapshot["seq"] + 1, 404))
    assert done["type"] == "message.done"


async def test_subscribe_while_following_restarts_from_a_snapshot(
    open_socket, ada, chat_config, fake_upstream
):
    """A client that saw a gap subscribes again; it must get a snapshot, not silence."""
    fake_upstream.behave(reply=LONG_REPLY, chunk_delay=0.03)
    socket = await open_socket(ada)
    conversation, _, assistant = await start_chat(socket)
    await socket.receive()
    await socket.send("chat.subscribe", conversation=conversation["id"])
    seen = await socket.receive_until("message.snapshot")
    assert seen[-2]["type"] == "message.created"
    assert seen[-2]["message"]["id"] == assistant["id"]
    frames, done = await read_answer(socket, assistant["id"])
    assert_contiguous([seen[-1], *frames])
    assert joined([seen[-1], *frames]) == LONG_REPLY == done["content"]


async def test_next_send_renews_a_lapsed_group_membership(
    open_socket, ada, chat_config, fake_upstream
):
    """channels-redis expires group members after a day; a long-open tab must still hear of its
    own answers and of other tabs' messages."""
    from channels.layers import get_channel_layer

    from conversations.groups import conversation_group

    socket = await open_socket(ada)
    conversation, _, first = await start_chat(socket)
    await read_answer(socket, first["id"])
    await socket.receive_until("conversation.updated")
    # The membership lapses, as channels-redis's group expiry does it.
    layer = get_channel_layer()
    group = conversation_group(uuid.UUID(conversation["id"]))
    if hasattr(layer, "groups"):
        layer.groups.pop(group, None)
    else:
        await layer.connection(layer.consistent_hash(group)).delete(layer._group_key(group))

    await socket.send("chat.send", conversation=conversation["id"], content="Still there?")
    question = (await socket.receive_until("message.created"))[-1]["message"]
    answer = (await socket.receive_until("message.created"))[-1]["message"]
    _, done = await read_answer(socket, answer["id"])
    assert done["status"] == "complete"
    # Renewed: a message from another tab reaches this socket again.
    other_tab = await open_socket(ada)
    await other_tab.send("chat.regenerate", message=answer["id"])
    regenerated = (await socket.receive_until("message.created"))[-1]["message"]
    assert regenerated["parent"] == question["id"]


async def test_done_still_arrives_when_reading_the_stream_fails(
    open_socket, ada, chat_config, fake_upstream, monkeypatch
):
    from conversations import consumers

    async def unreadable(*args, **kwargs):
        raise ConnectionError("event log unreachable")

    fake_upstream.behave(reply=LONG_REPLY, chunk_delay=0.01)
    monkeypatch.setattr(consumers, "RELAY_ATTEMPTS", 1)
    monkeypatch.setattr(consumers.ChatConsumer, "relay_once", unreadable)
    socket = await open_socket(ada)
    _, _, assistant = await start_chat(socket)
    done = (await socket.receive_until("message.done"))[-1]
    assert done["message"] == assistant["id"]
    assert (done["status"], done["content"]) == ("complete", LONG_REPLY)


async def test_done_still_arrives_when_neither_the_stream_nor_the_group_reaches_the_socket(
    open_socket, ada, chat_config, fake_upstream, monkeypatch, settings
):
    """Redis restarted without its data: the log is gone and so is the socket's membership of
    the conversation's group. The socket reads the row until the answer ends."""
    from conversations import consumers

    async def unreadable(*args, **kwargs):
        raise ConnectionError("event log unreachable")

    async def group_lost(self, event):
        return None

    settings.CHAT_STALE_STREAM_SECONDS = 3  # the row is read every second
    fake_upstream.behave(reply=LONG_REPLY, chunk_delay=0.01)
    monkeypatch.setattr(consumers, "RELAY_ATTEMPTS", 1)
    monkeypatch.setattr(consumers.ChatConsumer, "relay_once", unreadable)
    monkeypatch.setattr(consumers.ChatConsumer, "chat_message_done", group_lost)
    socket = await open_socket(ada)
    _, _, assistant = await start_chat(socket)
    done = (await socket.receive_until("message.done"))[-1]
    assert done["message"] == assistant["id"]
    assert (done["status"], done["content"]) == ("complete", LONG_REPLY)


async def test_stopping_an_answer_whose_process_died_ends_it_at_once(
    open_socket, ada, chat_config, settings
):
    from tests.conversations.test_generation import stale_answer

    # Live answers refresh their row every 30 s here; this one has been silent for 60 s, while
    # the sweep would wait for 90.
    settings.CHAT_STALE_STREAM_SECONDS = 90
    orphan = await stale_answer(ada, content="half of it", age_seconds=60)
    socket = await open_socket(ada)
    await socket.send("chat.subscribe", conversation=str(orphan.conversation_id))
    assert (await socket.receive())["type"] == "message.created"
    snapshot = await socket.receive()
    assert (snapshot["type"], snapshot["content"]) == ("message.snapshot", "half of it")
    await socket.send("chat.stop", message=str(orphan.pk))
    done = await socket.receive()
    assert (done["type"], done["status"], done["content"]) == (
        "message.done",
        "stopped",
        "half of it",
    )
    row = await message_row(str(orphan.pk))
    assert (row.status, row.content) == (Message.Status.STOPPED, "half of it")


async def test_deleting_a_conversation_stops_its_running_answer(
    open_socket, ada, chat_config, fake_upstream
):
    from conversations import services

    fake_upstream.behave(reply=LONG_REPLY, chunk_delay=0.05)
    socket = await open_socket(ada)
    conversation, _, assistant = await start_chat(socket)
    await socket.receive()
    row = await database_sync_to_async(Conversation.objects.get)(pk=conversation["id"])
    await database_sync_to_async(services.conversation_delete)(conversation=row)
    done = (await socket.receive_until("message.done"))[-1]
    assert done["status"] == "stopped"
    assert fake_upstream.requests[-1].done.wait(5)
    assert fake_upstream.requests[-1].disconnected.is_set()
    assert not await database_sync_to_async(Message.objects.filter(pk=assistant["id"]).exists)()


async def test_answer_starts_and_ends_whole_when_the_channel_layer_refuses_every_call(
    open_socket, ada, chat_config, fake_upstream, monkeypatch
):
    """With hundreds of answers starting at once, the channel layer's connection pool ran dry
    and a group join timed out: the user got an `internal` error and the answer never started.
    The layer carries only other tabs' news; the asker's answer must not depend on it."""
    from channels.layers import get_channel_layer

    socket = await open_socket(ada)
    layer = get_channel_layer()
    calls = []

    async def no_connection_available(*args, **kwargs):
        calls.append(args[0] if args else None)
        raise ConnectionError("No connection available.")

    monkeypatch.setattr(layer, "group_add", no_connection_available)
    monkeypatch.setattr(layer, "group_send", no_connection_available)
    fake_upstream.behave(reply=LONG_REPLY, chunk_delay=0.005)

    await socket.send("chat.send", content="Hello")
    frames = await socket.receive_until("message.done")
    assert [f for f in frames if f["type"] == "error"] == []
    done = frames[-1]
    assert (done["status"], done["content"]) == ("complete", LONG_REPLY)
    text = "".join(f["delta"] for f in frames if f["type"] == "message.delta")
    assert text == LONG_REPLY
    # The layer was tried (the joins and announcements), and its failures cost nothing.
    assert calls
    saved = await database_sync_to_async(lambda: Message.objects.get(pk=done["message"]))()
    assert (saved.status, saved.content) == ("complete", LONG_REPLY)
