"""Real server processes for the tests that need them (browser tests, several processes sharing
Redis and PostgreSQL): `manage.py serve`, i.e. Daphne, on a free port, using this test run's
database, secret and keys. Rows the tests commit (transactional tests) are what the servers see."""

import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from urllib.parse import quote

from django.conf import settings
from django.db import connection
from django.test import Client

SERVER_START_TIMEOUT = 30


def database_url() -> str:
    """The test database (not the configured one) as a DATABASE_URL for a child process."""
    db = connection.settings_dict
    if connection.vendor == "sqlite":
        return f"sqlite:///{db['NAME']}"
    if connection.vendor == "postgresql":
        auth = quote(db["USER"] or "", safe="")
        if db.get("PASSWORD"):
            auth += ":" + quote(db["PASSWORD"], safe="")
        return f"postgres://{auth}@{db['HOST'] or '127.0.0.1'}:{db['PORT'] or 5432}/{db['NAME']}"
    raise RuntimeError(f"No live server for {connection.vendor}")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def session_cookie(user) -> str:
    """A `Cookie` header value that signs `user` in (the session row is committed)."""
    client = Client()
    client.force_login(user)
    return f"{settings.SESSION_COOKIE_NAME}={client.cookies[settings.SESSION_COOKIE_NAME].value}"


class LiveServer:
    """One `manage.py serve` process; `restart()` stops it and starts a new one on its port."""

    def __init__(self, log_path: Path, **env: str) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.ws_url = f"ws://127.0.0.1:{self.port}"
        self.log_path = log_path
        self.extra_env = env
        self.process: subprocess.Popen | None = None

    def child_env(self) -> dict[str, str]:
        """The environment the server process runs with."""
        env = dict(os.environ)
        env.update(
            {
                # The same database, keys and secret as this test run; nothing read from .env.
                "ENV_FILE": "",
                "DATABASE_URL": database_url(),
                "SECRET_KEY": settings.SECRET_KEY,
                "FIELD_ENCRYPTION_KEYS": ",".join(settings.FIELD_ENCRYPTION_KEYS),
                "DEBUG": "false",
                "BIND_ADDRESS": "127.0.0.1",
                "PORT": str(self.port),
                "LOG_LEVEL": "WARNING",
                "PYTHONUNBUFFERED": "1",
            }
        )
        env.pop("DJANGO_ALLOW_ASYNC_UNSAFE", None)
        if settings.REDIS_URL:
            env["REDIS_URL"] = settings.REDIS_URL
        env.update(self.extra_env)
        return env

    def start(self) -> None:
        log = self.log_path.open("ab")
        self.process = subprocess.Popen(
            [sys.executable, "manage.py", "serve", "--port", str(self.port)],
            cwd=settings.BASE_DIR,
            env=self.child_env(),
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + SERVER_START_TIMEOUT
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"the server exited: {self.log_path.read_text()[-2000:]}")
            try:
                with urllib.request.urlopen(self.url + "/healthz", timeout=2) as response:
                    if response.status == 200:
                        return
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                pass
            time.sleep(0.1)
        raise RuntimeError(f"the server did not start: {self.log_path.read_text()[-2000:]}")

    def stop(self) -> None:
        if self.process is None:
            return
        self.process.terminate()
        try:
            self.process.wait(10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(5)
        self.process = None

    def kill(self) -> None:
        """Die as a crashed process would: no chance to save anything."""
        if self.process is not None:
            self.process.kill()
            self.process.wait(5)
            self.process = None

    def restart(self) -> None:
        self.stop()
        self.start()


# --- processes and their connections, read from /proc (Linux) ----------------------------------


def _stat(pid: int | str) -> list[str] | None:
    """/proc/PID/stat's fields after the command (state, parent, ...); None once it is gone."""
    try:
        # The command may hold spaces and parentheses: fields are counted after the last ")".
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (FileNotFoundError, ProcessLookupError, IndexError):
        return None


def process_alive(pid: int) -> bool:
    """Whether `pid` still runs: a zombie (ended, not yet reaped) does not."""
    fields = _stat(pid)
    return fields is not None and fields[0] != "Z"


def child_pids(pid: int) -> set[int]:
    """The live processes whose parent is `pid`."""
    children = set()
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            fields = _stat(entry.name)
            if fields is not None and int(fields[1]) == pid and fields[0] != "Z":
                children.add(int(entry.name))
    return children


def _socket_inodes(pid: int) -> set[int]:
    inodes = set()
    try:
        for fd in Path(f"/proc/{pid}/fd").iterdir():
            try:
                target = os.readlink(fd)
            except OSError:
                continue
            if target.startswith("socket:["):
                inodes.add(int(target[8:-1]))
    except FileNotFoundError:
        pass
    return inodes


def connection_owners(server_port: int, pids: set[int]) -> dict[int, int]:
    """Client port → the process among `pids` holding the server's end of that connection to
    `server_port` (connections not accepted yet are left out)."""
    by_inode: dict[int, int] = {}
    for name in ("tcp", "tcp6"):
        path = Path(f"/proc/net/{name}")
        if not path.exists():
            continue
        for line in path.read_text().splitlines()[1:]:
            fields = line.split()
            local_port = int(fields[1].rsplit(":", 1)[1], 16)
            remote_port = int(fields[2].rsplit(":", 1)[1], 16)
            if local_port == server_port and remote_port:
                by_inode[int(fields[9])] = remote_port
    owners = {}
    for pid in pids:
        for inode in _socket_inodes(pid) & by_inode.keys():
            owners[by_inode[inode]] = pid
    return owners
