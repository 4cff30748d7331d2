"""`manage.py serve` with SERVER_PROCESSES > 1: several Daphne processes on one port, kept running.

A Python process runs Python on one core at a time, so one Daphne process leaves the rest of the
machine idle however many answers wait. In scale mode (PostgreSQL and Redis) any process can serve
any socket, and this starts several without a proxy in front:

- The port is bound here, one listening socket per process with SO_REUSEPORT (Linux), so the
  kernel spreads new connections over the processes by their addresses. With one shared socket a
  connection goes to whichever process wakes first, and Twisted accepts up to 100 connections per
  wake-up: a burst of browsers reconnecting after a restart would land on one process. Where
  SO_REUSEPORT does not spread connections, the processes share one socket.
- This process keeps every socket open. A child that dies is started again on its socket, and the
  connections that arrive meanwhile wait in the socket's queue instead of being refused. The
  answers it was writing are ended by the other processes' stale sweep, as after any crash.
- SIGTERM or SIGINT stops the children with SIGTERM (each ends its running answers as
  `interrupted`, saved; see conversations.engine), waits up to STOP_GRACE_SECONDS, then kills
  what is left.
- A child stops by itself when this process is gone, even killed outright (chatsite.server watches
  for it), so no server is left running that nothing will stop.

Written here rather than run under gunicorn or circus: gunicorn's workers are its own servers, not
Daphne's, and what is needed (bind, start, restart, stop) is this file.
"""

import logging
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass

logger = logging.getLogger(__name__)

# What the children are told to run: chatsite.server (Daphne with our limits) and the app.
APPLICATION = "chatsite.asgi:application"
# Each child's engine waits up to 10 s for its answers to end and be saved (Engine.shutdown).
STOP_GRACE_SECONDS = 30.0
# A child that dies soon after starting is started again after a pause that doubles, up to this.
RESTART_PAUSE_MAX = 30.0
# A child that ran this long before dying is started again at once.
HEALTHY_SECONDS = 30.0
POLL_SECONDS = 0.2
# Set in each child's environment: the process that watches over it (chatsite.server).
SUPERVISOR_ENV = "CHAT_SUPERVISOR_PID"


def listening_sockets(host: str, port: int, count: int) -> list[socket.socket]:
    """`count` sockets listening on host:port that the kernel balances between, or one socket
    where it cannot (then every child shares it)."""
    family, kind, proto, _, address = socket.getaddrinfo(
        host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
    )[0]
    spread = count > 1 and sys.platform == "linux" and hasattr(socket, "SO_REUSEPORT")
    sockets: list[socket.socket] = []
    try:
        for _ in range(count if spread else 1):
            sock = socket.socket(family, kind, proto)
            sockets.append(sock)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if spread:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
            sock.bind(address)
            # Port 0 picks a free port for the first socket; the others must share that one.
            address = sock.getsockname()
            sock.listen(socket.SOMAXCONN)
    except BaseException:
        for sock in sockets:
            sock.close()
        raise
    return sockets


@dataclass
class Child:
    sock: socket.socket
    process: subprocess.Popen | None = None
    started: float = 0.0
    restart_at: float = 0.0
    pause: float = 0.0


class Supervisor:
    """`count` Daphne processes on `sockets` (from listening_sockets), until told to stop."""

    def __init__(
        self, *, sockets: list[socket.socket], count: int, daphne_options: list[str]
    ) -> None:
        self.children = [Child(sock=sockets[index % len(sockets)]) for index in range(count)]
        self.daphne_options = daphne_options
        self.stopping = False

    def run(self) -> int:
        for signum in (signal.SIGTERM, signal.SIGINT):
            signal.signal(signum, self._stop_requested)
        try:
            for child in self.children:
                self._start(child)
            while not self.stopping:
                self._tend(time.monotonic())
                time.sleep(POLL_SECONDS)
            self._stop_children()
        finally:
            for child in self.children:
                child.sock.close()
        return 0

    def _stop_requested(self, signum, frame) -> None:
        self.stopping = True

    def _command(self, child: Child) -> list[str]:
        fd = str(child.sock.fileno())
        return [sys.executable, "-m", "chatsite.server", "--fd", fd, *self.daphne_options]

    def _start(self, child: Child) -> None:
        child.process = subprocess.Popen(
            [*self._command(child), APPLICATION],
            pass_fds=(child.sock.fileno(),),
            env={**os.environ, SUPERVISOR_ENV: str(os.getpid())},
        )
        child.started = time.monotonic()

    def _tend(self, now: float) -> None:
        for child in self.children:
            process = child.process
            if process is not None and process.poll() is not None:
                ran = now - child.started
                child.pause = (
                    0.0
                    if ran >= HEALTHY_SECONDS
                    else min(max(1.0, 2 * child.pause), RESTART_PAUSE_MAX)
                )
                child.restart_at = now + child.pause
                child.process = None
                logger.warning(
                    "server process %d ended (%s) after %.0f s; starting another in %.0f s",
                    process.pid,
                    _how_it_ended(process.returncode),
                    ran,
                    child.pause,
                )
            if child.process is None and now >= child.restart_at and not self.stopping:
                self._start(child)

    def _stop_children(self) -> None:
        running = [child.process for child in self.children if child.process is not None]
        for process in running:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + STOP_GRACE_SECONDS
        for process in running:
            try:
                process.wait(max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                logger.warning("server process %d did not stop in time; killing it", process.pid)
                process.kill()
                process.wait()


def _how_it_ended(returncode: int) -> str:
    if returncode < 0:
        try:
            return f"signal {signal.Signals(-returncode).name}"
        except ValueError:
            return f"signal {-returncode}"
    return f"exit code {returncode}"
