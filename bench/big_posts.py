"""Memory of a server process that anonymous clients send huge bodies to: numbers, not a test.

Starts one server process on a free port (with a throw-away SQLite database), sends three
concurrent POSTs of 300 MB to the sign-in page, and prints the process's resident memory before,
at its peak, and once the requests have ended:

    .venv/bin/python bench/big_posts.py            # manage.py serve: chatsite.server's limits
    .venv/bin/python bench/big_posts.py --plain    # bare Daphne, for comparison
"""

import argparse
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BODY_MB = 300
CLIENTS = 3
PIECE = b"x" * (1024 * 1024)


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_server(port: int, plain: bool) -> subprocess.Popen:
    scratch = tempfile.mkdtemp(prefix="chat-bench-")
    env = {
        **os.environ,
        "ENV_FILE": "",
        "DEBUG": "true",
        "LOG_LEVEL": "WARNING",
        "DATABASE_URL": f"sqlite:///{scratch}/bench.sqlite3",
    }
    subprocess.run([sys.executable, "manage.py", "migrate", "-v0"], cwd=ROOT, env=env, check=True)
    if plain:
        argv = [sys.executable, "-m", "daphne", "--port", str(port), "chatsite.asgi:application"]
    else:
        argv = [sys.executable, "manage.py", "serve", "--port", str(port)]
    process = subprocess.Popen(argv, cwd=ROOT, env=env, stdout=subprocess.DEVNULL)
    for _ in range(300):
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return process
        except OSError:
            time.sleep(0.1)
    raise SystemExit("the server did not start")


def post_big_body(port: int, results: list[str]) -> None:
    head = (
        f"POST /accounts/login/ HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
        f"Content-Type: application/x-www-form-urlencoded\r\n"
        f"Content-Length: {BODY_MB * len(PIECE)}\r\n\r\n"
    ).encode()
    with socket.create_connection(("127.0.0.1", port)) as sock:
        sock.settimeout(300)
        try:
            sock.sendall(head)
            for _ in range(BODY_MB):
                sock.sendall(PIECE)
        except OSError as exc:
            results.append(f"sending stopped: {type(exc).__name__}")
        try:
            answer = sock.recv(200).split(b"\r\n", 1)[0].decode()
        except OSError as exc:
            answer = type(exc).__name__
        results.append(answer or "closed")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--plain", action="store_true", help="bare Daphne, without our limits")
    args = parser.parse_args()
    port = free_port()
    server = start_server(port, args.plain)
    try:
        time.sleep(1)
        before = rss_mb(server.pid)
        peak = before
        results: list[str] = []
        clients = [
            threading.Thread(target=post_big_body, args=(port, results)) for _ in range(CLIENTS)
        ]
        for client in clients:
            client.start()
        while any(client.is_alive() for client in clients):
            peak = max(peak, rss_mb(server.pid))
            time.sleep(0.05)
        time.sleep(2)
        after = rss_mb(server.pid)
        label = "bare Daphne" if args.plain else "manage.py serve"
        print(f"{label}: {CLIENTS} x {BODY_MB} MB POST /accounts/login/")
        print(f"  RSS before {before:.0f} MB, peak {peak:.0f} MB, after {after:.0f} MB")
        print(f"  answers: {sorted(results)}")
    finally:
        server.terminate()
        server.wait(10)


if __name__ == "__main__":
    main()
