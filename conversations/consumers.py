"""The /ws/chat/ consumer (protocol: docs/protocol.md).

Thin on purpose: it validates each frame (conversations.protocol), calls one engine or selector
function, and forwards frames. Nothing long runs inside a receive handler, because Channels reads
the next frame only after the handler returns: answers run as engine tasks, and each answer this
socket watches is read from its event log by a follower task of the socket's own.
"""

import asyncio
import logging
import uuid
from collections.abc import AsyncIterator, Sequence
from contextlib import aclosing, suppress
from typing import Any

from asgiref.sync import sync_to_async
from channels.consumer import get_handler_name
from channels.generic.websocket import AsyncJsonWebsocketConsumer
from django.conf import settings
from django.db import DatabaseError

from chatsite.db import db_call
from conversations import answers, engine, frames, generation, recovery, selectors
from conversations.errors import ChatError
from conversations.eventlog import Event, event_log
from conversations.groups import conversation_group, user_group
from conversations.models import Message
from conversations.protocol import (
    CLOSE_UNAUTHENTICATED,
    ChatEdit,
    ChatRegenerate,
    ChatSend,
    ChatStop,
    ChatSubscribe,
    frame_decode,
    frame_parse,
    request_id_of,
)
from conversations.rendering import message_html
from conversations.services import NOT_FOUND
from conversations.sessions import session_signs_in

logger = logging.getLogger(__name__)

# Conversations one socket may watch at once (a tab watches one or two).
MAX_SUBSCRIPTIONS = 20
# Messages already announced / answers already reported as done on this socket, remembered so
# that the same news arriving by two paths (directly and through the group) goes out once.
SENT_MEMORY = 500
# How long an answer's done frame, announced through the group, waits for this socket's reader
# of the answer's log to deliver it first (after every delta) before being sent anyway.
DONE_GRACE_SECONDS = 2.0
DATABASE_UNAVAILABLE = "The database cannot be reached right now; try again in a moment."
# A reader of an answer's log that fails (a Redis blip) starts over from a snapshot this often.
RELAY_ATTEMPTS = 5


def _remember(memory: dict[uuid.UUID, None], key: uuid.UUID) -> bool:
    """Add `key`; False when it was already there. Keeps the newest SENT_MEMORY keys."""
    if key in memory:
        return False
    memory[key] = None
    while len(memory) > SENT_MEMORY:
        memory.pop(next(iter(memory)))
    return True


