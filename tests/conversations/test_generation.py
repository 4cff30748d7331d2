"""The generation engine below the socket: how often it writes, what survives a dead process or a
shutdown, titles."""

import asyncio
import itertools
import threading
import time
from datetime import timedelta

import pytest
from channels.db import database_sync_to_async
from channels.layers import get_channel_layer
from django.db.backends.utils import CursorWrapper
from django.utils import timezone

from conversations import answers, engine
from conversations.answers import log_key
from conversations.engine import generation_engine
from conversations.eventlog import event_log
from conversations.generation import exchange_open, generation_start
from conversations.groups import ENGINES, conversation_group, generation_stop
from conversations.models import Conversation, Message
from conversations.protocol import ChatSend
from conversations.recovery import generation_recover_on_start, generation_recover_stale
from providers.models import ProviderConfig
from tests.conversations.test_consumers import read_answer, start_chat

pytestmark = pytest.mark.django_db(transaction=True)

WORDS = " ".join(f"w{i}" for i in range(60))


class MessageWrites:
    """Counts UPDATEs of the message table from every thread (the engine writes from a worker)."""

    def __init__(self, monkeypatch) -> None:
        self.statements: list[str] = []
        self._lock = threading.Lock()
        original = CursorWrapper.execute

        def execute(cursor, sql, params=None):
            if sql.lstrip().upper().startswith("UPDATE") and "conversations_message" in sql:
                with self._lock:
                    self.statements.append(sql)
            return original(cursor, sql, params)

        monkeypatch.setattr(CursorWrapper, "execute", execute)

    @property
    def count(self) -> int:
        return len(self.statements)


def send(content: str = "Hello", conversation=None) -> ChatSend:
    return ChatSend(conversation=conversation, parent=None, content=content)


async def run_answer(user, content="Hello"):
    exchange = await exchange_open(user=user, request=send(content))
    started = await generation_start(exchange=exchange)
    await started.task
    return exchange


# How long a test waits for the engine to save a row (generous: CI shares two cores).
ROW_TIMEOUT = 30


@database_sync_to_async
def row(message_id) -> Message:
    return Message.objects.get(pk=message_id)


async def row_when(message_id, condition) -> Message:
    """The row as soon as `condition(row)` holds (the engine saves in the background: a test
    waits for the save, not for a time)."""
    async with asyncio.timeout(ROW_TIMEOUT):
        while True:
            current = await row(message_id)
            if condition(current):
                return current
            await asyncio.sleep(0.05)


async def test_partial_text_is_saved_at_most_once_per_interval(
    clean_engine, ada, chat_config, fake_upstream, settings, monkeypatch
):
    settings.CHAT_CHECKPOINT_SECONDS = 0.5
    fake_upstream.behave(reply=WORDS, chunk_delay=0.03)
    writes = MessageWrites(monkeypatch)
    exchange = await exchange_open(user=ada, request=send())
    started = await generation_start(exchange=exchange)
    loop = asyncio.get_running_loop()
    began = loop.time()
    # Midway, the row already holds a prefix of the answer: a crash now would keep it.
    midway = (await row_when(exchange.assistant_message.id, lambda r: r.content)).content
    await started.task
    elapsed = loop.time() - began
    final = await row(exchange.assistant_message.id)
    assert final.content == WORDS
    assert midway and WORDS.startswith(midway) and midway != WORDS
    # 60 tokens, yet only a checkpoint per tick of the shared half-second clock the answer lived
    # through (the first tick may fall just after it started), plus the final save (the message
    # and its conversation's stamp).
    checkpoints = [sql for sql in writes.statements if "CASE" in sql.upper()]
    assert 1 <= len(checkpoints) <= elapsed // 0.5 + 1, writes.statements
    assert 1 <= writes.count - len(checkpoints) <= 2, writes.statements


