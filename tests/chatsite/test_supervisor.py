"""Several Daphne processes on one port: `manage.py serve` with SERVER_PROCESSES
(chatsite.supervisor). Real processes and sockets; who serves what is read from outside (/proc)."""

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request

import pytest
from django.conf import settings

from chatsite.supervisor import listening_sockets
from tests.live_server import LiveServer, child_pids, connection_owners, process_alive

linux_only = pytest.mark.skipif(sys.platform != "linux", reason="SO_REUSEPORT and /proc: Linux")
WAIT = 30


def scale_mode(test):
    """SERVER_PROCESSES above 1 needs scale mode; the servers share this run's database."""
    for mark in (pytest.mark.redis, pytest.mark.postgres, pytest.mark.django_db(transaction=True)):
        test = mark(test)
    return test


def wait_for(condition, what: str):
    """Poll `condition` until it returns something true; fail after WAIT seconds."""
    deadline = time.monotonic() + WAIT
    while time.monotonic() < deadline:
        if result := condition():
            return result
        time.sleep(0.05)
    pytest.fail(f"timed out waiting for {what}")


def healthz(port: int) -> int:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=WAIT) as response:
        return response.status


@linux_only
def test_the_sockets_share_one_port_and_the_kernel_spreads_connections_over_them():
    sockets = listening_sockets("127.0.0.1", 0, 3)
    try:
        ports = {sock.getsockname()[1] for sock in sockets}
        assert len(ports) == 1
        port = ports.pop()
        clients = [socket.create_connection(("127.0.0.1", port)) for _ in range(60)]
        accepted = [0, 0, 0]
        for index, sock in enumerate(sockets):
            sock.setblocking(False)
            while True:
                try:
                    conn, _ = sock.accept()
                except BlockingIOError:
                    break
                conn.close()
                accepted[index] += 1
        for client in clients:
            client.close()
    finally:
        for sock in sockets:
            sock.close()
    # Spread by the connections' addresses: each of 3 sockets takes some of 60 (all but certain:
    # the chance that one gets none is about 1 in 10^10).
    assert sum(accepted) == 60
    assert all(accepted), accepted


@pytest.fixture
def supervised(tmp_path):
    server = LiveServer(tmp_path / "serve.log", SERVER_PROCESSES="2")
    server.start()
    yield server
    server.stop()


def two_servers(parent: int) -> set[int]:
    return wait_for(lambda: len(pids := child_pids(parent)) == 2 and pids, "2 servers")


@linux_only
@scale_mode
def test_two_processes_serve_one_port_and_a_dead_one_is_replaced(supervised):
    parent = supervised.process.pid
    children = two_servers(parent)

    clients = [socket.create_connection(("127.0.0.1", supervised.port)) for _ in range(40)]
    ports = {client.getsockname()[1] for client in clients}
    owners = wait_for(
        lambda: (found := connection_owners(supervised.port, children)).keys() >= ports and found,
        "every connection accepted",
    )
    # Both processes took connections, and every one is answered.
    assert set(owners.values()) == children
    for client in clients:
        client.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
        assert client.recv(64).startswith(b"HTTP/1.1 200 ")
        client.close()

    victim = min(children)
    os.kill(victim, signal.SIGKILL)
    replaced = wait_for(
        lambda: len(now := child_pids(parent)) == 2 and victim not in now and now,
        "a replacement for the killed server",
    )
    assert replaced - children  # a new process, on the dead one's socket
    # Connections hashed to the dead one's socket are served by the new process (those that
    # came while it started waited in the socket's queue).
    assert [healthz(supervised.port) for _ in range(20)] == [200] * 20

    supervised.process.send_signal(signal.SIGTERM)
    assert supervised.process.wait(WAIT) == 0
    assert not [pid for pid in replaced if process_alive(pid)]
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", supervised.port), timeout=2)


@linux_only
@scale_mode
def test_the_servers_stop_when_their_supervisor_is_killed(supervised):
    children = two_servers(supervised.process.pid)
    supervised.kill()
    wait_for(lambda: not [pid for pid in children if process_alive(pid)], "the servers to stop")


@scale_mode
def test_a_taken_port_is_named_not_a_traceback(tmp_path):
    server = LiveServer(tmp_path / "serve.log", SERVER_PROCESSES="2")
    with socket.create_server(("127.0.0.1", server.port)):
        result = subprocess.run(
            [sys.executable, "manage.py", "serve", "--port", str(server.port)],
            cwd=settings.BASE_DIR,
            env=server.child_env(),
            capture_output=True,
            text=True,
            timeout=WAIT,
        )
    assert result.returncode != 0
    assert f"Cannot listen on http://127.0.0.1:{server.port}/: Address already in use" in (
        result.stderr
    )
    assert "Traceback" not in result.stderr
