"""A large import or delete (conversations.transfer, services.conversation_delete) runs in a
thread, as in the server, while another user's answer streams and is saved: the bulk write
leaves SQLite's single write lock free between its short transactions.

Each bulk write is held half-way, between two of its transactions, until the other user's answer
is saved; a bulk write that kept one transaction open would keep that answer from being saved
(and the test fails on its frame timeout or on "database is locked")."""

import asyncio
import threading

import pytest
from channels.db import database_sync_to_async
from django.db import connection

from conversations import services, transfer
from conversations.models import Conversation, Message
from tests.conversations import page_factories as make
from tests.conversations.conftest import FRAME_TIMEOUT
from tests.fake_upstream import deltas_of

pytestmark = pytest.mark.django_db(transaction=True)

REPLY = "Saved while someone else's bulk write was running."
# Generous: a loaded machine shares two cores between the bulk write and the chat.
HALFWAY_TIMEOUT = 60


class HeldHalfway:
    """Wraps a batch generator: after `after` batches it waits (between transactions) until
    released, and tells the test it got there."""

    def __init__(self, batches, after: int = 2) -> None:
        self.batches = batches
        self.after = after
        self.reached = threading.Event()
        self.release = threading.Event()

    def __call__(self, *args):
        for number, batch in enumerate(self.batches(*args)):
            if number == self.after:
                self.reached.set()
                self.release.wait(HALFWAY_TIMEOUT)
            yield batch


def in_thread(work) -> tuple[threading.Thread, list[BaseException]]:
    errors: list[BaseException] = []

    def run() -> None:
        try:
            work()
        except BaseException as exc:  # reported by the test, not lost in the thread
            errors.append(exc)
        finally:
            connection.close()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread, errors


async def chat_answer_saved(open_socket, user) -> Message:
    """Another user's chat, start to end: the frames it sees, and the row that was saved."""
    socket = await open_socket(user)
    await socket.send("chat.send", conversation=None, parent=None, content="Hello")
    frames = await socket.receive_until("message.done", wait=FRAME_TIMEOUT * 3)
    assert not [frame for frame in frames if frame["type"] == "error"], frames
    done = frames[-1]
    assert done["status"] == "complete", done
    return await database_sync_to_async(Message.objects.get)(pk=done["message"])


async def finish(held: HeldHalfway, thread: threading.Thread, errors: list) -> None:
    held.release.set()
    await asyncio.to_thread(thread.join, HALFWAY_TIMEOUT)
    assert not thread.is_alive()
    assert not errors, errors


async def test_another_users_chat_saves_while_a_large_import_is_half_written(
    ada, grace, chat_config, fake_upstream, open_socket, monkeypatch
):
    fake_upstream.behave(reply=REPLY)
    held = HeldHalfway(transfer._batches)
    monkeypatch.setattr(transfer, "_batches", held)
    raw = b'{"title": "Big", "messages": [%s]}' % b", ".join(
        b'{"role": "user", "content": "line %d"}' % index for index in range(2000)
    )
    thread, errors = in_thread(lambda: transfer.conversations_import(user=ada, raw=raw))
    assert await asyncio.to_thread(held.reached.wait, HALFWAY_TIMEOUT)

    saved = await chat_answer_saved(open_socket, grace)

    assert (saved.status, saved.content) == (Message.Status.COMPLETE, "".join(deltas_of(REPLY)))
    # Half written and invisible to its owner until the import's last transaction.
    assert (
        await database_sync_to_async(
            Conversation.objects.filter(owner=ada, hidden_since__isnull=False).count
        )()
        == 1
    )
    await finish(held, thread, errors)
    imported = await database_sync_to_async(Conversation.objects.get)(owner=ada)
    assert imported.hidden_since is None
    count = await database_sync_to_async(Message.objects.filter(conversation=imported).count)()
    assert count == 2000


async def test_another_users_chat_saves_while_a_huge_conversation_is_half_deleted(
    ada, grace, chat_config, fake_upstream, open_socket, monkeypatch
):
    fake_upstream.behave(reply=REPLY)

    def huge_conversation() -> Conversation:
        conversation = make.conversation(ada, "Huge")
        make.chain(conversation, [f"line {index}" for index in range(2000)])
        return conversation

    huge = await database_sync_to_async(huge_conversation)()
    held = HeldHalfway(services._message_id_batches)
    monkeypatch.setattr(services, "_message_id_batches", held)
    thread, errors = in_thread(lambda: services.conversation_delete(conversation=huge))
    assert await asyncio.to_thread(held.reached.wait, HALFWAY_TIMEOUT)

    saved = await chat_answer_saved(open_socket, grace)

    assert saved.status == Message.Status.COMPLETE
    await finish(held, thread, errors)
    assert not await database_sync_to_async(Conversation.objects.filter(pk=huge.pk).exists)()
    assert not await database_sync_to_async(Message.objects.filter(conversation=huge).exists)()
