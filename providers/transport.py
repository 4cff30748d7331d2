"""HTTP plumbing every provider shares: one pooled httpx client per event loop, status and
network-error translation into `providers.errors`, a server-sent-events line reader, and the JSON
POST around them (answered in one piece, or as a stream of events).
"""

import asyncio
import functools
import importlib.util
import json
import logging
import re
import ssl
import sys
import threading
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager
from typing import Any, TypedDict, Unpack

import httpx
from django.conf import settings

from chatsite.loops import PerLoop
from providers.errors import (
    MalformedResponseError,
    ProviderTimeoutError,
    ResponseError,
    ResponseStatusError,
    UpstreamDroppedError,
    UpstreamUnavailableError,
)
from providers.network import use_asyncio_backend

logger = logging.getLogger(__name__)

DEFAULT_TIMEOUT = 60.0
DEFAULT_CONNECT_TIMEOUT = 10.0
# An error body is read only to find the upstream's message; a huge one is cut, not buffered.
MAX_ERROR_BODY = 64 * 1024
# What is read of a body after its `data: [DONE]` before the connection is given up instead.
DRAIN_SECONDS = 0.5
DRAIN_MAX_LINES = 100

# httpcore runs `import sniffio` each time it sets up a lock or an event, several times per
# request. sniffio is not installed (anyio no longer needs it) and Python does not remember a
# failed import, so every one searched the whole sys.path: a quarter of the server's time when
# 500 answers started at once. None in sys.modules makes that import fail at once, and httpcore
# then does what it did anyway: assume asyncio.
if importlib.util.find_spec("sniffio") is None:
    sys.modules.setdefault("sniffio", None)  # type: ignore[arg-type]

# httpcore's pool walks every connection it holds whenever a request starts or ends, and for each
# idle one counts the idle ones again: work quadratic in the connections of one client. With 200
# answers streaming through one client that walk took a fifth of the server's CPU, and with 1,000
# it starved everything else. So a loop's connections are spread over lanes, clients of at most
# LANE_CONNECTIONS connections each (httpx offers no pool that scales; see `_Lanes`).
LANE_CONNECTIONS = 32


class _Lanes:
    """The clients one loop uses for one proxy. A request takes the first lane with room: the
    lowest, so the connections the first lanes keep are found again by the next answers. A lane
    is added when every lane is full, up to PROVIDER_MAX_CONNECTIONS in all; past that, requests
    wait in the least busy lane. Only the first lanes keep idle connections, so no more than
    PROVIDER_KEEPALIVE_CONNECTIONS are kept in all."""

    def __init__(self, proxy: str | None) -> None:
        self.proxy = proxy
        self.clients: list[httpx.AsyncClient] = []
        self.sizes: list[int] = []
        self.in_flight: list[int] = []

    def _new_client(self, index: int, size: int) -> httpx.AsyncClient:
        keep = settings.PROVIDER_KEEPALIVE_CONNECTIONS - index * LANE_CONNECTIONS
        transport = httpx.AsyncHTTPTransport(
            http1=True,
            http2=False,
            proxy=self.proxy,
            verify=shared_ssl_context(),
            # Only the proxy configured for a provider applies, not whatever the environment says.
            trust_env=False,
            # Every running answer holds one connection for its whole stream. Kept connections
            # let the next burst of answers skip connecting (and, past TLS, a handshake each);
            # httpx closes one left idle for 5 s.
            limits=httpx.Limits(
                max_connections=size, max_keepalive_connections=max(0, min(size, keep))
            ),
        )
        return httpx.AsyncClient(
            transport=use_asyncio_backend(transport),
            trust_env=False,
            follow_redirects=False,
            timeout=request_timeout(None),
        )

    def _pick(self) -> int:
        for index, busy in enumerate(self.in_flight):
            if busy < self.sizes[index]:
                return index
        room = settings.PROVIDER_MAX_CONNECTIONS - sum(self.sizes)
        if room > 0:
            size = min(LANE_CONNECTIONS, room)
            self.clients.append(self._new_client(len(self.clients), size))
            self.sizes.append(size)
            self.in_flight.append(0)
            return len(self.clients) - 1
        return min(range(len(self.in_flight)), key=self.in_flight.__getitem__)

    @contextmanager
    def lane(self) -> Iterator[httpx.AsyncClient]:
        """A client for one request; hold it until the response is closed."""
        index = self._pick()
        if self.clients[index].is_closed:
            self.clients[index] = self._new_client(index, self.sizes[index])
        self.in_flight[index] += 1
        try:
            yield self.clients[index]
        finally:
            self.in_flight[index] -= 1

    async def aclose(self) -> None:
        for client in self.clients:
            await client.aclose()


@functools.cache
def shared_ssl_context() -> ssl.SSLContext:
    """The process's TLS context for upstreams. Each new context reads the CA bundle again, tens
    of milliseconds of an event loop's time, and one context serves every connection of every
    loop."""
    return httpx.create_ssl_context(trust_env=False)