async def test_checkpoints_of_many_answers_share_their_statements(
    clean_engine, ada, chat_config, fake_upstream, settings, monkeypatch
):
    """Answers streaming at the same time are checkpointed together: the number of checkpoint
    statements follows the time, not the number of answers (each one in its own transaction
    cost a thousand answers a thousand transactions per interval, through one writer)."""
    answers = 20
    settings.CHAT_CHECKPOINT_SECONDS = 0.3
    settings.CHAT_MAX_CONCURRENT_GENERATIONS = answers
    fake_upstream.behave(reply=WORDS, chunk_delay=0.02)
    exchanges = [await exchange_open(user=ada, request=send(f"Q{i}")) for i in range(answers)]
    writes = MessageWrites(monkeypatch)
    loop = asyncio.get_running_loop()
    began = loop.time()
    started = [await generation_start(exchange=exchange) for exchange in exchanges]
    await asyncio.gather(*(generation.task for generation in started))
    elapsed = loop.time() - began
    checkpoints = [sql for sql in writes.statements if "CASE" in sql.upper()]
    saved = [await row(exchange.assistant_message.id) for exchange in exchanges]
    assert [(message.status, message.content) for message in saved] == [
        (Message.Status.COMPLETE, WORDS)
    ] * answers
    # Every answer was checkpointed midway (1.2 s of tokens, a checkpoint every 0.3 s)...
    assert checkpoints, writes.statements
    # ...yet in about one statement per interval for all of them, not one per answer (which
    # would be 20 answers x 4 or more intervals).
    assert len(checkpoints) <= 2 * (elapsed / 0.3 + 2), (len(checkpoints), elapsed)
    per_answer = [sql for sql in writes.statements if "CASE" not in sql.upper()]
    # The rest: each answer's final save (and any liveness stamps), nothing per checkpoint.
    assert len(per_answer) <= answers * 2 + elapsed / 0.3 + 2, per_answer


async def test_silent_provider_still_refreshes_its_row(
    clean_engine, ada, chat_config, fake_upstream, settings
):
    """A slow first token must not look like a dead process to the stale sweep."""
    settings.CHAT_STALE_STREAM_SECONDS = 3  # liveness every second
    # Seconds of silence, several liveness periods, before the first token.
    fake_upstream.behave(reply="late", first_byte_delay=5)
    exchange = await exchange_open(user=ada, request=send())
    before = (await row(exchange.assistant_message.id)).checkpointed_at
    started = await generation_start(exchange=exchange)
    during = await row_when(exchange.assistant_message.id, lambda r: r.checkpointed_at > before)
    assert during.status == Message.Status.STREAMING
    assert during.content == ""
    assert await generation_recover_stale() == 0
    await started.task
    assert (await row(exchange.assistant_message.id)).status == Message.Status.COMPLETE


@database_sync_to_async
def stale_answer(user, *, content: str, age_seconds: float) -> Message:
    conversation = Conversation.objects.create(owner=user, title="t")
    question = Message.objects.create(conversation=conversation, role="user", content="q")
    answer = Message.objects.create(
        conversation=conversation,
        parent=question,
        role="assistant",
        status=Message.Status.STREAMING,
        content=content,
    )
    Message.objects.filter(pk=answer.pk).update(
        checkpointed_at=timezone.now() - timedelta(seconds=age_seconds)
    )
    return answer


async def test_stale_streaming_answer_becomes_interrupted_and_is_announced(
    open_socket, ada, chat_config, settings
):
    settings.CHAT_STALE_STREAM_SECONDS = 30
    dead = await stale_answer(ada, content="half an answ", age_seconds=120)
    alive = await stale_answer(ada, content="still going", age_seconds=1)
    socket = await open_socket(ada)
    await socket.send("chat.subscribe", conversation=str(alive.conversation_id))
    created = await socket.receive()
    assert (created["type"], created["message"]["id"]) == ("message.created", str(alive.pk))
    snapshot = await socket.receive()
    # No process writes `alive` here; the socket shows its checkpoint and waits for its end.
    assert snapshot["type"] == "message.snapshot"
    assert (snapshot["seq"], snapshot["content"]) == (0, "still going")

    watcher = await open_socket(ada)
    await watcher.send("chat.subscribe", conversation=str(dead.conversation_id))
    done = (await watcher.receive_until("message.done"))[-1]
    # Found stale on subscribe: interrupted there and then, keeping the checkpoint.
    assert done["type"] == "message.done"
    assert done["status"] == "interrupted"
    assert done["content"] == "half an answ"
    assert done["error"]["code"] == "interrupted"
    assert (await row(dead.pk)).status == Message.Status.INTERRUPTED
    assert (await row(alive.pk)).status == Message.Status.STREAMING

    await database_sync_to_async(Message.objects.filter(pk=alive.pk).update)(
        checkpointed_at=timezone.now() - timedelta(seconds=60)
    )
    assert await generation_recover_stale() == 1
    done = await socket.receive()
    assert (done["type"], done["status"], done["content"]) == (
        "message.done",
        "interrupted",
        "still going",
    )


