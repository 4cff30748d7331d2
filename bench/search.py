"""Search at scale: how long the history search takes over a big history. Numbers, not a test.

    .venv/bin/python -m bench.search [--conversations 2000] [--pg-messages 1000000] [--runs 30]

SQLite (always): a scratch database of 2,000 conversations x 50 messages, all one user's.
PostgreSQL (when DATABASE_URL points at one): a scratch database next to it, filled with COPY,
dropped afterwards. Each measures search_for_user as the history page calls it: a common word
(in every message), a rare word (in ten), and the fifth page of the common word. Writes a
Markdown section to docs/benchmarks/search.md (--output to change it).
"""

import argparse
import json
import os
import random
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_OUTPUT = ROOT / "docs" / "benchmarks" / "search.md"
COMMON, RARE = "the", "zephyrine"
RARE_COUNT = 10
PAGE = 5
WORDS_PER_MESSAGE = 30


def vocabulary(size: int = 5000) -> list[str]:
    rng = random.Random(7)
    letters = "abcdefghijklmnoprstuvwy"
    return ["".join(rng.choice(letters) for _ in range(rng.randint(4, 9))) for _ in range(size)]


def message_texts(count: int):
    """`count` messages of WORDS_PER_MESSAGE words, each with COMMON, RARE_COUNT with RARE."""
    rng = random.Random(11)
    words = vocabulary()
    rare_at = set(rng.sample(range(count), RARE_COUNT))
    for index in range(count):
        picked = rng.choices(words, k=WORDS_PER_MESSAGE - 1)
        picked.insert(rng.randrange(len(picked)), COMMON)
        if index in rare_at:
            picked[0] = RARE
        yield " ".join(picked)


def _pct(values: list[float], pct: int) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(pct / 100 * (len(ordered) - 1)))]


# --- building the data set (child process, Django set up on the scratch database) -------------


def build_sqlite(conversations: int, per_conversation: int):
    from django.contrib.auth import get_user_model

    from conversations.models import Conversation, Message

    user = get_user_model().objects.create_user(username="searcher")
    texts = message_texts(conversations * per_conversation)
    start = datetime.now(UTC) - timedelta(days=365)
    for number in range(conversations):
        chat = Conversation.objects.create(owner=user, title=f"Chat {number}")
        rows, parent = [], None
        for position in range(per_conversation):
            row = Message(
                id=uuid.uuid4(),
                conversation=chat,
                parent_id=parent,
                role="user" if position % 2 == 0 else "assistant",
                content=next(texts),
            )
            parent = row.id
            rows.append(row)
        Message.objects.bulk_create(rows)
        stamp = start + timedelta(minutes=number)
        Message.objects.filter(conversation=chat).update(created_at=stamp)
    return user


def build_postgres(messages: int, per_conversation: int = 50):
    """COPY straight into the tables, indexes built afterwards (much faster than maintaining
    them row by row)."""
    from django.contrib.auth import get_user_model
    from django.db import connection

    user = get_user_model().objects.create_user(username="searcher")
    conversations = messages // per_conversation
    start = datetime.now(UTC) - timedelta(days=365)
    chat_ids = [uuid.uuid4() for _ in range(conversations)]
    with connection.cursor() as cursor:
        cursor.execute("DROP INDEX IF EXISTS conversations_message_search_gin")
        cursor.execute("DROP INDEX IF EXISTS conversations_message_created_id")
        raw = cursor.cursor
        columns = (
            "id, owner_id, title, model, system_prompt, options, archived, created_at, updated_at"
        )
        with raw.copy(f"COPY conversations_conversation ({columns}) FROM STDIN") as copy:
            for number, chat_id in enumerate(chat_ids):
                stamp = start + timedelta(minutes=number)
                copy.write_row(
                    (chat_id, user.pk, f"Chat {number}", "", "", "{}", False, stamp, stamp)
                )
        columns = (
            "id, conversation_id, role, content, status, provider, model, error_code,"
            " error_detail, created_at"
        )
        texts = message_texts(messages)
        with raw.copy(f"COPY conversations_message ({columns}) FROM STDIN") as copy:
            for number, chat_id in enumerate(chat_ids):
                base = start + timedelta(minutes=number)
                for position in range(per_conversation):
                    copy.write_row(
                        (
                            uuid.uuid4(), chat_id, "user" if position % 2 == 0 else "assistant",
                            next(texts), "complete", "", "", "", "",
                            base + timedelta(milliseconds=position),
                        )
                    )  # fmt: skip
        cursor.execute(
            "CREATE INDEX conversations_message_search_gin"
            " ON conversations_message USING GIN (search_vector)"
        )
        cursor.execute(
            "CREATE INDEX conversations_message_created_id"
            " ON conversations_message (created_at, id)"
        )
        cursor.execute("ANALYZE")
    return user


