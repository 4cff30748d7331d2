"""Starts that scale: first token when many people press Enter at once. Numbers, not a test.

    .venv/bin/python -m bench.starts [--sends 50,200,500] [--streams 1000] [--runs 1]

Three processes, as in production: a Daphne server (`chatsite.server`), the fake upstream
(tests/fake_upstream.py, in its own process so its threads do not share the server's cores), and
this client, which opens one WebSocket per user, sends `chat.send` on all of them at the same moment
and times each socket's first `message.delta` and its `message.done`. Every answer is checked whole:
its deltas contiguous and, joined, exactly the upstream's reply.

Embedded mode (a scratch SQLite file, in-process channel layer) always runs; services mode runs
too when DATABASE_URL and REDIS_URL are set (it uses that database). The Markdown section goes to
docs/benchmarks/starts.md (--output to change it).
"""

import argparse
import asyncio
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from bench.search import postgres_admin, scratch_postgres

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_OUTPUT = ROOT / "docs" / "benchmarks" / "starts.md"
# How long one round may take before the client gives up on the sockets still waiting.
ROUND_TIMEOUT = 120.0
# Sockets opened at once while setting up a round (each one signs in: a session lookup).
CONNECT_BATCH = 50


# --- child processes -------------------------------------------------------------------------


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _child_env(database_url: str, redis_url: str) -> dict[str, str]:
    from cryptography.fernet import Fernet

    env = dict(os.environ)
    env.update(
        {
            "DATABASE_URL": database_url,
            "REDIS_URL": redis_url,
            "ENV_FILE": "",
            "DEBUG": "false",
            "LOG_LEVEL": "WARNING",
            "SECRET_KEY": "bench-" + "k" * 50,
            "FIELD_ENCRYPTION_KEYS": Fernet.generate_key().decode(),
            "DJANGO_SETTINGS_MODULE": "chatsite.settings",
            "PYTHONPATH": str(ROOT),
        }
    )
    return env


def serve_upstream(tokens: int, delay: float) -> None:
    """(child) The fake upstream with a listen backlog deep enough for every stream at once."""
    from tests import fake_upstream

    fake_upstream._Server.request_queue_size = 4096
    upstream = fake_upstream.FakeUpstream()
    upstream.behave(reply=reply_text(tokens), chunk_delay=delay)
    print(upstream.url, flush=True)
    sys.stdin.read()  # until the parent closes our stdin
    upstream.close()


def reply_text(tokens: int) -> str:
    return " ".join(f"w{i}" for i in range(tokens))


def prepare(users: int, upstream_url: str) -> None:
    """(child) Migrate, point the default provider at the upstream, sign in `users` users; prints
    their session cookies as JSON."""
    import django

    django.setup()
    from django.contrib.auth import get_user_model

    from bench.prepare import bench_provider_set, session_cookies

    bench_provider_set(name="bench", upstream_url=upstream_url)
    model = get_user_model()
    names = [f"bench{i}" for i in range(users)]
    existing = set(model.objects.filter(username__in=names).values_list("username", flat=True))
    model.objects.bulk_create([model(username=name) for name in names if name not in existing])
    print(json.dumps(session_cookies(model.objects.filter(username__in=names))))