def test_start_up_interrupts_every_streaming_answer_in_embedded_mode(ada, settings):
    settings.REDIS_URL = ""
    fresh = stale_answer.func(ada, content="fresh", age_seconds=0)
    old = stale_answer.func(ada, content="old", age_seconds=3600)
    assert generation_recover_on_start() == 2
    statuses = set(Message.objects.filter(pk__in=[fresh.pk, old.pk]).values_list("status"))
    assert statuses == {(Message.Status.INTERRUPTED,)}
    assert Message.objects.get(pk=fresh.pk).content == "fresh"


def test_start_up_interrupts_only_stale_answers_when_processes_share_redis(ada, settings):
    settings.REDIS_URL = "redis://127.0.0.1:6379/15"
    fresh = stale_answer.func(ada, content="fresh", age_seconds=0)
    old = stale_answer.func(ada, content="old", age_seconds=3600)
    assert generation_recover_on_start() == 1
    assert Message.objects.get(pk=fresh.pk).status == Message.Status.STREAMING
    assert Message.objects.get(pk=old.pk).status == Message.Status.INTERRUPTED


async def test_shutdown_mid_answer_keeps_the_text_as_interrupted(
    clean_engine, ada, chat_config, fake_upstream
):
    fake_upstream.behave(reply=WORDS, chunk_delay=0.05)
    exchange = await exchange_open(user=ada, request=send())
    started = await generation_start(exchange=exchange)
    async for _ in event_log().follow(log_key(started.message_id)):
        break  # the first frame is out: the answer is mid-way
    started.task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await started.task
    saved = await row(exchange.assistant_message.id)
    assert saved.status == Message.Status.INTERRUPTED
    assert saved.content and WORDS.startswith(saved.content)


async def test_a_stop_from_another_process_reaches_the_answer_through_the_engines_group(
    clean_engine, ada, chat_config, fake_upstream
):
    """What another process's socket does: hear of the answer in the conversation's group, then
    send the stop to the engines' group (a real Redis round trip in scale mode). The end comes
    back to the group with the conversation's new title in the same message."""
    fake_upstream.behave(reply=WORDS, chunk_delay=0.05)
    layer = get_channel_layer()
    tab = await layer.new_channel()
    exchange = await exchange_open(user=ada, request=send())
    await layer.group_add(conversation_group(exchange.conversation.id), tab)
    started = await generation_start(exchange=exchange)
    created = await asyncio.wait_for(layer.receive(tab), ROW_TIMEOUT)
    assert created["type"] == "chat.messages.created"

    await layer.group_send(ENGINES, generation_stop(started.message_id))
    await asyncio.wait_for(started.task, ROW_TIMEOUT)
    saved = await row(exchange.assistant_message.id)
    assert saved.status == Message.Status.STOPPED
    assert WORDS.startswith(saved.content) and saved.content != WORDS
    done = await asyncio.wait_for(layer.receive(tab), ROW_TIMEOUT)
    assert done["type"] == "chat.message.done"
    assert (done["frame"]["status"], done["frame"]["content"]) == ("stopped", saved.content)
    assert [(frame["type"], frame["conversation"]["title"]) for frame in done["then"]] == [
        ("conversation.updated", "Hello")
    ]


