"""A real HTTP/1.1 server on loopback that speaks the wire format of every provider we support.

Tests point providers at `fake_upstream.url` and assert on what the upstream received
(`fake_upstream.requests`) and on what came back. `behave(...)` sets how it answers: the reply
text, delays, an error status, a connection dropped mid-stream, or hostile framing.

Written on the standard library's http.server rather than an ASGI app because the tests need
byte-level control over every write (chunk boundaries, CRLF, a socket closed mid-body).
"""

import hashlib
import json
import re
import select
import socket
import sys
import threading
import time
import uuid
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import urlsplit

import pytest

FAKE_MODELS = ["fake-model", "fake-model-2"]
# The seed providers send these to the same OpenAI-style path.
SEED_MODELS = ["gpt-3.5-turbo", "gpt-4"]
LOCKCHAT_MODEL_MISSING = "The model: `gpt-4` does not exist"
AILS_SECRET = "WI,2rU#_r:r~aF4aJ36[.Z(/8Rv93Rf"


@dataclass
class RecordedRequest:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes
    # Set when the client went away before the response was complete.
    disconnected: threading.Event = field(default_factory=threading.Event)
    # Set when the server is finished with the request (answered, dropped, or the client left).
    done: threading.Event = field(default_factory=threading.Event)
    # The client's side of the TCP connection: equal ports mean one pooled connection.
    client_port: int = 0
    http_version: str = ""
    # Set when the request came as a forward proxy receives it (absolute URL in the request line):
    # the origin it was meant for. `path` is then the path part of that URL.
    proxied_for: str | None = None

    @property
    def json(self) -> Any:
        return json.loads(self.body) if self.body else None


@dataclass(frozen=True)
class Behaviour:
    reply: str = "Hello from the fake upstream!"
    chunk_delay: float = 0.0
    first_byte_delay: float = 0.0
    status: int = 200
    error_body: Any = None
    drop_after: int | None = None
    nasty: bool = False
    usage: bool = True
    # Lockchat: the first N chat requests answer "The model: `gpt-4` does not exist".
    model_missing: int = 0
    # When set, OpenAI-style requests without `Authorization: Bearer <accept_token>` get a 401.
    accept_token: str | None = None
    # When set, a streaming endpoint answers 200 with exactly these pieces as its body, each one
    # written as its own chunk (any framing a test wants, byte for byte); with `drop_after`, the
    # connection is cut after that many pieces, before the body's end. A str piece is sent as
    # UTF-8, a bytes piece as it is (so a piece may end inside a character).
    raw_stream: tuple[str | bytes, ...] | None = None


def deltas_of(reply: str) -> list[str]:
    """How the fake splits a reply into streamed deltas: words with their trailing whitespace."""
    return re.findall(r"\S+\s*", reply)


def ails_signature(t: str, m: str) -> str:
    return hashlib.sha256(f"{t}:{m}:{AILS_SECRET}:{len(m)}".encode()).hexdigest()


def default_error_body(status: int) -> dict[str, Any]:
    kinds = {
        400: "invalid_request_error",
        401: "invalid_api_key",
        402: "insufficient_quota",
        404: "not_found",
        429: "rate_limit_exceeded",
    }
    kind = kinds.get(status, "server_error")
    return {"error": {"message": f"Fake upstream says {status}", "type": kind, "code": kind}}


