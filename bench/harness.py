"""What every benchmark scenario shares: the bench upstream, real server processes (`manage.py
serve`, i.e. Daphne) in embedded or services mode, three clients that read the same stream
(ours over the WebSocket, "direct" straight from the upstream, Open WebUI when one is
configured), statistics, plots, and the Markdown section each scenario writes.

A scenario is a module `bench/<name>.py` with a `main()` that writes `docs/benchmarks/<name>.md`
(and its plots beside it); `python -m bench` runs them all and assembles docs/benchmarks.md.
"""

import asyncio
import json
import os
import secrets
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from bench.upstream import token_stamps

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs" / "benchmarks"
START_TIMEOUT = 60
# Every client waits at most this long for one stream, so a stuck run ends with a number.
STREAM_TIMEOUT = 180


# --- processes -----------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextmanager
def upstream() -> Iterator[str]:
    """The bench upstream in a process of its own (or BENCH_UPSTREAM_URL's, one already running,
    e.g. the one an Open WebUI reads); yields its base URL."""
    given = os.environ.get("BENCH_UPSTREAM_URL", "").rstrip("/").removesuffix("/v1")
    if given:
        yield given
        return
    process = subprocess.Popen(
        [sys.executable, "-m", "bench.upstream"], cwd=ROOT, stdout=subprocess.PIPE, text=True
    )
    try:
        port = process.stdout.readline().split()[1]
        yield f"http://127.0.0.1:{port}"
    finally:
        process.terminate()
        process.wait(10)


def services_env() -> dict[str, str] | None:
    """PostgreSQL and Redis from the environment, when both are given."""
    database, redis = os.environ.get("DATABASE_URL", ""), os.environ.get("REDIS_URL", "")
    if database.startswith("postgres") and redis:
        return {"DATABASE_URL": database, "REDIS_URL": redis}
    return None


def modes() -> list[str]:
    return ["embedded", "services"] if services_env() else ["embedded"]


@dataclass
class Site:
    """A server on one port: one process, or several sharing the port, the database (and Redis,
    in services mode)."""

    url: str
    # One signed-in user's session cookie per bench user (sockets take them in turn).
    cookies: list[str]
    pids: list[int]
    mode: str

    @property
    def ws_url(self) -> str:
        return self.url.replace("http://", "ws://") + "/ws/chat/"

    def cpu_seconds(self) -> float:
        """User + system CPU the server processes have used so far."""
        total = 0
        for pid in self.pids:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])
        return total / os.sysconf("SC_CLK_TCK")

    def rss_mb(self) -> float:
        total = 0.0
        for pid in self.pids:
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1]) / 1024
        return total


def scratch_env(database_url: str, **settings: str) -> dict[str, str]:
    """This environment for a server of our own on a scratch database: fresh keys, nothing read
    from .env, no DATABASE_URL or REDIS_URL of the caller's; `settings` added on top."""
    from cryptography.fernet import Fernet

    env = {
        key: value
        for key, value in os.environ.items()
        if key not in ("DATABASE_URL", "REDIS_URL", "DJANGO_SETTINGS_MODULE")
    }
    env.update(
        {
            "ENV_FILE": "",
            "DEBUG": "false",
            "SECRET_KEY": secrets.token_urlsafe(40),
            "FIELD_ENCRYPTION_KEYS": Fernet.generate_key().decode(),
            "DATABASE_URL": database_url,
            "LOG_LEVEL": "WARNING",
            "PYTHONUNBUFFERED": "1",
            **settings,
        }
    )
    return env


def _site_env(mode: str, scratch: str, port: int) -> dict[str, str]:
    env = scratch_env(
        f"sqlite:///{scratch}/bench.sqlite3",
        PORT=str(port),
        BIND_ADDRESS="127.0.0.1",
        # One bench user runs every stream.
        CHAT_MAX_CONCURRENT_GENERATIONS="100000",
    )
    if mode == "services":
        env.update(services_env() or {})
    return env


