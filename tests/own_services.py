"""Private Redis and PostgreSQL servers for the tests that restart a service under the site.

The machine's own servers are shared and must never be restarted, so these tests start their own
on free loopback ports, in the test's temporary directory, and stop them afterwards. PostgreSQL
refuses to run as root: as root, its commands run as the `postgres` user.
"""

import os
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import pytest
from django.conf import settings

from tests.live_server import free_port


def _postgres_bin() -> Path | None:
    """Where initdb and pg_ctl are: Debian keeps them off the PATH, in the directory that
    `pg_config --bindir` names."""
    initdb = shutil.which("initdb")
    if initdb:
        return Path(initdb).resolve().parent
    if shutil.which("pg_config"):
        found = subprocess.run(["pg_config", "--bindir"], capture_output=True, text=True)
        if found.returncode == 0 and (Path(found.stdout.strip()) / "initdb").exists():
            return Path(found.stdout.strip())
    return None


START_TIMEOUT = 30


def _missing(what: str) -> None:
    """Skip on a machine without the binary; fail where services are required."""
    reason = f"needs {what} to start a private instance"
    if settings.REQUIRE_SERVICES:
        pytest.fail(f"REQUIRE_SERVICES=1 but this test {reason}")
    pytest.skip(reason)


def _wait_for_port(port: int, process: subprocess.Popen | None, log: Path) -> None:
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise RuntimeError(f"the server exited: {log.read_text()[-2000:]}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"nothing listens on {port}: {log.read_text()[-2000:]}")


class OwnRedis:
    """A redis-server without persistence on a free port; `restart()` keeps the port, loses
    the data (as a crashed Redis without persistence does)."""

    def __init__(self, directory: Path) -> None:
        if shutil.which("redis-server") is None:
            _missing("redis-server")
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.log = directory / "redis.log"
        self.process: subprocess.Popen | None = None

    def start(self) -> None:
        command = ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1"]
        command += ["--save", "", "--appendonly", "no", "--logfile", str(self.log)]
        self.process = subprocess.Popen(command, stdout=subprocess.DEVNULL)
        _wait_for_port(self.port, self.process, self.log)

    def stop(self) -> None:
        if self.process is not None:
            self.process.kill()
            self.process.wait(10)
            self.process = None

    def restart(self) -> None:
        self.stop()
        self.start()


class OwnPostgres:
    """A PostgreSQL cluster of its own (initdb) on a free port, trusting local connections, in a
    directory of its own (pytest's are private to root, where the `postgres` user cannot go);
    `remove()` stops it and deletes the directory."""

    def __init__(self) -> None:
        self.bin = _postgres_bin()
        if self.bin is None:
            _missing("PostgreSQL's initdb")
        self.port = free_port()
        self.directory = Path(tempfile.mkdtemp(prefix="chat-test-pg-"))
        self.data = self.directory / "data"
        self.log = self.directory / "postgres.log"
        self.url = f"postgres://postgres@127.0.0.1:{self.port}/postgres"
        self._as_postgres = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
        if self._as_postgres:
            shutil.chown(self.directory, "postgres")
        self._run("initdb", "-D", str(self.data), "-U", "postgres", "--auth=trust", "-E", "UTF8")

    def _run(self, program: str, *args: str) -> None:
        subprocess.run(
            [*self._as_postgres, str(self.bin / program), *args],
            check=True,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )

    def start(self) -> None:
        options = f"-p {self.port} -c listen_addresses=127.0.0.1 -k {self.data}"
        self._run("pg_ctl", "-D", str(self.data), "-l", str(self.log), "-o", options, "-w", "start")
        _wait_for_port(self.port, None, self.log)

    def stop(self) -> None:
        """Stop at once, as a crash or an operator's fast restart would: open sessions end."""
        if (self.data / "postmaster.pid").exists():
            self._run("pg_ctl", "-D", str(self.data), "-m", "immediate", "-w", "stop")

    def remove(self) -> None:
        self.stop()
        shutil.rmtree(self.directory, ignore_errors=True)
