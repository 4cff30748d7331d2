"""How long a large import keeps other writers waiting: numbers to read, not a test.

Imports one OpenAI-style file of `--messages` messages into a throw-away SQLite database (or
DATABASE_URL) while another thread, standing for another user's chat, writes one message every
20 ms in its own short transaction; then deletes the imported conversation the same way:

    .venv/bin/python bench/import_contention.py [--messages 100000]

Reports each phase's duration, its write transactions and the longest time one of them held the
write lock (SQLite), and the other writer's waits.
"""

import argparse
import json
import os
import sys
import tempfile
import threading
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

from django.contrib.auth import get_user_model  # noqa: E402
from django.core.management import call_command  # noqa: E402
from django.db import OperationalError, connection, transaction  # noqa: E402

from conversations.models import Conversation, Message  # noqa: E402
from conversations.services import conversation_delete  # noqa: E402
from conversations.transfer import conversations_import  # noqa: E402


class OtherWriter(threading.Thread):
    """Another user's chat: a message saved every 20 ms, each in its own transaction."""

    def __init__(self, owner) -> None:
        super().__init__(daemon=True)
        self.owner = owner
        self.running = threading.Event()
        self.waits: list[float] = []
        self.errors: list[str] = []

    def run(self) -> None:
        conversation = Conversation.objects.create(owner=self.owner, title="other")
        self.running.set()
        while self.running.is_set():
            started = time.perf_counter()
            try:
                with transaction.atomic():
                    Message.objects.create(conversation=conversation, role="user", content="hi")
            except OperationalError as exc:
                self.errors.append(str(exc))
            self.waits.append(time.perf_counter() - started)
            time.sleep(0.02)
        connection.close()

    def report(self) -> dict:
        waits = sorted(self.waits)
        return {
            "other_writes": len(waits),
            "other_max_wait_ms": round(waits[-1] * 1000, 1) if waits else None,
            "other_p99_wait_ms": round(waits[int(len(waits) * 0.99)] * 1000, 1) if waits else None,
            "other_errors": len(self.errors),
        }


class LockHolds:
    """How long each write transaction of this thread's connection held SQLite's write lock:
    from BEGIN IMMEDIATE (which takes it) to the end of COMMIT (which frees it)."""

    def __init__(self) -> None:
        self.holds: list[float] = []
        self._began: float | None = None
        self._commit = connection._commit

    def __enter__(self) -> "LockHolds":
        connection.ensure_connection()
        self._wrapper = connection.execute_wrapper(self._execute)
        self._wrapper.__enter__()
        connection._commit = self._timed_commit
        return self

    def __exit__(self, *exc_info) -> None:
        connection._commit = self._commit
        self._wrapper.__exit__(*exc_info)

    def _execute(self, execute, sql, params, many, context):
        if sql.startswith("BEGIN"):
            self._began = time.perf_counter()
        return execute(sql, params, many, context)

    def _timed_commit(self):
        try:
            return self._commit()
        finally:
            if self._began is not None:
                self.holds.append(time.perf_counter() - self._began)
                self._began = None

    def report(self) -> dict:
        holds = sorted(self.holds)
        return {
            "transactions": len(holds),
            "lock_max_hold_ms": round(holds[-1] * 1000, 1) if holds else None,
            "lock_p99_hold_ms": round(holds[int(len(holds) * 0.99)] * 1000, 1) if holds else None,
            "lock_median_hold_ms": round(holds[len(holds) // 2] * 1000, 1) if holds else None,
        }


def timed_with_other_writer(owner, work) -> dict:
    writer = OtherWriter(owner)
    writer.start()
    writer.running.wait()
    started = time.perf_counter()
    with LockHolds() as holds:
        work()
    elapsed = time.perf_counter() - started
    writer.running.clear()
    writer.join()
    return {"seconds": round(elapsed, 2), **holds.report(), **writer.report()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=100_000)
    args = parser.parse_args()
    call_command("migrate", verbosity=0)
    users = get_user_model().objects
    importer = users.create_user(username="importer")
    other = users.create_user(username="other")
    roles = ("user", "assistant")
    messages = [
        {"role": roles[i % 2], "content": f"Message {i}: " + "some words here " * 8}
        for i in range(args.messages)
    ]
    raw = json.dumps({"messages": messages}).encode()
    created: list[Conversation] = []
    results = {
        "database": connection.vendor,
        "messages": args.messages,
        "import": timed_with_other_writer(
            other, lambda: created.extend(conversations_import(user=importer, raw=raw))
        ),
        "delete": timed_with_other_writer(
            other, lambda: conversation_delete(conversation=created[0])
        ),
    }
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
