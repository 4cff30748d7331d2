"""The HTTP server's own limits (chatsite.server), on a real Daphne process on loopback, with its
timeouts made short through its settings."""

import asyncio
import json
import socket
from uuid import uuid4

import pytest
from websockets.asyncio.client import connect

from tests.live_server import LiveServer, session_cookie

pytestmark = pytest.mark.django_db(transaction=True)

TIMEOUT = "1"
WAIT = 15


@pytest.fixture
def server(tmp_path):
    short = {"HTTP_HEAD_TIMEOUT_SECONDS": TIMEOUT, "HTTP_IDLE_TIMEOUT_SECONDS": TIMEOUT}
    live = LiveServer(tmp_path / "server.log", **short)
    live.start()
    yield live
    live.stop()


def open_connection(server: LiveServer) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", server.port), timeout=WAIT)
    return sock


def read_until_closed(sock: socket.socket) -> bytes:
    """Everything the server sends until it closes the connection (or WAIT passes: then the
    test fails on what it got)."""
    received = b""
    while chunk := sock.recv(65536):
        received += chunk
    return received


def status_of(answer: bytes) -> bytes:
    return answer.split(b"\r\n", 1)[0]


def test_a_huge_declared_body_is_refused_before_it_is_sent(server):
    with open_connection(server) as sock:
        sock.sendall(
            b"POST /accounts/login/ HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            b"Content-Length: 314572800\r\n\r\n"
        )
        answer = read_until_closed(sock)
    assert status_of(answer) == b"HTTP/1.1 413 Content Too Large"
    assert answer.endswith(b"at most 16384 bytes may be sent here.\n")


def test_a_chunked_body_is_cut_off_at_the_limit(server):
    piece = b"a" * 8192
    chunk = b"%x\r\n%s\r\n" % (len(piece), piece)
    with open_connection(server) as sock:
        sock.sendall(
            b"POST /accounts/login/ HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            b"Transfer-Encoding: chunked\r\n\r\n" + chunk * 3
        )
        answer = read_until_closed(sock)
    assert status_of(answer) == b"HTTP/1.1 413 Content Too Large"


def test_a_request_head_that_trickles_in_is_cut_off(server):
    with open_connection(server) as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127")
        answer = read_until_closed(sock)
    assert status_of(answer) == b"HTTP/1.1 408 Request Timeout"


def test_a_stalled_body_is_cut_off(server):
    with open_connection(server) as sock:
        sock.sendall(
            b"POST /accounts/login/ HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 100\r\n\r\nabc"
        )
        # Closed without an answer: the request never arrived in full.
        assert read_until_closed(sock) == b""


def test_keep_alive_requests_still_work(server):
    request = b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"
    with open_connection(server) as sock:
        for _ in range(2):
            sock.sendall(request)
            answer = b""
            while b'"status": "ok"' not in answer:
                answer += sock.recv(65536)
            assert status_of(answer) == b"HTTP/1.1 200 OK"


def test_an_idle_keep_alive_connection_is_closed_without_an_unasked_answer(server):
    """A 408 on a connection that is between requests would reach a client sending its next
    request at that moment as the answer to it."""
    request = b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"
    with open_connection(server) as sock:
        sock.sendall(request)
        answer = b""
        while b'"status": "ok"' not in answer:
            answer += sock.recv(65536)
        # Then nothing: the server closes the idle connection, saying nothing more.
        assert read_until_closed(sock) == b""


def test_a_quiet_chat_socket_outlives_the_http_timeouts(server, django_user_model):
    cookie = session_cookie(django_user_model.objects.create_user(username="ada"))

    async def chat():
        headers = {"Cookie": cookie}
        async with connect(
            server.ws_url + "/ws/chat/", origin=server.url, additional_headers=headers
        ) as ws:
            # Three times the HTTP timeouts with nothing said: the socket must still be there.
            with pytest.raises(TimeoutError):
                await asyncio.wait_for(ws.recv(), 3 * float(TIMEOUT))
            await ws.send(json.dumps({"type": "chat.subscribe", "conversation": str(uuid4())}))
            answer = json.loads(await asyncio.wait_for(ws.recv(), WAIT))
            assert (answer["type"], answer["code"]) == ("error", "not_found")

    asyncio.run(chat())


def test_a_frame_over_one_mebibyte_closes_the_socket_with_1009_and_a_reason(
    server, django_user_model
):
    cookie = session_cookie(django_user_model.objects.create_user(username="ada"))

    async def chat():
        headers = {"Cookie": cookie}
        async with connect(
            server.ws_url + "/ws/chat/", origin=server.url, additional_headers=headers
        ) as ws:
            await ws.send("x" * (1024 * 1024 + 1))
            await asyncio.wait_for(ws.wait_closed(), WAIT)
            return ws.close_code, ws.close_reason

    code, reason = asyncio.run(chat())
    assert code == 1009
    assert "exceeds payload limit" in reason


def failed_sign_in_address(server: LiveServer, forwarded_for: str) -> str:
    """Fail a sign-in through the server, claiming `forwarded_for` in X-Forwarded-For; the
    address the sign-in limit recorded for it."""
    import re

    import httpx
    from axes.models import AccessAttempt

    username = f"nobody-{uuid4().hex[:8]}"
    with httpx.Client(base_url=f"http://127.0.0.1:{server.port}", timeout=WAIT) as client:
        page = client.get("/accounts/login/")
        token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page.text).group(1)
        answer = client.post(
            "/accounts/login/",
            data={"csrfmiddlewaretoken": token, "username": username, "password": "wrong"},
            headers={"X-Forwarded-For": forwarded_for},
        )
    assert answer.status_code == 200
    return AccessAttempt.objects.get(username=username).ip_address


def test_a_client_cannot_name_its_own_address_without_proxy_headers(server):
    assert failed_sign_in_address(server, "203.0.113.9") == "127.0.0.1"


def test_behind_a_proxy_the_address_comes_from_its_header(tmp_path):
    live = LiveServer(tmp_path / "server.log", PROXY_HEADERS="true")
    live.start()
    try:
        assert failed_sign_in_address(live, "203.0.113.9") == "203.0.113.9"
    finally:
        live.stop()