WARM_UP_SECONDS = 10.0


def transport_warm_up() -> None:
    """Pay at server start for what the first answer would otherwise pay for on the event loop:
    the CA bundle read (shared_ssl_context) and the modules httpx, httpcore and anyio import on
    their first request, about 40 ms of that answer's first token. It makes one request to a
    loopback listener of its own, in a thread of its own, so no loop of the server's is touched;
    a failure costs only the warm-up."""
    failures: list[BaseException] = []

    def run() -> None:
        try:
            asyncio.run(_one_loopback_request())
        except BaseException as exc:
            failures.append(exc)

    thread = threading.Thread(target=run, name="transport-warm-up", daemon=True)
    thread.start()
    thread.join(WARM_UP_SECONDS)
    if failures or thread.is_alive():
        logger.warning("warming up the HTTP client failed: %r", failures[:1] or "timed out")


async def _one_loopback_request() -> None:
    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok")
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(answer, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    # Through a lane, as an answer's request goes; this thread's loop and its lanes end here.
    try:
        async with server:
            with client_lanes().lane() as client:
                async with client.stream("POST", f"http://127.0.0.1:{port}/", json={}) as reply:
                    await reply.aread()
    finally:
        await close_shared_clients()


# Clients belong to the loop they first ran on (their pools hold that loop's sockets), so there
# are lanes per loop, and per proxy because httpx binds the proxy to the client.
_clients: PerLoop[dict[str | None, _Lanes]] = PerLoop(dict)


def client_lanes(proxy: str | None = None) -> _Lanes:
    """The running loop's clients for `proxy` (created on first use)."""
    per_loop = _clients.get()
    lanes = per_loop.get(proxy or None)
    if lanes is None:
        lanes = per_loop[proxy or None] = _Lanes(proxy or None)
    return lanes


async def close_shared_clients() -> None:
    """Close the running loop's clients; called before a loop that is about to end goes away."""
    per_loop = _clients.pop() or {}
    for lanes in per_loop.values():
        await lanes.aclose()


def request_timeout(timeout: float | None, connect: float | None = None) -> httpx.Timeout:
    """`timeout` bounds every wait for the upstream (first byte, each later read, each write);
    connecting has its own, usually shorter, bound."""
    read = float(timeout) if timeout else DEFAULT_TIMEOUT
    return httpx.Timeout(read, connect=min(read, connect or DEFAULT_CONNECT_TIMEOUT))


def endpoint(origin: str, path: str) -> str:
    """`origin` (a provider's default or the configured api_base) joined with its fixed path."""
    return origin.rstrip("/") + path


def _where(request: httpx.Request | None) -> str:
    # Host and port only: a URL may carry credentials (user:password@) or a key in its query.
    if request is None:
        return "the provider"
    url = request.url
    return f"{url.host}:{url.port}" if url.port else url.host


@contextmanager
def translate_transport_errors() -> Iterator[None]:
    """Turn httpx's network exceptions into ProviderError subclasses with safe messages."""
    try:
        yield
    except httpx.TimeoutException as exc:
        raise ProviderTimeoutError(f"{_where(_request_of(exc))} did not answer in time.") from exc
    except (httpx.ConnectError, httpx.ProxyError) as exc:
        raise UpstreamUnavailableError(f"Could not connect to {_where(_request_of(exc))}.") from exc
    except (httpx.RemoteProtocolError, httpx.ReadError, httpx.WriteError) as exc:
        raise UpstreamDroppedError() from exc
    except httpx.HTTPError as exc:
        raise ResponseError(f"Request to {_where(_request_of(exc))} failed.") from exc


def _request_of(exc: httpx.HTTPError) -> httpx.Request | None:
    try:
        return exc.request
    except RuntimeError:  # httpx raises when the exception was created without a request
        return None


# A provider's `raise_error`: raises the typed error an error body (with its status) or an error
# event of a stream (without one) describes, and returns when there is none.
type RaiseError = Callable[[Any, int | None], None]


async def raise_for_status(response: httpx.Response, raise_error: RaiseError) -> None:
    """For an error status: let the provider's `raise_error` map the body, else a generic error."""
    if response.status_code < 400:
        return
    body = b""
    async for piece in response.aiter_bytes():
        body += piece
        if len(body) >= MAX_ERROR_BODY:
            break
    try:
        data = json.loads(body[:MAX_ERROR_BODY])
    except ValueError:
        data = None
    if isinstance(data, dict):
        raise_error(data, response.status_code)
    # No readable error in the body: the status and its phrase say enough, and an HTML error page
    # is never shown (it could echo anything the request carried).
    raise_error({"error": response.reason_phrase or "HTTP error"}, response.status_code)
    raise ResponseStatusError(f"Error {response.status_code}")


def parse_json(text: str) -> Any:
    try:
        return json.loads(text)
    except ValueError as exc:
        raise MalformedResponseError() from exc


async def drain_lines(lines: AsyncIterator[str]) -> None:
    """Read the rest of a body after `data: [DONE]`, normally one blank line and the end.

    Only a body read to its end lets the connection go back to the pool; otherwise every answer
    pays for a new connection (and TLS handshake). A server that keeps sending or keeps the body
    open is cut off instead: closing the response then closes the connection.
    """
    try:
        async with asyncio.timeout(DRAIN_SECONDS):
            count = 0
            async for _line in lines:
                count += 1
                if count > DRAIN_MAX_LINES:
                    return
    except TimeoutError:
        logger.debug("body still open after [DONE]; closing the connection")
    except httpx.HTTPError:
        # The answer is complete; a connection cut after [DONE] only cannot be reused.
        logger.debug("connection broke after [DONE]", exc_info=True)


# The only line ends of the event-stream format (WHATWG HTML, "Parsing an event stream": CRLF,
# LF or CR). httpx's `aiter_lines` ends lines like `str.splitlines`, also at U+2028, U+2029, U+0085,
# VT, FF and the file/group/record separators, all of which JSON allows raw inside a string.
_LINE_END = re.compile(r"\r\n|\r|\n")


async def body_lines(response: httpx.Response) -> AsyncIterator[str]:
    """The body's lines (without their ends), decoded as they arrive: lines end at CR, LF or
    CRLF and nowhere else, however the body is cut into network reads. httpx decodes UTF-8
    incrementally, so a character split across reads arrives whole."""
    partial: list[str] = []
    after_cr = False
    async for text in response.aiter_text():
        if after_cr and text.startswith("\n"):
            text = text[1:]  # the LF of a CRLF whose CR ended the previous read
        after_cr = text.endswith("\r")
        *ended, rest = _LINE_END.split(text)
        for line in ended:
            if partial:
                line = "".join(partial) + line
                partial.clear()
            yield line
        if rest:
            partial.append(rest)
    if partial:
        yield "".join(partial)


async def sse_data(response: httpx.Response) -> AsyncIterator[str]:
    """The `data` payload of every event line, until `data: [DONE]` or the end of the body.

    Lines come from `body_lines`. Comments (`:`) and keep-alive blank lines are skipped,
    `event:`/`id:`/`retry:` fields are ignored, and each `data:` line is one event, because LLM
    upstreams put one JSON document per line and some (Raycast) never send the blank separator
    line.
    """
    lines = body_lines(response)
    async for line in lines:
        if line.startswith("data:"):
            value = line.removeprefix("data:").removeprefix(" ")
            if value.strip() == "[DONE]":
                await drain_lines(lines)
                return
            yield value
        elif line.startswith("{"):
            # A bare JSON line (some servers stream JSON lines, or an error object without SSE).
            yield line
        # Anything else is a comment, a keep-alive blank line or another SSE field: skipped.


@asynccontextmanager
async def streamed_post(
    url: str,
    *,
    body: dict[str, Any],
    headers: dict[str, str],
    proxy: str | None,
    timeout: httpx.Timeout,  # noqa: ASYNC109 -- passed to httpx
    raise_error: RaiseError,
) -> AsyncIterator[httpx.Response]:
    """POST `body` as JSON and hold the answer open to be read as it arrives.

    An error status goes through `raise_error`; network errors, also those met while the caller
    reads the body, become ProviderErrors. Leaving the block closes the response.
    """
    with translate_transport_errors(), client_lanes(proxy).lane() as client:
        async with client.stream(
            "POST", url, json=body, headers=headers, timeout=timeout
        ) as response:
            await raise_for_status(response, raise_error)
            yield response


class PostOptions(TypedDict):
    """The keyword arguments of `streamed_post`."""

    body: dict[str, Any]
    headers: dict[str, str]
    proxy: str | None
    timeout: httpx.Timeout
    raise_error: RaiseError


async def post_json(url: str, **options: Unpack[PostOptions]) -> Any:
    """POST `body` as JSON and return the parsed answer, read in one piece."""
    async with streamed_post(url, **options) as response:
        await response.aread()
    return parse_json(response.text)


async def post_for_events(
    url: str, **options: Unpack[PostOptions]
) -> AsyncIterator[dict[str, Any]]:
    """POST `body` as JSON and yield each JSON object of the server-sent-events answer.

    Every object goes through `raise_error` first, so an error event raises instead of being
    yielded; other JSON values are skipped. Close the generator (`contextlib.aclosing`) when not
    reading it to the end: that closes the response at once.
    """
    raise_error = options["raise_error"]
    async with streamed_post(url, **options) as response:
        async for payload in sse_data(response):
            data = parse_json(payload)
            if isinstance(data, dict):
                raise_error(data, None)
                yield data