class Services:
    """The upstream and the server for one mode, started and stopped together."""

    def __init__(self, env: dict[str, str], tokens: int, delay: float, users: int) -> None:
        self.env = env
        self.upstream = subprocess.Popen(
            [sys.executable, "-m", "bench.starts", "upstream", str(tokens), str(delay)],
            cwd=ROOT,
            env=env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        self.upstream_url = self.upstream.stdout.readline().strip()
        prepared = subprocess.run(
            [sys.executable, "-m", "bench.starts", "prepare", str(users), self.upstream_url],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            check=True,
        )
        self.cookies: list[str] = json.loads(prepared.stdout.strip().splitlines()[-1])
        self.port = _free_port()
        self.log = open(Path(tempfile.gettempdir()) / f"bench-starts-{self.port}.log", "w")
        # Daphne as `manage.py serve` runs it (chatsite.server: its limits and its warm-up).
        daphne = ["-m", "chatsite.server", "-b", "127.0.0.1", "-p", str(self.port)]
        # BENCH_PROFILE=FILE: the server runs under cProfile, which writes FILE when it stops.
        profile = os.environ.get("BENCH_PROFILE")
        profiler = ["-m", "cProfile", "-o", profile] if profile else []
        self.server = subprocess.Popen(
            [sys.executable, *profiler, *daphne, "chatsite.asgi:application"],
            cwd=ROOT,
            env=env,
            stdout=self.log,
            stderr=subprocess.STDOUT,
        )
        self._wait_healthy()

    def _wait_healthy(self) -> None:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/healthz", timeout=2):
                    return
            except OSError:
                time.sleep(0.2)
        raise RuntimeError(f"the server did not start; see {self.log.name}")

    def server_cpu_seconds(self) -> float:
        fields = Path(f"/proc/{self.server.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def close(self) -> None:
        self.server.terminate()
        self.server.wait(30)
        self.upstream.stdin.close()
        self.upstream.wait(10)
        self.log.close()


# --- the client --------------------------------------------------------------------------------


@dataclass
class Answer:
    sent: float = 0.0
    first: float | None = None
    last_delta: float | None = None
    done: float | None = None
    deltas: list[tuple[int, str]] = field(default_factory=list)
    status: str = ""
    content: str = ""
    error: str = ""


async def _open(port: int, cookie: str):
    import websockets

    return await websockets.connect(
        f"ws://127.0.0.1:{port}/ws/chat/",
        # The site accepts its own origin only: scheme, host and the port it serves on.
        origin=f"http://127.0.0.1:{port}",
        additional_headers={"Cookie": cookie},
        max_size=None,
        open_timeout=60,
        ping_interval=None,
    )


async def _read_answer(socket, answer: Answer) -> None:
    async for raw in socket:
        frame = json.loads(raw)
        kind = frame.get("type")
        now = time.perf_counter()
        if kind == "message.delta":
            if answer.first is None:
                answer.first = now
            answer.last_delta = now
            answer.deltas.append((frame["seq"], frame["delta"]))
        elif kind == "message.snapshot":
            answer.deltas = [(frame["seq"], frame["content"])]
        elif kind == "message.done":
            answer.done = now
            answer.status = frame["status"]
            answer.content = frame["content"]
            return
        elif kind == "error":
            answer.error = frame.get("code", "error")
            return


def _whole(answer: Answer, expected: str) -> bool:
    return _fault(answer, expected) is None


def _fault(answer: Answer, expected: str) -> str | None:
    """Why the answer did not arrive whole (None: it did)."""
    if answer.error:
        return answer.error
    if answer.done is None:
        return f"unfinished after {ROUND_TIMEOUT:g} s"
    if answer.status != "complete" or answer.content != expected:
        return f"ended {answer.status}"
    seqs = [seq for seq, _ in answer.deltas]
    if seqs != list(range(seqs[0], seqs[0] + len(seqs))) if seqs else True:
        return "seq gap"
    if "".join(text for _, text in answer.deltas) != expected:
        return "text differs"
    return None


async def one_round(services: Services, sockets: int, tokens: int, delay: float) -> dict:
    cookies = services.cookies[:sockets]
    opened = []
    for start in range(0, sockets, CONNECT_BATCH):
        batch = cookies[start : start + CONNECT_BATCH]
        opened += await asyncio.gather(*(_open(services.port, c) for c in batch))
    answers = [Answer() for _ in opened]
    frame = json.dumps({"type": "chat.send", "conversation": None, "content": "Hello"})
    cpu_before = services.server_cpu_seconds()
    pairs = list(zip(opened, answers, strict=True))
    readers = [asyncio.create_task(_read_answer(s, a)) for s, a in pairs]
    began = time.perf_counter()
    for socket, answer in pairs:
        answer.sent = time.perf_counter()
        await socket.send(frame)
    await asyncio.wait(readers, timeout=ROUND_TIMEOUT)
    cpu = services.server_cpu_seconds() - cpu_before
    for task in readers:
        task.cancel()
    await asyncio.gather(*(s.close() for s in opened), return_exceptions=True)
    expected = reply_text(tokens)
    firsts = [a.first - began for a in answers if a.first is not None]
    # How much longer than the upstream took an answer's stream took to arrive: from its first
    # delta, the upstream needs (tokens - 1) * delay for the rest.
    lateness = [
        a.last_delta - a.first - (tokens - 1) * delay
        for a in answers
        if a.first is not None and a.last_delta is not None
    ]
    return {
        "sockets": sockets,
        "first_p50": _pct(firsts, 50),
        "first_p99": _pct(firsts, 99),
        "late_p99": _pct(lateness, 99),
        "whole": sum(_whole(a, expected) for a in answers),
        "errors": sorted({fault for a in answers if (fault := _fault(a, expected))}),
        "cpu_per_answer_ms": cpu * 1000 / sockets,
    }


def _pct(values: list[float], pct: int) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(pct / 100 * (len(ordered) - 1)))]