async def test_an_answer_costs_two_channel_layer_messages_and_no_group_changes(
    clean_engine, ada, chat_config, fake_upstream, monkeypatch
):
    """Per answer, the layer carries its announcement and its end (with the title): the engine
    joins the engines' group once per process, not a group per answer (a join and a leave each,
    Redis round trips that hundreds of answers starting at once queued for)."""
    fake_upstream.behave(reply="Short answer.")
    layer = get_channel_layer()
    calls: list[tuple[str, str]] = []
    for name in ("group_add", "group_discard", "group_send"):
        real = getattr(layer, name)

        async def counted(group, *args, _name=name, _real=real, **kwargs):
            calls.append((_name, group))
            return await _real(group, *args, **kwargs)

        monkeypatch.setattr(layer, name, counted)
    answers = 5
    exchanges = [await run_answer(ada, content=f"Question {i}") for i in range(answers)]
    await generation_engine().wait_idle()

    assert [call for call in calls if call[0] != "group_send"] == [("group_add", ENGINES)]
    sends = [group for name, group in calls if name == "group_send"]
    assert sorted(sends) == sorted(
        conversation_group(exchange.conversation.id) for exchange in exchanges for _ in (1, 2)
    )
    titles = await database_sync_to_async(
        lambda: sorted(Conversation.objects.values_list("title", flat=True))
    )()
    assert titles == [f"Question {i}" for i in range(answers)]


async def test_unexpected_failure_ends_the_answer_without_leaking_details(
    clean_engine, ada, chat_config, fake_upstream, monkeypatch
):
    async def broken(*args, **kwargs):
        raise RuntimeError("internal path /srv/secret")
        yield  # pragma: no cover

    monkeypatch.setattr(engine, "stream_chat", broken)
    exchange = await run_answer(ada)
    saved = await row(exchange.assistant_message.id)
    assert saved.status == Message.Status.ERROR
    assert saved.error_code == "internal"
    assert "/srv" not in saved.error_detail


async def test_first_answer_titles_the_conversation_from_its_first_words(
    clean_engine, ada, chat_config, fake_upstream
):
    exchange = await run_answer(
        ada, content="How do   I bake sourdough bread at home without a scale?"
    )
    await generation_engine().wait_idle()
    conversation = await database_sync_to_async(Conversation.objects.get)(
        pk=exchange.conversation.id
    )
    assert conversation.title == "How do I bake sourdough bread at home…"


async def test_title_provider_writes_the_title_when_configured(
    open_socket, ada, chat_config, fake_upstream, settings
):
    settings.CHAT_TITLE_PROVIDER = "fake"
    fake_upstream.behave(reply='"Baking bread."')
    socket = await open_socket(ada)
    _, _, answer = await start_chat(socket, content="Tell me how to bake bread")
    await read_answer(socket, answer["id"])
    updated = await socket.receive()
    assert updated["type"] == "conversation.updated"
    assert updated["conversation"]["title"] == "Baking bread"
    # The title request asked for a short answer.
    assert fake_upstream.requests[-1].json["max_tokens"] == 24


async def test_title_falls_back_to_first_words_when_the_title_provider_fails(
    clean_engine, ada, chat_config, fake_upstream, settings
):
    await database_sync_to_async(ProviderConfig.objects.create)(
        name="broken", provider_class="OpenAICompatible", api_base="http://127.0.0.1:9/v1"
    )
    settings.CHAT_TITLE_PROVIDER = "broken"
    exchange = await run_answer(ada, content="Short question")
    await generation_engine().wait_idle()
    conversation = await database_sync_to_async(Conversation.objects.get)(
        pk=exchange.conversation.id
    )
    assert conversation.title == "Short question"


async def test_failing_event_log_writes_do_not_end_the_answer(
    clean_engine, ada, chat_config, fake_upstream, monkeypatch
):
    """A Redis blip costs readers a live view (they resynchronise), never the answer."""
    log_class = type(event_log())  # in-process, or Redis in services mode
    original = log_class.append

    async def flaky(self, generation, *, seq, delta, text_so_far):
        if seq == 2:
            raise ConnectionError("event log unreachable")
        await original(self, generation, seq=seq, delta=delta, text_so_far=text_so_far)

    monkeypatch.setattr(log_class, "append", flaky)
    monkeypatch.setattr(answers, "LOG_ATTEMPTS", 2)
    fake_upstream.behave(reply=WORDS, chunk_delay=0.01)
    exchange = await run_answer(ada)
    saved = await row(exchange.assistant_message.id)
    assert (saved.status, saved.content) == (Message.Status.COMPLETE, WORDS)