def measure(user, runs: int) -> dict:
    from conversations.search import search_for_user

    def timed(**kwargs) -> list[float]:
        spent = []
        for _ in range(runs):
            began = time.perf_counter()
            search_for_user(user=user, **kwargs)
            spent.append(time.perf_counter() - began)
        return spent

    results = {"common": timed(query=COMMON), "rare": timed(query=RARE)}
    first = search_for_user(user=user, query=COMMON)
    if hasattr(first, "next_cursor"):
        cursor = first.next_cursor
        for _ in range(PAGE - 2):
            cursor = search_for_user(user=user, query=COMMON, cursor=cursor).next_cursor
        results["page"] = timed(query=COMMON, cursor=cursor)
    return {
        name: {"p50": _pct(values, 50) * 1000, "p95": _pct(values, 95) * 1000}
        for name, values in results.items()
    }


def child(vendor: str, size: int, runs: int) -> None:
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)
    began = time.perf_counter()
    if vendor == "sqlite":
        user = build_sqlite(size, 50)
        messages = size * 50
    else:
        user = build_postgres(size)
        messages = size
    built = time.perf_counter() - began
    result = {"messages": messages, "build_seconds": built, **measure(user, runs)}
    print(json.dumps(result))


# --- the parent: scratch databases, the report --------------------------------------------------


def _env(database_url: str) -> dict[str, str]:
    from cryptography.fernet import Fernet

    env = dict(os.environ)
    env.update(
        {
            "DATABASE_URL": database_url,
            "REDIS_URL": "",
            "ENV_FILE": "",
            "DEBUG": "false",
            "SECRET_KEY": "bench-" + "k" * 50,
            "FIELD_ENCRYPTION_KEYS": Fernet.generate_key().decode(),
            "LOG_LEVEL": "WARNING",
            "DJANGO_SETTINGS_MODULE": "chatsite.settings",
            "PYTHONPATH": str(ROOT),
        }
    )
    return env


def _run_child(vendor: str, database_url: str, size: int, runs: int) -> dict:
    done = subprocess.run(
        [sys.executable, "-m", "bench.search", "child", vendor, str(size), str(runs)],
        cwd=ROOT, env=_env(database_url), capture_output=True, text=True, check=False,
    )  # fmt: skip
    if done.returncode != 0:
        raise RuntimeError(done.stderr[-2000:])
    return json.loads(done.stdout.strip().splitlines()[-1])


def scratch_postgres(database_url: str, purpose: str) -> tuple[str, str, str]:
    """(maintenance URL, scratch URL, scratch name) next to the configured database."""
    parts = urlsplit(database_url)
    name = f"{parts.path.lstrip('/')}_{purpose}_bench"
    maintenance = urlunsplit(parts._replace(path="/postgres"))
    return maintenance, urlunsplit(parts._replace(path="/" + name)), name


def postgres_admin(maintenance_url: str, statement: str) -> None:
    import psycopg

    with psycopg.connect(maintenance_url, autocommit=True) as connection:
        connection.execute(statement)


def _row(name: str, result: dict) -> list[str]:
    lines = []
    for key, label in (("common", f"common word ({COMMON!r}, in every message)"),
                       ("rare", f"rare word (in {RARE_COUNT} messages)"),
                       ("page", f"page {PAGE} of the common word")):  # fmt: skip
        if key in result:
            lines.append(
                f"| {name} | {result['messages']:,} | {label} "
                f"| {result[key]['p50']:.1f} ms | {result[key]['p95']:.1f} ms |"
            )
    return lines


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--conversations", type=int, default=2000)
    parser.add_argument("--pg-messages", type=int, default=1_000_000)
    parser.add_argument("--runs", type=int, default=30)
    parser.add_argument("--output", type=Path, default=DEFAULT_OUTPUT)
    args = parser.parse_args(argv)
    lines = [
        "## Search at scale",
        "",
        f"`python -m bench.search`, {time.strftime('%Y-%m-%d')}, {args.runs} runs each; "
        "`search_for_user` as the history page calls it, one user owning every message.",
        "",
        "| database | messages | query | p50 | p95 |",
        "|---|---:|---|---:|---:|",
    ]
    scratch = tempfile.mkdtemp(prefix="bench-search-")
    result = _run_child("sqlite", f"sqlite:///{scratch}/db.sqlite3", args.conversations, args.runs)
    print(json.dumps(result), flush=True)
    lines += _row("SQLite (FTS5)", result)
    notes = [f"SQLite data set built in {result['build_seconds']:.0f} s."]
    database_url = os.environ.get("DATABASE_URL", "")
    if database_url.startswith(("postgres://", "postgresql://")) and args.pg_messages:
        maintenance, url, name = scratch_postgres(database_url, "search")
        postgres_admin(maintenance, f'DROP DATABASE IF EXISTS "{name}"')
        postgres_admin(maintenance, f'CREATE DATABASE "{name}"')
        try:
            result = _run_child("postgresql", url, args.pg_messages, args.runs)
        finally:
            postgres_admin(maintenance, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        print(json.dumps(result), flush=True)
        lines += _row("PostgreSQL (tsvector + GIN)", result)
        notes.append(f"PostgreSQL data set built with COPY in {result['build_seconds']:.0f} s.")
    lines += ["", " ".join(notes), ""]
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text("\n".join(lines))
    print(f"wrote {args.output}")


if __name__ == "__main__":
    if sys.argv[1:2] == ["child"]:
        child(sys.argv[2], int(sys.argv[3]), int(sys.argv[4]))
    else:
        main(sys.argv[1:])