# --- database work per send, measured in one process -------------------------------------------


def db_cost(sends: int) -> None:
    """(child) CPU time of the database work of one answer, through the engine's own database
    calls, one after the other: the start (one transaction), a checkpoint, the final save (which
    titles a new conversation). Prints JSON: milliseconds of this process's CPU per call, and
    the start's queries."""
    import uuid

    import django

    django.setup()
    from django.contrib.auth import get_user_model
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    from conversations import answers, generation, services
    from conversations.eventlog import event_log
    from conversations.protocol import ChatSend

    try:
        from chatsite.db import db_call
    except ImportError:  # before the database threads existed

        def db_call(func, writes=False):
            from channels.db import database_sync_to_async

            return database_sync_to_async(func)

    user = get_user_model().objects.get(username="bench0")
    request = ChatSend(conversation=None, parent=None, content="Hello")
    text = " ".join(f"w{i}" for i in range(50))

    async def one_answer(spent: dict[str, float]) -> None:
        began = time.process_time()
        exchange = await generation.exchange_open(user=user, request=request)
        answer = exchange.assistant_message.id
        marks = [("start", time.process_time())]
        await db_call(services.message_checkpoint, writes=True)(message_id=answer, content=text)
        marks.append(("checkpoint", time.process_time()))
        await db_call(services.message_finish, writes=True)(
            message_id=answer, content=text, status="complete", provider="bench",
            model="fake-model", prompt_tokens=1, completion_tokens=50, title="Hello",
        )  # fmt: skip
        marks.append(("finish", time.process_time()))
        for name, stamp in marks:
            spent[name] = spent.get(name, 0.0) + stamp - began
            began = stamp
        await event_log().discard(answers.log_key(answer))

    async def run() -> dict[str, float]:
        await one_answer({})  # warm-up: threads, connections
        spent: dict[str, float] = {}
        for _ in range(sends):
            await one_answer(spent)
        return {name: total * 1000 / sends for name, total in spent.items()}

    result = asyncio.run(run())
    with CaptureQueriesContext(connection) as queries:
        services.message_send(user=user, request=request, assistant_id=uuid.uuid4())
    result["queries"] = sum(
        1
        for q in queries.captured_queries
        if q["sql"].split()[0] in {"SELECT", "INSERT", "UPDATE", "WITH"}
    )
    print(json.dumps(result))


# --- the report --------------------------------------------------------------------------------


def _ms(value: float | None) -> str:
    return "—" if value is None else f"{value * 1000:,.0f} ms"