class ChatConsumer(AsyncJsonWebsocketConsumer):
    async def dispatch(self, message: dict[str, Any]) -> None:
        # Channels runs `close_old_connections` before every message a consumer handles (each
        # frame received, each group message), on asgiref's one thread-sensitive thread: with
        # hundreds of sockets, every one of their messages queued for that thread, each hop
        # waiting for the GIL while the loop streamed, and first tokens waited seconds for it.
        # Nothing this consumer does needs it: its database work runs on chatsite.db's threads,
        # which tidy their connections at every call, and what still runs on that thread (the
        # auth and session middleware, the session checks) goes through channels'
        # database_sync_to_async, which tidies before and after each call itself.
        handler = getattr(self, get_handler_name(message), None)
        if handler is None:
            raise ValueError(f"No handler for message type {message['type']}")
        await handler(message)

    async def connect(self) -> None:
        user = self.scope.get("user")
        if user is None or not user.is_authenticated:
            # Accepted first: a close before the handshake completes reaches the browser as a
            # failed handshake (code 1006), and the script could not tell "signed out" from
            # "server down" and would retry forever.
            await self.accept()
            await self.close(code=CLOSE_UNAUTHENTICATED)
            return
        self.user = user
        # Insertion-ordered, so the oldest subscription is the one dropped at the limit.
        self.subscriptions: dict[uuid.UUID, None] = {}
        self.followers: dict[uuid.UUID, asyncio.Task[None]] = {}
        self.created_sent: dict[uuid.UUID, None] = {}
        self.done_sent: dict[uuid.UUID, None] = {}
        self.background: set[asyncio.Task[None]] = set()
        # Before accepting: a sign-out from here on reaches this socket. Should the channel
        # layer fail, the socket still works; its periodic session check still ends it.
        try:
            await self.channel_layer.group_add(user_group(user.pk), self.channel_name)
        except Exception:
            logger.warning("chat socket: joining the user's group failed", exc_info=True)
        await self.accept()
        self.run_in_background(self.recheck_session_forever())
        await engine.generation_engine().ensure_started()

    async def disconnect(self, code: int) -> None:
        # The answers go on: only this socket's reading of them stops.
        for task in [*getattr(self, "followers", {}).values(), *getattr(self, "background", ())]:
            task.cancel()
        groups = [conversation_group(id_) for id_ in getattr(self, "subscriptions", {})]
        if hasattr(self, "user"):
            groups.append(user_group(self.user.pk))
        for group in groups:
            with suppress(Exception):
                await self.channel_layer.group_discard(group, self.channel_name)

    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
        request_id = None
        try:
            data = frame_decode(text_data, bytes_data)
            request_id = request_id_of(data)
            await self.dispatch_frame(frame_parse(data))
        except ChatError as exc:
            await self.send_json(
                frames.error(code=exc.code, detail=exc.detail, request_id=request_id)
            )
        except DatabaseError:
            # The database is restarting or unreachable: nothing is wrong with the request.
            logger.warning("chat socket: the database is unavailable", exc_info=True)
            await self.send_json(
                frames.error(code="unavailable", detail=DATABASE_UNAVAILABLE, request_id=request_id)
            )
        except Exception:
            # A bug must cost one request, not the socket (and the user's other answers with it).
            logger.exception("chat socket: a frame failed")
            await self.send_json(
                frames.error(code="internal", detail="Something went wrong.", request_id=request_id)
            )

    async def dispatch_frame(self, frame: Any) -> None:
        match frame:
            case ChatSend() | ChatRegenerate() | ChatEdit():
                await self.start_answer(frame)
            case ChatStop():
                await generation.generation_stop(user=self.user, message_id=frame.message)
            case ChatSubscribe():
                await self.subscribe(frame)

    # --- client requests -------------------------------------------------------------------

    async def start_answer(self, frame: ChatSend | ChatRegenerate | ChatEdit) -> None:
        exchange = await generation.exchange_open(user=self.user, request=frame)
        if exchange.conversation_created:
            await self.send_json(
                frames.conversation_created(exchange.conversation, request_id=frame.request_id)
            )
        # This socket hears of its own messages directly, not through the group: a group
        # membership can lapse (channels-redis expires them after a day) and must never cost
        # the user the answer they just asked for.
        for message in (exchange.user_message, exchange.assistant_message):
            if message is not None and _remember(self.created_sent, message.id):
                await self.send_json(frames.message_created(message, request_id=frame.request_id))
        answer = exchange.assistant_message
        self.follow(answer.id, exchange.conversation.id, from_snapshot=False)
        await generation.generation_start(exchange=exchange)
        # After the start, and without holding this frame: the group brings this socket other
        # tabs' news of the conversation (titles, their messages), never the answer itself. When
        # many answers start at once the channel layer's pool is the busiest thing in the
        # process; waiting for it here once cost the answer itself (its start never ran).
        self.run_in_background(self.join_or_warn(exchange.conversation.id))

    async def subscribe(self, frame: ChatSubscribe) -> None:
        conversation = await db_call(selectors.conversation_get_for_user)(
            user=self.user, conversation_id=frame.conversation
        )
        if conversation is None:
            raise ChatError("not_found", NOT_FOUND)
        # Joined before looking for running answers: one that starts in between is announced
        # to this socket; one found both ways is followed once.
        await self.join(conversation.id)
        if frame.message is not None:
            await self.send_done_if_ended(conversation.id, frame.message)
        running = await db_call(selectors.message_list_streaming)(conversation_id=conversation.id)
        if not running:
            await self.send_json(frames.conversation_idle(conversation.id))
            return
        for message in running:
            # An explicit subscribe is a client asking to be brought in step (after a reconnect
            # or a gap it saw): its reading of each answer starts over from a snapshot.
            _remember(self.created_sent, message.id)
            await self.send_json(frames.message_created(message, request_id=None))
            self.follow(
                message.id, conversation.id, from_snapshot=True, checkpoint=message, restart=True
            )

    async def send_done_if_ended(self, conversation_id: uuid.UUID, message_id: uuid.UUID) -> None:
        message = await db_call(selectors.message_get_for_user)(
            user=self.user, message_id=message_id
        )
        if (
            message is None
            or message.conversation_id != conversation_id
            or message.role != Message.Role.ASSISTANT
            or message.status == Message.Status.STREAMING
        ):
            return
        await self.send_done(await self.done_frame_from_row(message))

    async def join(self, conversation_id: uuid.UUID) -> None:
        if (
            conversation_id not in self.subscriptions
            and len(self.subscriptions) >= MAX_SUBSCRIPTIONS
        ):
            # Forget the conversation this socket has watched longest; a tab shows one at a time.
            oldest = next(iter(self.subscriptions))
            del self.subscriptions[oldest]
            await self.channel_layer.group_discard(conversation_group(oldest), self.channel_name)
        self.subscriptions.pop(conversation_id, None)
        self.subscriptions[conversation_id] = None
        # Every time, not only the first: adding again renews a membership that channels-redis
        # would otherwise expire after a day.
        await self.channel_layer.group_add(conversation_group(conversation_id), self.channel_name)

    async def join_or_warn(self, conversation_id: uuid.UUID) -> None:
        ok = await answers.best_effort(
            "joining the conversation's group", lambda: self.join(conversation_id)
        )
        if not ok:
            # The answer goes on (this socket follows its log); only other tabs' news of this
            # conversation is missed until the next subscribe.
            self.subscriptions.pop(conversation_id, None)

    # --- following answers -----------------------------------------------------------------

    def follow(
        self,
        message_id: uuid.UUID,
        conversation_id: uuid.UUID,
        *,
        from_snapshot: bool,
        checkpoint: Message | None = None,
        restart: bool = False,
    ) -> None:
        if message_id in self.done_sent:
            return
        task = self.followers.get(message_id)
        if task is not None and not task.done():
            if not restart:
                return
            task.cancel()
        task = asyncio.create_task(
            self.relay(message_id, conversation_id, from_snapshot=from_snapshot, row=checkpoint)
        )
        self.followers[message_id] = task
        task.add_done_callback(
            lambda done: (
                self.followers.pop(message_id) if self.followers.get(message_id) is done else None
            )
        )

    async def relay(
        self,
        message_id: uuid.UUID,
        conversation_id: uuid.UUID,
        *,
        from_snapshot: bool,
        row: Message | None,
    ) -> None:
        """Forward one answer's frames: deltas with contiguous seq, then its done frame."""
        failures = 0
        while True:
            try:
                await self.relay_once(message_id, conversation_id, from_snapshot, row)
                return
            except asyncio.CancelledError:
                raise
            except Exception:
                failures += 1
                logger.warning(
                    "chat socket: following answer %s failed (%d)",
                    message_id,
                    failures,
                    exc_info=True,
                )
                if failures >= RELAY_ATTEMPTS:
                    # Live frames are out of reach; the row still tells how the answer ends
                    # (the group may have lost this socket too, if Redis restarted).
                    await self.relay_without_log(message_id, conversation_id, None)
                    return
                await asyncio.sleep(0.2 * 2**failures)
                # Where this reader had got to is unknown now: a snapshot puts it back in step.
                from_snapshot = True

    async def relay_once(
        self,
        message_id: uuid.UUID,
        conversation_id: uuid.UUID,
        from_snapshot: bool,
        row: Message | None,
    ) -> None:
        log = event_log()
        key = answers.log_key(message_id)
        cursor, expected = None, 1
        while True:
            if from_snapshot:
                snapshot = await log.snapshot(key)
                if snapshot is None:
                    await self.relay_without_log(message_id, conversation_id, row)
                    return
                if snapshot.done is not None:
                    await self.send_done(snapshot.done)
                    return
                await self.send_json(
                    frames.message_snapshot(
                        message_id=message_id,
                        conversation_id=conversation_id,
                        seq=snapshot.seq,
                        content=snapshot.content,
                    )
                )
                cursor, expected = snapshot.cursor, snapshot.seq + 1
            outcome = await self.relay_events(
                log.follow(key, cursor), expected, message_id, conversation_id
            )
            if outcome == "done":
                return
            if outcome == "ended":
                # The log expired before its end was read: the row knows how it ended.
                await self.relay_without_log(message_id, conversation_id, None)
                return
            # Frames this socket never saw were trimmed from the log: start over from a
            # snapshot rather than show a hole.
            from_snapshot = True

    async def relay_events(
        self,
        events: AsyncIterator[Event],
        expected: int,
        message_id: uuid.UUID,
        conversation_id: uuid.UUID,
    ) -> str:
        """Forward an answer's events from seq `expected` on. Returns "done" after its done frame,
        "gap" when the next event is beyond `expected`, "ended" when the log ended first."""
        # Closed as soon as this returns, so the process's reader stops handing this socket
        # entries at once.
        async with aclosing(events):
            async for event in events:
                if event.done is not None:
                    await self.send_done(event.done)
                    return "done"
                if event.seq < expected:
                    continue
                if event.snapshot is not None:
                    # An append was lost: the writer put the whole text in the log instead.
                    frame = frames.message_snapshot(
                        message_id=message_id,
                        conversation_id=conversation_id,
                        seq=event.seq,
                        content=event.snapshot,
                    )
                elif event.seq == expected:
                    frame = frames.message_delta(
                        message_id=message_id,
                        conversation_id=conversation_id,
                        seq=event.seq,
                        delta=event.delta,
                    )
                else:
                    return "gap"
                await self.send_json(frame)
                expected = event.seq + 1
        return "ended"

    async def relay_without_log(
        self, message_id: uuid.UUID, conversation_id: uuid.UUID, row: Message | None
    ) -> None:
        """An answer with no event log: ended long ago, or its process died. Either way the row
        holds the text; a dead one is marked interrupted if it has gone stale."""
        row = row or await db_call(selectors.message_get)(message_id=message_id)
        if row is None or await self.end_from_row(row):
            return
        # Alive elsewhere but unreadable here: show the checkpoint; its end arrives as a
        # `chat.message.done` from whoever ends it, or is read from the row below.
        await self.send_json(
            frames.message_snapshot(
                message_id=message_id, conversation_id=conversation_id, seq=0, content=row.content
            )
        )
        await self.watch_row_until_done(message_id)

    async def watch_row_until_done(self, message_id: uuid.UUID) -> None:
        """Read the row now and then until the answer ends (its writer saves it, or the stale
        sweep marks it interrupted): the group's done frame may never come when Redis lost this
        socket's membership, and a socket must not wait for ever."""
        while message_id not in self.done_sent:
            await asyncio.sleep(answers.liveness_seconds())
            row = await db_call(selectors.message_get)(message_id=message_id)
            if row is None or await self.end_from_row(row):
                return

    async def end_from_row(self, row: Message) -> bool:
        """Whether the row shows the answer over: ended (its done frame is sent) or left by a
        dead process (marked interrupted now, announced to every socket of the conversation,
        this one included)."""
        if row.status != Message.Status.STREAMING:
            await self.send_done(await self.done_frame_from_row(row))
            return True
        if row.checkpointed_at is None or row.checkpointed_at < answers.stale_cutoff():
            await recovery.message_interrupt_and_announce(message_id=row.id)
            return True
        return False

    async def done_frame_from_row(self, message: Message) -> dict[str, Any]:
        html = await sync_to_async(message_html, thread_sensitive=False)(message)
        return frames.message_done_from_row(message, html=html)

    async def send_done(self, frame: dict[str, Any], then: Sequence[dict[str, Any]] = ()) -> None:
        """The answer's end, once per socket, then what came with it (a new title): those are
        sent even when the end already went out through the answer's log."""
        if _remember(self.done_sent, uuid.UUID(frame["message"])):
            await self.send_json(frame)
        for follow_up in then:
            await self.send_json(follow_up)

    # --- the session behind the socket (conversations.sessions) ------------------------------

    def run_in_background(self, work) -> None:
        task = asyncio.create_task(work)
        self.background.add(task)
        task.add_done_callback(self.background.discard)

    async def close_unless_signed_in(self) -> bool:
        session = self.scope.get("session")
        key = session.session_key if session is not None else None
        if await session_signs_in(session_key=key, user_id=self.user.pk):
            return False
        await self.close(code=CLOSE_UNAUTHENTICATED)
        return True

    async def recheck_session_forever(self) -> None:
        while True:
            await asyncio.sleep(settings.CHAT_SESSION_RECHECK_SECONDS)
            try:
                if await self.close_unless_signed_in():
                    return
            except Exception:
                logger.warning("chat socket: checking the session failed", exc_info=True)

    async def chat_session_recheck(self, event: dict[str, Any]) -> None:
        """Sent to the user's group on sign-out, password change, deactivation."""
        session = self.scope.get("session")
        if event.get("ended_session") and session is not None:
            if event["ended_session"] == session.session_key:
                await self.close(code=CLOSE_UNAUTHENTICATED)
                return
        await self.close_unless_signed_in()

    # --- control messages from the channel layer (group of each subscribed conversation) ----

    async def chat_messages_created(self, event: dict[str, Any]) -> None:
        """A new exchange's messages (the user's, then the answer's placeholder) in one message."""
        for frame in event["frames"]:
            await self.message_created_relay(frame)

    async def chat_message_created(self, event: dict[str, Any]) -> None:
        # One message alone: what processes of the previous release send during an upgrade.
        await self.message_created_relay(event["frame"])

    async def message_created_relay(self, frame: dict[str, Any]) -> None:
        message = frame["message"]
        message_id = uuid.UUID(message["id"])
        if not _remember(self.created_sent, message_id):
            return
        await self.send_json(frame)
        if (
            message["role"] == Message.Role.ASSISTANT
            and message["status"] == Message.Status.STREAMING
        ):
            self.follow(message_id, uuid.UUID(message["conversation"]), from_snapshot=False)

    async def chat_conversation_updated(self, event: dict[str, Any]) -> None:
        await self.send_json(event["frame"])

    async def chat_message_done(self, event: dict[str, Any]) -> None:
        frame, then = event["frame"], event.get("then", ())
        task = self.followers.get(uuid.UUID(frame["message"]))
        if task is None or task.done():
            await self.send_done(frame, then)
            return
        # This socket's reader of the answer delivers the end itself, after the last delta;
        # give it a moment (without holding up this socket's other frames), then stop waiting.
        pending = asyncio.create_task(self.send_done_after(task, frame, then))
        self.background.add(pending)
        pending.add_done_callback(self.background.discard)

    async def send_done_after(
        self, follower: asyncio.Task[None], frame: dict[str, Any], then: Sequence[dict[str, Any]]
    ) -> None:
        await asyncio.wait([follower], timeout=DONE_GRACE_SECONDS)
        if not follower.done():
            follower.cancel()
        await self.send_done(frame, then)