@contextmanager
def site(
    mode: str, upstream_url: str, *, processes: int = 1, users: int = 1, **settings: str
) -> Iterator[Site]:
    """A fresh server (`manage.py serve`) in `mode`, its database prepared; `settings` are extra
    environment variables. With `processes` > 1 (services mode), that many Daphne processes on
    the one port, as `SERVER_PROCESSES` runs them (chatsite.supervisor)."""
    scratch = tempfile.mkdtemp(prefix="chat-bench-")
    port = free_port()
    env = _site_env(mode, scratch, port) | settings
    if processes > 1:
        env["SERVER_PROCESSES"] = str(processes)
    cookies = subprocess.run(
        [sys.executable, "-m", "bench.prepare", upstream_url, str(users)],
        cwd=ROOT,
        env=env,
        check=True,
        capture_output=True,
        text=True,
    ).stdout.split()
    log_path = Path(scratch) / "server.log"
    command = [sys.executable, "manage.py", "serve", "--port", str(port)]
    if os.environ.get("BENCH_PROFILE") and processes == 1:
        # Daphne itself under cProfile, writing BENCH_PROFILE when the server stops.
        command = [sys.executable, "-m", "cProfile", "-o", os.environ["BENCH_PROFILE"]]
        command += ["-m", "daphne", "--bind", "127.0.0.1", "--port", str(port)]
        command += ["chatsite.asgi:application"]
    with open(log_path, "wb") as log:
        process = subprocess.Popen(command, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        url = f"http://127.0.0.1:{port}"
        _wait_healthy(url, process, log_path)
        pids = [process.pid]
        if processes > 1:
            # The supervisor's own CPU is counted too (it only watches).
            pids += sorted(_wait_children(process.pid, processes))
        yield Site(url=url, cookies=cookies, pids=pids, mode=mode)
    finally:
        process.terminate()
        try:
            process.wait(40)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(5)


def _wait_children(pid: int, count: int) -> set[int]:
    from tests.live_server import child_pids

    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        if len(children := child_pids(pid)) == count:
            return children
        time.sleep(0.1)
    raise RuntimeError(f"the server did not start {count} processes")


def _wait_healthy(url: str, process: subprocess.Popen, log: Path) -> None:
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"the server exited: {log.read_text()[-2000:]}")
        try:
            with urllib.request.urlopen(url + "/healthz", timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.1)
    raise RuntimeError(f"the server did not start: {log.read_text()[-2000:]}")


# --- clients -------------------------------------------------------------------------------------


@dataclass
class Stream:
    """What one client saw of one answer. Times are time.monotonic() seconds."""

    tokens: int
    # 0: as fast as the upstream can write.
    interval_ms: float = 0
    sent: float = 0.0
    # (time the upstream wrote the token, time this client had it), per token.
    arrivals: list[tuple[float, float]] = field(default_factory=list)
    indexes: list[int] = field(default_factory=list)
    frames: int = 0
    wire_bytes: int = 0
    ended: float | None = None
    error: str | None = None

    def receive(self, text: str, now: float) -> None:
        for index, stamp in token_stamps(text):
            self.indexes.append(index)
            self.arrivals.append((stamp, now))

    @property
    def first(self) -> float | None:
        return self.arrivals[0][1] - self.sent if self.arrivals else None

    @property
    def last(self) -> float | None:
        return self.arrivals[-1][1] - self.sent if self.arrivals else None

    @property
    def whole(self) -> bool:
        """Every token, in order, once."""
        return self.error is None and self.indexes == list(range(self.tokens))

    def latencies(self) -> list[float]:
        return [received - written for written, received in self.arrivals]


def prompt(tokens: int, interval_ms: float = 0) -> str:
    return f"tokens={tokens} interval_ms={interval_ms}"


async def ours_open(site: Site, index: int = 0):
    """A socket signed in as the site's bench user number `index` (round robin)."""
    from websockets.asyncio.client import connect

    return await connect(
        site.ws_url,
        additional_headers={"Cookie": site.cookies[index % len(site.cookies)]},
        origin=site.url,
        compression=None,
        proxy=None,
        max_queue=None,
        open_timeout=STREAM_TIMEOUT,
        ping_interval=None,
    )


async def ours_read(socket, stream: Stream, *, stop_after_first: bool = False) -> float | None:
    """Send the prompt on an open socket and read its answer to the end; with
    `stop_after_first`, send chat.stop at the first token and return the stop → done time."""
    content = prompt(stream.tokens, stream.interval_ms)
    stream.sent = time.monotonic()
    await socket.send(json.dumps({"type": "chat.send", "conversation": None, "content": content}))
    answer, stopped_at, expected_seq = None, None, 1
    async with asyncio.timeout(STREAM_TIMEOUT):
        async for raw in socket:
            now = time.monotonic()
            frame = json.loads(raw)
            kind = frame["type"]
            if kind == "message.created" and frame["message"]["role"] == "assistant":
                answer = frame["message"]["id"]
            elif kind == "message.delta" and frame["message"] == answer:
                stream.frames += 1
                stream.wire_bytes += len(raw)
                if frame["seq"] != expected_seq:
                    stream.error = f"seq {frame['seq']} after {expected_seq - 1}"
                expected_seq = frame["seq"] + 1
                stream.receive(frame["delta"], now)
                if stop_after_first and stopped_at is None:
                    stopped_at = time.monotonic()
                    await socket.send(json.dumps({"type": "chat.stop", "message": answer}))
            elif kind == "message.snapshot" and frame["message"] == answer:
                stream.error = "snapshot"
            elif kind == "message.done" and frame["message"] == answer:
                stream.ended = now
                if stopped_at is not None:
                    return now - stopped_at
                if frame["status"] != "complete":
                    stream.error = f"ended {frame['status']}"
                return None
            elif kind == "error":
                stream.error = frame["code"]
                return None
    return None


