"""Soak: many idle sockets and many streaming answers on one Daphne process, on loopback only.

Starts the fake upstream (tests/fake_upstream.py) in this process and one `manage.py serve`
(Daphne) on a throw-away SQLite database (or DATABASE_URL / REDIS_URL from the environment), then
holds `--idle` signed-in WebSocket connections open while `--streams` clients ask for answers one
after another for `--seconds`:

    .venv/bin/python bench/soak.py [--idle 1000] [--streams 100] [--seconds 180]

Every answer's deltas, joined, must equal the text the upstream sent (numbered tokens, so a lost
or repeated token shows), and so must its `message.done` content and the saved row. Reports the
answers, errors, mismatches, idle sockets still open at the end, and the server's RSS over time.
Exits non-zero on any error or mismatch.
"""

import argparse
import asyncio
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
scratch = tempfile.mkdtemp(prefix="chat-soak-")
os.environ.setdefault("DATABASE_URL", f"sqlite:///{scratch}/soak.sqlite3")
os.environ.update({"ENV_FILE": "", "DEBUG": "false", "LOG_LEVEL": "WARNING"})
os.environ.setdefault("SECRET_KEY", "soak-" + os.urandom(16).hex())
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "chatsite.settings")

from cryptography.fernet import Fernet  # noqa: E402

os.environ.setdefault("FIELD_ENCRYPTION_KEYS", Fernet.generate_key().decode())

import django  # noqa: E402

django.setup()

from django.conf import settings  # noqa: E402
from django.contrib.auth import get_user_model  # noqa: E402
from django.test import Client  # noqa: E402
from websockets.asyncio.client import connect  # noqa: E402

from bench.prepare import bench_provider_set  # noqa: E402
from conversations.models import Message  # noqa: E402
from tests.fake_upstream import FakeUpstream  # noqa: E402
from tests.live_server import free_port  # noqa: E402

TOKENS = 100
REPLY = " ".join(f"t{i}" for i in range(TOKENS))
# How long a frame may take before the soak counts it as an error (a hang).
FRAME_TIMEOUT = 60
WARM_UP_SECONDS = 30


def raise_file_limit() -> int:
    """Each socket is a file descriptor, in this process and in the server (which inherits the
    limit): the soft limit goes up to the hard one."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def prepare(upstream: FakeUpstream) -> str:
    bench_provider_set(name="soak", upstream_url=upstream.url, timeout=FRAME_TIMEOUT)
    user, _ = get_user_model().objects.get_or_create(username="soak")
    client = Client()
    client.force_login(user)
    return f"{settings.SESSION_COOKIE_NAME}={client.cookies[settings.SESSION_COOKIE_NAME].value}"


def start_server(port: int, streams: int, log: Path) -> subprocess.Popen:
    env = {
        **os.environ,
        "PORT": str(port),
        "CHAT_MAX_CONCURRENT_GENERATIONS": str(streams),
        "PYTHONUNBUFFERED": "1",
    }
    server = subprocess.Popen(
        [sys.executable, "manage.py", "serve", "--port", str(port)],
        cwd=ROOT,
        env=env,
        stdout=log.open("ab"),
        stderr=subprocess.STDOUT,
    )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2):
                return server
        except OSError:
            time.sleep(0.2)
    server.kill()
    raise RuntimeError(f"the server did not start: {log.read_text()[-2000:]}")


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


class Soak:
    def __init__(self, port: int, cookie: str, pid: int) -> None:
        self.url = f"ws://127.0.0.1:{port}/ws/chat/"
        self.origin = f"http://127.0.0.1:{port}"
        self.cookie = cookie
        self.pid = pid
        self.answers: list[str] = []
        self.errors: list[str] = []
        self.mismatches = 0
        self.rss: list[tuple[float, float]] = []

    def socket(self):
        return connect(
            self.url,
            origin=self.origin,
            additional_headers={"Cookie": self.cookie},
            open_timeout=FRAME_TIMEOUT,
            max_queue=None,
        )

    async def idle(self, ready: asyncio.Event, count: list[int], stop: asyncio.Event) -> bool:
        """One idle page: connected, then silent until the end; True if still open then."""
        try:
            async with self.socket() as ws:
                count[0] += 1
                ready.set()
                await stop.wait()
                await ws.ping()
                return True
        except Exception as exc:
            self.errors.append(f"idle socket: {type(exc).__name__}: {exc}"[:200])
            return False

    async def streamer(self, until: float) -> None:
        """Answers one after another on one socket, each checked against the upstream's text."""
        try:
            async with self.socket() as ws:
                while time.monotonic() < until:
                    await self.one_answer(ws)
        except Exception as exc:
            self.errors.append(f"stream: {type(exc).__name__}: {exc}"[:200])

    async def one_answer(self, ws) -> None:
        await ws.send(json.dumps({"type": "chat.send", "conversation": None, "content": "Go"}))
        text, answer = "", None
        while True:
            frame = json.loads(await asyncio.wait_for(ws.recv(), FRAME_TIMEOUT))
            kind = frame["type"]
            if kind == "error":
                self.errors.append(f"error frame: {frame.get('code')}: {frame.get('detail')}")
                return
            if kind == "message.created" and frame["message"]["role"] == "assistant":
                answer = frame["message"]["id"]
            elif kind == "message.delta" and frame["message"] == answer:
                text += frame["delta"]
            elif kind == "message.snapshot" and frame["message"] == answer:
                text = frame["content"]
            elif kind == "message.done" and frame["message"] == answer:
                if frame["status"] != "complete":
                    self.errors.append(f"answer ended {frame['status']}: {frame.get('error')}")
                elif text != REPLY or frame["content"] != REPLY:
                    self.mismatches += 1
                self.answers.append(answer)
                return

    async def sample_rss(self, stop: asyncio.Event, started: float) -> None:
        while not stop.is_set():
            self.rss.append((time.monotonic() - started, rss_mib(self.pid)))
            try:
                await asyncio.wait_for(stop.wait(), 5)
            except TimeoutError:
                pass