async def test_event_log_expiry_is_renewed_during_steady_output(
    clean_engine, ada, chat_config, fake_upstream, settings, monkeypatch
):
    """An answer streaming for longer than its log's expiry must not lose its log midway."""
    log_class = type(event_log())
    original = log_class.keepalive
    renewed: list[str] = []

    async def keepalive(self, generation):
        renewed.append(generation)
        await original(self, generation)

    monkeypatch.setattr(log_class, "keepalive", keepalive)
    settings.CHAT_STALE_STREAM_SECONDS = 3  # renew every second
    fake_upstream.behave(reply=WORDS, chunk_delay=0.04)  # ~2.4 s of tokens, never silent
    exchange = await run_answer(ada)
    assert renewed.count(log_key(exchange.assistant_message.id)) >= 1


async def test_stored_options_cannot_redirect_the_provider(
    clean_engine, ada, chat_config, fake_upstream, encryption_keys
):
    """Options are stored per conversation (and arrive in imported files): only sampling options
    may reach the provider, or a user could send the admin's token to a server of their own."""
    from providers.services import provider_config_set_token

    await database_sync_to_async(provider_config_set_token)(
        config=chat_config, token="sk-admin-1234567890"
    )
    exchange = await run_answer(ada)
    await database_sync_to_async(Conversation.objects.filter(pk=exchange.conversation.id).update)(
        options={
            "api_base": "http://127.0.0.1:9/v1",
            "proxy": "http://127.0.0.1:9",
            "temperature": 0.2,
        }
    )
    follow_up = await exchange_open(
        user=ada, request=send("again", conversation=exchange.conversation.id)
    )
    assert follow_up.options == {"temperature": 0.2}
    await (await generation_start(exchange=follow_up)).task
    saved = await row(follow_up.assistant_message.id)
    assert saved.status == Message.Status.COMPLETE
    assert fake_upstream.requests[-1].json["temperature"] == 0.2


async def test_stream_chat_refuses_per_request_endpoint_and_credentials(chat_config):
    from contextlib import aclosing

    from providers.errors import BadRequestError
    from providers.services import stream_chat

    for option in ("api_base", "proxy", "api_key", "timeout"):
        with pytest.raises(BadRequestError, match=option):
            async with aclosing(
                stream_chat(chat_config, [{"role": "user", "content": "hi"}], **{option: "x"})
            ) as stream:
                async for _ in stream:
                    pass


async def test_finished_answer_keeps_its_rendering_for_the_pages(
    clean_engine, ada, chat_config, fake_upstream
):
    from conversations.rendering import RENDER_VERSION, message_html

    fake_upstream.behave(reply="Some **bold** words.")
    exchange = await run_answer(ada)
    saved = await row(exchange.assistant_message.id)
    assert saved.content_html_version == RENDER_VERSION
    assert "<strong>bold</strong>" in saved.content_html
    # Pages show the saved copy (no second rendering) until the rendering changes.
    saved.content_html = "<p>the saved copy</p>"
    assert message_html(saved) == "<p>the saved copy</p>"
    saved.content_html_version = RENDER_VERSION - 1
    assert "<strong>bold</strong>" in message_html(saved)


def frames_appended(monkeypatch) -> list[tuple[float, str]]:
    """Every frame the engine appends to an event log from now on: (when, delta)."""
    log_class = type(event_log())
    original = log_class.append
    appended: list[tuple[float, str]] = []

    async def timed(self, key, *, seq, delta, text_so_far):
        appended.append((time.monotonic(), delta))
        await original(self, key, seq=seq, delta=delta, text_so_far=text_so_far)

    monkeypatch.setattr(log_class, "append", timed)
    return appended