class FakeUpstream:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._behaviour = Behaviour()
        self._model_missing_left = 0
        self.requests: list[RecordedRequest] = []
        # TCP connections accepted so far (client ports are no identity: loopback reuses them).
        self.connections = 0
        self._server = _Server(("127.0.0.1", 0), _Handler)
        self._server.fake = self  # type: ignore[attr-defined]
        host, port = self._server.server_address[:2]
        self.url = f"http://{host}:{port}"
        self._thread = threading.Thread(
            target=self._server.serve_forever, name="fake-upstream", daemon=True
        )
        self._thread.start()

    def behave(
        self,
        *,
        reply: str = "Hello from the fake upstream!",
        chunk_delay: float = 0.0,
        first_byte_delay: float = 0.0,
        status: int = 200,
        error_body: Any = None,
        drop_after: int | None = None,
        nasty: bool = False,
        usage: bool = True,
        model_missing: int = 0,
        accept_token: str | None = None,
        raw_stream: tuple[str | bytes, ...] | None = None,
    ) -> None:
        """Applies to every following request until reset().

        status != 200: answer with `error_body` (default: an OpenAI-style error object) as JSON.
        status == 200 with `error_body`: a streaming endpoint sends it as its first event, a
        non-streaming one as its whole body. A str `error_body` is sent verbatim, not as JSON.
        """
        with self._lock:
            self._behaviour = Behaviour(
                reply=reply,
                chunk_delay=chunk_delay,
                first_byte_delay=first_byte_delay,
                status=status,
                error_body=error_body,
                drop_after=drop_after,
                nasty=nasty,
                usage=usage,
                model_missing=model_missing,
                accept_token=accept_token,
                raw_stream=raw_stream,
            )
            self._model_missing_left = model_missing

    def reset(self) -> None:
        with self._lock:
            self._behaviour = Behaviour()
            self._model_missing_left = 0
            self.requests.clear()

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    # --- used by the handler -------------------------------------------------------------------
    def _record(self, request: RecordedRequest) -> Behaviour:
        with self._lock:
            self.requests.append(request)
            return self._behaviour

    def _take_model_missing(self) -> bool:
        with self._lock:
            if self._model_missing_left > 0:
                self._model_missing_left -= 1
                return True
            return False

    def wait_done(self, timeout: float = 30.0) -> RecordedRequest:
        """The last request, once the server has finished with it."""
        deadline = time.monotonic() + timeout
        while not self.requests and time.monotonic() < deadline:
            time.sleep(0.01)
        request = self.requests[-1]
        request.done.wait(max(0.0, deadline - time.monotonic()))
        return request


def _as_payload(body: Any) -> str:
    # A str is sent verbatim, so a test can send a broken event.
    return body if isinstance(body, str) else json.dumps(body)


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False
    # socketserver's default backlog is 5: more clients connecting at once than that (tests start
    # dozens of answers together) had connections cut, which no real upstream does.
    request_queue_size = 256

    def handle_error(self, request: Any, client_address: Any) -> None:
        # Clients close idle keep-alive connections whenever they like; that is not an error.
        if isinstance(sys.exc_info()[1], ConnectionError):
            return
        super().handle_error(request, client_address)