def run_mode(name: str, env: dict[str, str], args) -> list[str]:
    sizes = [int(n) for n in args.sends.split(",") if n]
    users = max([1, *sizes, args.streams])
    lines = [f"### {name}", ""]
    services = Services(env, tokens=args.tokens, delay=args.delay, users=users)
    try:
        measured = subprocess.run(
            [sys.executable, "-m", "bench.starts", "dbcost", "200"],
            cwd=ROOT, env=env, capture_output=True, text=True, check=False,
        )  # fmt: skip
        if measured.returncode != 0:
            raise RuntimeError(measured.stderr[-3000:])
        cost = json.loads(measured.stdout.strip().splitlines()[-1])
        per_answer = cost["start"] + 5 * cost["checkpoint"] + cost["finish"]
        lines += [
            f"Database work of one answer, in CPU of one process (calls one after the other): "
            f"start (`chat.send`, {cost['queries']} queries in one transaction) "
            f"**{cost['start']:.2f} ms**, each checkpoint {cost['checkpoint']:.2f} ms, final save "
            f"(with the title) {cost['finish']:.2f} ms: **{per_answer:.1f} ms** for "
            f"an answer of {args.tokens} tokens at {1 / args.delay:.0f} tok/s (5 checkpoints).",
            "",
            f"Simultaneous sends, {args.tokens} tokens each at {1 / args.delay:.0f} tok/s:",
            "",
            "| sockets | first token p50 | first token p99 | stream lateness p99 "
            "| answers whole | server CPU per answer |",
            "|---:|---:|---:|---:|---:|---:|",
        ]
        for size in sizes + ([args.streams] if args.streams else []):
            for _ in range(args.runs):
                result = asyncio.run(one_round(services, size, args.tokens, args.delay))
                errors = f" ({', '.join(result['errors'])})" if result["errors"] else ""
                lines.append(
                    f"| {size:,} | {_ms(result['first_p50'])} | {_ms(result['first_p99'])} "
                    f"| {_ms(result['late_p99'])} | {result['whole']}/{size}{errors} "
                    f"| {result['cpu_per_answer_ms']:.0f} ms |"
                )
                print(lines[-1], flush=True)
    finally:
        services.close()
    return [*lines, ""]


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sends", default="50,200,500", help="socket counts, comma-separated")
    parser.add_argument("--streams", type=int, default=1000, help="the long round (0: skip)")
    parser.add_argument("--tokens", type=int, default=100)
    parser.add_argument("--delay", type=float, default=0.05, help="seconds between tokens")
    parser.add_argument("--runs", type=int, default=1)
    parser.add_argument("--output", type=Path, default=DEFAULT_OUTPUT)
    parser.add_argument("--modes", default="embedded,services")
    args = parser.parse_args(argv)
    scratch = tempfile.mkdtemp(prefix="bench-starts-")
    modes = []
    if "embedded" in args.modes:
        modes.append(
            ("Embedded: SQLite, in-process channel layer", f"sqlite:///{scratch}/db.sqlite3", "")
        )
    services = os.environ.get("DATABASE_URL") and os.environ.get("REDIS_URL")
    scratch_database = None
    if services and "services" in args.modes:
        # A scratch database next to the configured one: the bench's users and chats stay out
        # of it.
        maintenance, url, name = scratch_postgres(os.environ["DATABASE_URL"], "starts")
        postgres_admin(maintenance, f'DROP DATABASE IF EXISTS "{name}"')
        postgres_admin(maintenance, f'CREATE DATABASE "{name}"')
        scratch_database = (maintenance, name)
        modes.append(("Services: PostgreSQL + Redis", url, os.environ["REDIS_URL"]))
    lines = [
        "## Starts: many sends at once",
        "",
        f"`python -m bench.starts` on {os.cpu_count()} cores ({platform.machine()}), one Daphne "
        f"process, {time.strftime('%Y-%m-%d')}. First token: from the moment the client began "
        "sending on every socket. Stream lateness: how much longer than the upstream took the "
        "rest of an answer took to arrive after its first delta.",
        "",
    ]
    try:
        for name, database_url, redis_url in modes:
            print(f"== {name}", flush=True)
            lines += run_mode(name, _child_env(database_url, redis_url), args)
    finally:
        if scratch_database:
            maintenance, name = scratch_database
            postgres_admin(maintenance, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text("\n".join(lines))
    print(f"wrote {args.output}")


if __name__ == "__main__":
    command = sys.argv[1:2]
    if command == ["upstream"]:
        serve_upstream(int(sys.argv[2]), float(sys.argv[3]))
    elif command == ["prepare"]:
        prepare(int(sys.argv[2]), sys.argv[3])
    elif command == ["dbcost"]:
        db_cost(int(sys.argv[2]))
    else:
        main(sys.argv[1:])