async def run(soak: Soak, idle: int, streams: int, seconds: float) -> dict:
    started = time.monotonic()
    stop = asyncio.Event()
    sampler = asyncio.create_task(soak.sample_rss(stop, started))
    connected = [0]
    ready = asyncio.Event()
    idlers = []
    # Opened in waves, as pages would arrive, not as one burst of 1,000 handshakes.
    for start in range(0, idle, 50):
        for _ in range(min(50, idle - start)):
            idlers.append(asyncio.create_task(soak.idle(ready, connected, stop)))
        await asyncio.sleep(0.2)
    streaming_from = time.monotonic()
    until = streaming_from + seconds
    await asyncio.gather(*(soak.streamer(until) for _ in range(streams)))
    streamed_for = time.monotonic() - streaming_from
    stop.set()
    still_open = sum(await asyncio.gather(*idlers))
    await sampler
    return {
        "idle_sockets": idle,
        "idle_sockets_open_at_end": still_open,
        "streams": streams,
        "seconds": round(streamed_for, 1),
        "answers": len(soak.answers),
        "tokens_checked": len(soak.answers) * TOKENS,
        "mismatched_answers": soak.mismatches,
        "errors": len(soak.errors),
        "first_errors": soak.errors[:5],
    }


def rss_report(samples: list[tuple[float, float]]) -> dict:
    after_warm_up = [rss for at, rss in samples if at >= WARM_UP_SECONDS] or [samples[-1][1]]
    return {
        "rss_mib_at_start": round(samples[0][1], 1),
        "rss_mib_after_warm_up": round(after_warm_up[0], 1),
        "rss_mib_at_end": round(after_warm_up[-1], 1),
        "rss_mib_max_after_warm_up": round(max(after_warm_up), 1),
        "rss_mib_median_after_warm_up": round(statistics.median(after_warm_up), 1),
        "rss_mib_every_30_s": [round(rss, 1) for rss in [r for _, r in samples][::6]],
    }


def saved_rows_check(answers: list[str]) -> int:
    """Answers whose saved row is not exactly the upstream's text."""
    rows = Message.objects.filter(pk__in=answers).values_list("status", "content")
    return sum(1 for status, content in rows if (status, content) != ("complete", REPLY)) + (
        len(answers) - rows.count()
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--idle", type=int, default=1000)
    parser.add_argument("--streams", type=int, default=100)
    parser.add_argument("--seconds", type=float, default=180)
    args = parser.parse_args()
    file_limit = raise_file_limit()
    upstream = FakeUpstream()
    upstream.behave(reply=REPLY, chunk_delay=0.02)
    log = Path(scratch) / "daphne.log"
    server = None
    try:
        cookie = prepare(upstream)
        port = free_port()
        server = start_server(port, args.streams, log)
        soak = Soak(port, cookie, server.pid)
        results = asyncio.run(run(soak, args.idle, args.streams, args.seconds))
        results["saved_rows_not_matching"] = saved_rows_check(soak.answers)
        results.update(rss_report(soak.rss))
        results["file_descriptor_limit"] = file_limit
        results["database"] = settings.DATABASES["default"]["ENGINE"].rsplit(".", 1)[-1]
        results["server_log_tracebacks"] = log.read_text().count("Traceback")
    finally:
        if server is not None:
            server.terminate()
            server.wait(30)
        upstream.close()
    print(json.dumps(results, indent=2))
    failures = ("errors", "mismatched_answers", "saved_rows_not_matching", "server_log_tracebacks")
    failed = any(results[name] for name in failures)
    return 1 if failed or results["idle_sockets_open_at_end"] != args.idle else 0


if __name__ == "__main__":
    sys.exit(main())