async def ours(site: Site, stream: Stream, **options) -> float | None:
    socket = await ours_open(site)
    try:
        return await ours_read(socket, stream, **options)
    except Exception as exc:
        stream.error = type(exc).__name__
        return None
    finally:
        await socket.close()


async def direct(upstream_url: str, stream: Stream) -> None:
    """The limit: a plain asyncio reader of the upstream's server-sent events."""
    host, port = upstream_url.removeprefix("http://").split(":")
    body = json.dumps(
        {
            "model": "fake-model",
            "stream": True,
            "messages": [{"role": "user", "content": prompt(stream.tokens, stream.interval_ms)}],
        }
    ).encode()
    stream.sent = time.monotonic()
    reader, writer = await asyncio.open_connection(host, int(port))
    try:
        writer.write(
            b"POST /v1/chat/completions HTTP/1.1\r\nHost: %s\r\nContent-Type: application/json\r\n"
            b"Content-Length: %d\r\n\r\n%s" % (host.encode(), len(body), body)
        )
        async with asyncio.timeout(STREAM_TIMEOUT):
            await reader.readuntil(b"\r\n\r\n")
            while size := int((await reader.readline()).strip() or b"0", 16):
                data = await reader.readexactly(size + 2)
                now = time.monotonic()
                stream.frames += 1
                stream.wire_bytes += size
                payload = data[6:].strip()
                if payload == b"[DONE]":
                    break
                for choice in json.loads(payload).get("choices") or []:
                    stream.receive(choice.get("delta", {}).get("content") or "", now)
        stream.ended = time.monotonic()
    except Exception as exc:
        stream.error = type(exc).__name__
    finally:
        writer.close()


def openwebui() -> tuple[str, str, str] | None:
    """(url, token, model) of an Open WebUI to compare with, when BENCH_OPENWEBUI_URL is set."""
    url = os.environ.get("BENCH_OPENWEBUI_URL", "").rstrip("/")
    if not url:
        return None
    token = os.environ.get("BENCH_OPENWEBUI_TOKEN", "")
    return url, token, os.environ.get("BENCH_OPENWEBUI_MODEL", "fake-model")


async def openwebui_stream(target: tuple[str, str, str], stream: Stream) -> None:
    """Open WebUI's /api/chat/completions, read as its browser client does (SSE)."""
    import httpx

    url, token, model = target
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    body = {
        "model": model,
        "stream": True,
        "messages": [{"role": "user", "content": prompt(stream.tokens, stream.interval_ms)}],
    }
    stream.sent = time.monotonic()
    try:
        async with httpx.AsyncClient(timeout=STREAM_TIMEOUT) as client:
            async with client.stream(
                "POST", f"{url}/api/chat/completions", json=body, headers=headers
            ) as response:
                async for line in response.aiter_lines():
                    now = time.monotonic()
                    if not line.startswith("data:"):
                        continue
                    stream.frames += 1
                    stream.wire_bytes += len(line) + 2
                    payload = line[5:].strip()
                    if payload == "[DONE]":
                        break
                    for choice in json.loads(payload).get("choices") or []:
                        stream.receive((choice.get("delta") or {}).get("content") or "", now)
        stream.ended = time.monotonic()
    except Exception as exc:
        stream.error = type(exc).__name__


# --- numbers, plots, sections --------------------------------------------------------------------


def percentile(values: list[float], p: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(p / 100 * (len(ordered) - 1))))]


def median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def ms(seconds: float) -> str:
    return "—" if seconds != seconds else f"{seconds * 1000:.1f} ms"


def ratio(value: float, limit: float) -> str:
    if value != value or limit != limit or limit <= 0:
        return "—"
    return f"{value / limit:.1f}x"


def table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def plot(name: str, draw) -> str:
    """Save a matplotlib figure drawn by `draw(axes)` as docs/benchmarks/<name>.png; returns
    the Markdown image line."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    DOCS.mkdir(parents=True, exist_ok=True)
    figure, axes = plt.subplots(figsize=(7, 3.6), dpi=100)
    draw(axes)
    figure.tight_layout()
    figure.savefig(DOCS / f"{name}.png")
    plt.close(figure)
    return f"![{name}](benchmarks/{name}.png)"


def write_section(name: str, text: str) -> None:
    DOCS.mkdir(parents=True, exist_ok=True)
    (DOCS / f"{name}.md").write_text(text.rstrip() + "\n")
    print(text, flush=True)