class _ClientGone(Exception):
    pass


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "FakeUpstream/1"

    def setup(self) -> None:
        super().setup()
        with self.fake._lock:
            self.fake.connections += 1
        # Every write leaves as its own segment, so chunk boundaries reach the client as written.
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def log_message(self, format: str, *args: Any) -> None:
        pass  # the tests assert on recorded requests; access lines would only be noise

    @property
    def fake(self) -> FakeUpstream:
        return self.server.fake  # type: ignore[attr-defined]

    def _client_left_within(self, seconds: float) -> bool:
        """Wait up to `seconds` before answering; True as soon as the client closes its side
        (so a test of a client-side timeout sees the disconnect at once, however long the
        delay it set to be sure the client gives up first)."""
        readable, _, _ = select.select([self.connection], [], [], seconds)
        if not readable:
            return False
        try:
            return self.connection.recv(1, socket.MSG_PEEK) == b""
        except OSError:
            return True

    # --- entry points -------------------------------------------------------------------------
    def do_GET(self) -> None:
        self._handle()

    def do_POST(self) -> None:
        self._handle()

    def _handle(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        proxied_for = None
        if self.path.startswith(("http://", "https://")):
            # Sent to us as to a forward proxy: answer as the origin it names would.
            target = urlsplit(self.path)
            proxied_for = f"{target.scheme}://{target.netloc}"
            self.path = target.path + (f"?{target.query}" if target.query else "")
        record = RecordedRequest(
            method=self.command,
            path=self.path,
            headers={name.lower(): value for name, value in self.headers.items()},
            body=body,
            client_port=self.client_address[1],
            http_version=self.request_version,
            proxied_for=proxied_for,
        )
        behaviour = self.fake._record(record)
        self.record = record
        self.behaviour = behaviour
        try:
            if behaviour.first_byte_delay and self._client_left_within(behaviour.first_byte_delay):
                raise _ClientGone()
            self._route()
        except _Dropped:
            self.close_connection = True
        except _ClientGone:
            record.disconnected.set()
            self.close_connection = True
        except (BrokenPipeError, ConnectionResetError):
            record.disconnected.set()
            self.close_connection = True
        finally:
            record.done.set()

    def _route(self) -> None:
        path = self.path.split("?", 1)[0]
        routes = {
            ("GET", "/v1/models"): self._models,
            ("POST", "/v1/chat/completions"): self._chat_completions,
            ("POST", "/api/v1/ai/chat_completions"): self._raycast,
            ("POST", "/api/text"): self._aichat,
        }
        handler = routes.get((self.command, path))
        if handler is None:
            self._send_json(404, {"error": {"message": f"No route {path}", "code": "not_found"}})
            return
        expected = self.behaviour.accept_token
        if expected is not None and path.startswith("/v1/"):
            if self.headers.get("Authorization") != f"Bearer {expected}":
                self._send_json(401, default_error_body(401))
                return
        if self.behaviour.status != 200:
            body = self.behaviour.error_body
            self._send_json(
                self.behaviour.status,
                default_error_body(self.behaviour.status) if body is None else body,
            )
            return
        handler()

    # --- endpoints ----------------------------------------------------------------------------
    def _models(self) -> None:
        self._send_json(
            200,
            {
                "object": "list",
                "data": [{"id": m, "object": "model", "owned_by": "fake"} for m in FAKE_MODELS],
            },
        )

    def _chat_completions(self) -> None:
        data = self._json_body()
        if data is None:
            return
        model = data.get("model")
        if model not in FAKE_MODELS + SEED_MODELS:
            self._send_json(
                404,
                {
                    "error": {
                        "message": f"The model `{model}` does not exist",
                        "type": "invalid_request_error",
                        "code": "model_not_found",
                    }
                },
            )
            return
        if "s" in data and not self._ails_signature_ok(data):
            self._send_json(400, {"error": {"message": "bad signature", "code": "bad_signature"}})
            return
        if self.fake._take_model_missing():
            self._start_stream()
            self._write_event(
                json.dumps({"error": {"message": LOCKCHAT_MODEL_MISSING}}), count_delta=False
            )
            self._end_stream()
            return
        reply = self.behaviour.reply
        deltas = deltas_of(reply)
        messages = data.get("messages") or []
        prompt_tokens = sum(len(deltas_of(str(m.get("content", "")))) for m in messages)
        usage = {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": len(deltas),
            "total_tokens": prompt_tokens + len(deltas),
        }
        completion_id = f"chatcmpl-{uuid.uuid4().hex[:12]}"
        created = int(time.time())
        if not data.get("stream"):
            body = self.behaviour.error_body or {
                "id": completion_id,
                "object": "chat.completion",
                "created": created,
                "model": model,
                "choices": [
                    {
                        "index": 0,
                        "message": {"role": "assistant", "content": reply},
                        "finish_reason": "stop",
                    }
                ],
                "usage": usage,
            }
            self._send_json(200, body)
            return

        def chunk(delta: dict[str, Any], finish: str | None = None) -> str:
            return json.dumps(
                {
                    "id": completion_id,
                    "object": "chat.completion.chunk",
                    "created": created,
                    "model": model,
                    "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
                }
            )

        if not self._open_stream():
            return
        self._write_event(chunk({"role": "assistant", "content": ""}), count_delta=False)
        for delta in deltas:
            self._write_event(chunk({"content": delta}))
        self._write_event(chunk({}, "stop"), count_delta=False)
        include_usage = (data.get("stream_options") or {}).get("include_usage")
        if include_usage and self.behaviour.usage:
            self._write_event(
                json.dumps(
                    {
                        "id": completion_id,
                        "object": "chat.completion.chunk",
                        "created": created,
                        "model": model,
                        "choices": [],
                        "usage": usage,
                    }
                ),
                count_delta=False,
            )
        self._write_event("[DONE]", count_delta=False)
        self._end_stream()

    def _raycast(self) -> None:
        data = self._json_body()
        if data is None:
            return
        if not self.headers.get("Authorization", "").startswith("Bearer "):
            self._send_json(401, {"error": {"message": "Unauthorized", "code": "unauthorized"}})
            return
        if not self._open_stream():
            return
        for delta in deltas_of(self.behaviour.reply):
            self._write_event(json.dumps({"text": delta}))
        # Raycast's last event carries no text, only the finish reason.
        self._write_event(json.dumps({"text": None, "finish_reason": "stop"}), count_delta=False)
        self._end_stream()

    def _aichat(self) -> None:
        data = self._json_body()
        if data is None:
            return
        body = self.behaviour.error_body
        if body is None:
            body = {"response": True, "message": self.behaviour.reply}
        self._send_json(200, body)

    def _ails_signature_ok(self, data: dict[str, Any]) -> bool:
        t = str(data.get("t", ""))
        messages = data.get("messages") or [{}]
        m = str(messages[-1].get("content", ""))
        return t[-1:] in "13579" and t != "" and data.get("s") == ails_signature(t, m)

    # --- writing ------------------------------------------------------------------------------
    def _json_body(self) -> Any:
        try:
            return json.loads(self.record.body)
        except ValueError:
            self._send_json(400, {"error": {"message": "Body is not JSON", "code": "bad_json"}})
            return None

    def _send_json(self, status: int, payload: Any) -> None:
        # A str payload is sent as it is (an HTML error page, broken JSON).
        raw = isinstance(payload, str)
        body = payload.encode() if raw else json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "text/html" if raw else "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _open_stream(self) -> bool:
        """Start the event stream; False when the behaviour's raw stream or error event was the
        whole answer, True when the caller is to write its own events."""
        self._start_stream()
        if self._wrote_raw_stream():
            return False
        if self.behaviour.error_body is not None:
            self._write_event(_as_payload(self.behaviour.error_body), count_delta=False)
            self._end_stream()
            return False
        return True

    def _wrote_raw_stream(self) -> bool:
        pieces = self.behaviour.raw_stream
        if pieces is None:
            return False
        for index, piece in enumerate(pieces):
            if self.behaviour.drop_after is not None and index >= self.behaviour.drop_after:
                self._drop()
            self._write_chunk(piece if isinstance(piece, bytes) else piece.encode())
            # Long enough for the client to read each piece separately.
            time.sleep(0.005)
        if self.behaviour.drop_after is not None and len(pieces) >= self.behaviour.drop_after:
            self._drop()  # every piece sent, but never the end of the body
        self._end_stream()
        return True

    def _start_stream(self) -> None:
        self.deltas_sent = 0
        self.eol = "\r\n" if self.behaviour.nasty else "\n"
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Cache-Control", "no-cache")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        if self.behaviour.nasty:
            self._write_chunk(f": keep-alive comment{self.eol}{self.eol}".encode())

    def _write_chunk(self, data: bytes) -> None:
        try:
            self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
            self.wfile.flush()
        except (BrokenPipeError, ConnectionResetError) as exc:
            raise _ClientGone() from exc

    def _write_event(self, payload: str, *, count_delta: bool = True) -> None:
        behaviour = self.behaviour
        if count_delta and behaviour.drop_after is not None:
            if self.deltas_sent >= behaviour.drop_after:
                self._drop()
        eol = self.eol
        event = f"data: {payload}{eol}{eol}".encode()
        if behaviour.nasty:
            # A comment and a keep-alive blank line between events, and the event itself cut in
            # two pieces in the middle of its JSON (possibly inside a multi-byte character).
            event = f": ping{eol}{eol}".encode() + event
            cut = len(event) // 2
            pieces = [event[:cut], event[cut:]]
        else:
            pieces = [event]
        for piece in pieces:
            self._write_chunk(piece)
            if behaviour.nasty:
                # Long enough for the client to read each piece separately.
                time.sleep(0.005)
        if count_delta:
            self.deltas_sent += 1
            if behaviour.chunk_delay:
                time.sleep(behaviour.chunk_delay)

    def _end_stream(self) -> None:
        try:
            self.wfile.write(b"0\r\n\r\n")
            self.wfile.flush()
        except (BrokenPipeError, ConnectionResetError) as exc:
            raise _ClientGone() from exc

    def _drop(self) -> None:
        # Close mid-body: no terminating chunk, so the client sees an incomplete message.
        self.close_connection = True
        try:
            self.connection.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        raise _Dropped()


class _Dropped(_ClientGone):
    pass


@pytest.fixture(scope="session")
def fake_upstream_server():
    server = FakeUpstream()
    yield server
    server.close()


@pytest.fixture
def fake_upstream(fake_upstream_server: FakeUpstream) -> FakeUpstream:
    fake_upstream_server.reset()
    return fake_upstream_server