async def test_frames_leave_at_once_after_a_pause_and_at_most_once_per_interval(
    clean_engine, ada, chat_config, fake_upstream, settings, monkeypatch
):
    """Coalescing: the first token goes out alone, at once (leading edge); then, at full speed,
    frames leave no closer together than the interval, each carrying what arrived meanwhile."""
    settings.CHAT_FRAME_INTERVAL_MS = 50
    appended = frames_appended(monkeypatch)
    reply = " ".join(f"t{i}" for i in range(300))
    fake_upstream.behave(reply=reply, chunk_delay=0.002)
    exchange = await run_answer(ada)

    assert "".join(delta for _, delta in appended) == reply
    assert appended[0][1] == "t0 "
    # The last frame leaves as soon as the answer ends, with its done frame right behind it.
    times = [moment for moment, _ in appended[:-1]]
    gaps = [later - earlier for earlier, later in itertools.pairwise(times)]
    assert len(gaps) >= 5
    # A frame's time is taken just before it is written, so consecutive writes may sit a
    # fraction of a millisecond closer than the interval; never a whole millisecond.
    assert min(gaps) > 0.050 - 0.001, gaps
    saved = await row(exchange.assistant_message.id)
    assert saved.content == reply


async def test_a_stopped_checkpoint_writer_leaves_nobody_waiting(clean_engine):
    """An answer's final save waits for its last checkpoint: a writer cancelled mid-batch (the
    loop closing) must still settle every checkpoint it held."""
    import uuid

    from conversations.checkpoints import CheckpointWriter

    writer = CheckpointWriter()
    first = writer.save(message_id=uuid.uuid4(), content="a")
    second = writer.save(message_id=uuid.uuid4(), content=None)
    writer.task.cancel()
    done, pending = await asyncio.wait([first, second], timeout=5)
    assert pending == set()
    assert all(isinstance(future.exception(), RuntimeError) for future in done)


async def test_frames_carry_several_tokens_while_the_process_runs_late(
    clean_engine, ada, chat_config, fake_upstream, settings, monkeypatch
):
    """A token every 20 ms, each its own frame on an idle process (interval 16 ms). On a process
    running 200 ms late, a frame per token only made it later: frames then leave at least
    200 ms apart, each carrying what arrived meanwhile, and the answer still arrives whole."""
    settings.CHAT_FRAME_INTERVAL_MS = 16
    settings.CHAT_FRAME_INTERVAL_MAX_MS = 200
    appended = frames_appended(monkeypatch)
    reply = " ".join(f"t{i}" for i in range(40))
    fake_upstream.behave(reply=reply, chunk_delay=0.02)
    lag = generation_engine().lag
    monkeypatch.setattr(lag, "observe", lambda late: None)

    lag.seconds = 0.0
    await run_answer(ada)
    assert "".join(delta for _, delta in appended) == reply
    # Each token its own frame (a busy test machine may join some).
    assert len(appended) >= 20, appended

    appended.clear()
    lag.seconds = 0.5  # capped at 200 ms
    exchange = await run_answer(ada)
    assert "".join(delta for _, delta in appended) == reply
    # The last frame leaves when the answer ends, whenever that is.
    times = [moment for moment, _ in appended[:-1]]
    gaps = [later - earlier for earlier, later in itertools.pairwise(times)]
    assert gaps, appended
    assert min(gaps) > 0.200 - 0.001, gaps
    saved = await row(exchange.assistant_message.id)
    assert saved.content == reply


def test_the_frame_interval_follows_the_loop_s_lateness_between_its_bounds(settings):
    settings.CHAT_FRAME_INTERVAL_MS = 16
    settings.CHAT_FRAME_INTERVAL_MAX_MS = 250
    lag = engine.LoopLag()
    assert lag.frame_interval() == 0.016
    lag.observe(0.1)
    assert lag.frame_interval() == 0.1
    lag.observe(2.0)
    assert lag.frame_interval() == 0.25
    # Back down over a few quiet periods, not at the first.
    lag.observe(0.0)
    assert lag.frame_interval() == 0.25
    for _ in range(20):
        lag.observe(0.0)
    assert lag.frame_interval() == 0.016


async def test_the_lag_monitor_sees_a_blocked_loop(clean_engine):
    monitor = engine.LoopLag()
    task = asyncio.create_task(monitor.measure_forever())
    try:
        await asyncio.sleep(0.06)
        time.sleep(0.3)  # noqa: ASYNC251 -- the loop is blocked on purpose: whatever was due waits
        for _ in range(100):
            if monitor.seconds >= 0.1:
                break
            await asyncio.sleep(0.01)
    finally:
        task.cancel()
    assert monitor.seconds >= 0.1
