"""httpcore's sockets on plain asyncio: the network backend every provider client uses.

Written here rather than taken from httpcore because httpcore's only asyncio backend goes through
anyio, which is built for cancellation semantics we do not use and pays for them at every read:
a cancel scope entered and left (`fail_after`), and the socket taken out of the selector and put
back (`pause_reading` and `resume_reading`, two epoll_ctl system calls). With hundreds of answers
streaming a token per read, that read path was a fifth of the server's CPU (py-spy). Here a
protocol keeps reading into a buffer, like asyncio's own streams, and a read takes what is there
or waits on one future with one timer.

Everything else stays httpcore's and httpx's (HTTP/1.1, pooling, proxies, TLS settings); only the
socket underneath changes, so the exceptions raised are httpcore's, which httpx maps as usual.
"""

import asyncio
import select
import ssl
from collections import deque
from collections.abc import Iterable
from typing import Any

import httpcore
import httpx

# Reading stops while this much is buffered and unread (a reader slower than its upstream), and
# starts again once the reader has taken it below the low mark.
HIGH_WATER = 256 * 1024
LOW_WATER = 64 * 1024
# The most one read returns (httpcore asks for 64 KiB). Everything a read returns is parsed and
# handed on before the reader waits again, without the loop running anything else: 64 KiB of a
# fast upstream's events is some 300 tokens, tens of milliseconds in which no frame of any
# answer went out (the first token of a fast answer among them). 4 KiB is about 20 events.
READ_SLICE = 4 * 1024
# RFC 8305's connection attempt delay, as anyio used.
HAPPY_EYEBALLS_DELAY = 0.25

_TIMED_OUT = object()


class _Protocol(asyncio.Protocol):
    """Buffers what arrives and wakes the one reader waiting for it."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        # What arrived and is not read yet. A piece bigger than a read is kept as a memoryview
        # of what is left, so taking it a slice at a time copies each byte once.
        self.chunks: deque[bytes | memoryview] = deque()
        self.buffered = 0
        self.paused_reading = False
        self.eof = False
        self.lost = False
        self.error: BaseException | None = None
        self.reader: asyncio.Future[Any] | None = None
        self.drain: asyncio.Future[Any] | None = None
        self.paused_writing = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        self.chunks.append(data)
        self.buffered += len(data)
        if self.buffered > HIGH_WATER and not self.paused_reading and self.transport is not None:
            self.paused_reading = True
            self.transport.pause_reading()
        self._wake_reader()

    def eof_received(self) -> bool:
        self.eof = True
        self._wake_reader()
        return False  # the transport closes itself: nothing is sent after the server is done

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost = True
        self.error = exc
        self._wake_reader()
        if self.drain is not None and not self.drain.done():
            self.drain.set_result(None)

    def pause_writing(self) -> None:
        self.paused_writing = True

    def resume_writing(self) -> None:
        self.paused_writing = False
        if self.drain is not None and not self.drain.done():
            self.drain.set_result(None)

    def _wake_reader(self) -> None:
        if self.reader is not None and not self.reader.done():
            self.reader.set_result(None)

    def take(self, max_bytes: int) -> bytes:
        head = self.chunks.popleft()
        if len(head) > max_bytes:
            view = memoryview(head)
            self.chunks.appendleft(view[max_bytes:])
            data = bytes(view[:max_bytes])
        else:
            data = bytes(head)
            while self.chunks and len(data) + len(self.chunks[0]) <= max_bytes:
                data += self.chunks.popleft()
        self.buffered -= len(data)
        if self.paused_reading and self.buffered < LOW_WATER and self.transport is not None:
            self.paused_reading = False
            self.transport.resume_reading()
        return data


def _expire(future: asyncio.Future[Any]) -> None:
    if not future.done():
        future.set_result(_TIMED_OUT)


async def _wait(future: asyncio.Future[Any], seconds: float | None) -> bool:
    """Wait for `future`; False when `seconds` passed first. One timer, not a cancel scope: a
    read is one wait, and this is the hot path."""
    if seconds is None:
        await future
        return True
    timer = asyncio.get_running_loop().call_later(seconds, _expire, future)
    try:
        return await future is not _TIMED_OUT
    finally:
        timer.cancel()


def _describe(error: BaseException) -> str:
    return str(error) or type(error).__name__


def _lost[E: Exception](kind: type[E], protocol: _Protocol) -> E:
    """httpcore's `kind` of error for a connection that is gone, the socket's error its cause."""
    error = protocol.error
    raised = kind(_describe(error) if error is not None else "the connection is closed")
    raised.__cause__ = error
    return raised


class AsyncioStream(httpcore.AsyncNetworkStream):
    def __init__(self, transport: asyncio.Transport, protocol: _Protocol) -> None:
        self._transport = transport
        self._protocol = protocol

    async def read(self, max_bytes: int, timeout: float | None = None) -> bytes:  # noqa: ASYNC109
        protocol = self._protocol
        if protocol.reader is not None:
            # httpcore reads one at a time; a second reader would take the first one's wake-up.
            raise RuntimeError("read() called while another read is waiting")
        if not protocol.chunks and not protocol.eof and not protocol.lost:
            protocol.reader = asyncio.get_running_loop().create_future()
            try:
                if not await _wait(protocol.reader, timeout):
                    raise httpcore.ReadTimeout("timed out")
            finally:
                protocol.reader = None
        else:
            # Let the loop run others first, as a read that waits would: a stream whose upstream
            # is ahead would otherwise parse all it has before any socket got its frame.
            await asyncio.sleep(0)
        if protocol.chunks:
            return protocol.take(min(max_bytes, READ_SLICE))
        if protocol.error is not None:
            raise _lost(httpcore.ReadError, protocol)
        return b""  # the server closed the connection: httpcore decides what that means

    async def write(self, buffer: bytes, timeout: float | None = None) -> None:  # noqa: ASYNC109
        if not buffer:
            return
        protocol = self._protocol
        if protocol.lost or self._transport.is_closing():
            raise _lost(httpcore.WriteError, protocol)
        self._transport.write(buffer)
        if protocol.paused_writing:
            if protocol.drain is not None:
                raise RuntimeError("write() called while another write is waiting")
            protocol.drain = asyncio.get_running_loop().create_future()
            try:
                if not await _wait(protocol.drain, timeout):
                    raise httpcore.WriteTimeout("timed out")
            finally:
                protocol.drain = None
            if protocol.lost:
                raise _lost(httpcore.WriteError, protocol)

    async def aclose(self) -> None:
        # abort, not close: over TLS, close() sends a close_notify and keeps the socket open
        # until the server answers it (up to 30 s, or for good while reading is paused), where
        # httpcore's own backend closes at once. Nothing is left to flush: httpcore closes a
        # connection only once it is done with it.
        self._transport.abort()

    async def start_tls(
        self,
        ssl_context: ssl.SSLContext,
        server_hostname: str | None = None,
        timeout: float | None = None,  # noqa: ASYNC109
    ) -> httpcore.AsyncNetworkStream:
        loop = asyncio.get_running_loop()
        protocol = self._protocol
        if protocol.lost or protocol.eof or self._transport.is_closing():
            # A tunnel the proxy dropped right after its 200: asyncio would wait for a
            # handshake that cannot come until the timeout, and report a timeout.
            self._transport.abort()
            raise httpcore.ConnectError("the connection closed before the TLS handshake")
        try:
            async with asyncio.timeout(timeout):
                transport = await loop.start_tls(
                    self._transport, protocol, ssl_context, server_hostname=server_hostname
                )
        except TimeoutError as exc:
            self._transport.abort()
            raise httpcore.ConnectTimeout("TLS handshake timed out") from exc
        except (OSError, ssl.SSLError, ConnectionError) as exc:
            self._transport.abort()
            raise httpcore.ConnectError(_describe(exc)) from exc
        except BaseException:
            self._transport.abort()
            raise
        if transport is None:  # the connection closed during the handshake
            raise httpcore.ConnectError("the connection closed during the TLS handshake")
        # Flow control (pause_reading) now applies to the TLS transport, which feeds the same
        # protocol.
        protocol.transport = transport  # type: ignore[assignment]
        return AsyncioStream(transport, protocol)  # type: ignore[arg-type]

    def get_extra_info(self, info: str) -> Any:
        if info == "ssl_object":
            return self._transport.get_extra_info("ssl_object")
        if info == "client_addr":
            return self._transport.get_extra_info("sockname")
        if info == "server_addr":
            return self._transport.get_extra_info("peername")
        if info == "socket":
            return self._transport.get_extra_info("socket")
        if info == "is_readable":
            # httpcore asks this of an idle pooled connection: anything arriving on one (data,
            # or the server closing it) means it cannot be reused. The protocol keeps reading
            # while idle, so most of that is here already; the socket itself is asked too, as
            # anyio did, for a close the kernel has and the loop has not handled yet.
            protocol = self._protocol
            if protocol.chunks or protocol.eof or protocol.lost or self._transport.is_closing():
                return True
            sock = self._transport.get_extra_info("socket")
            fd = sock.fileno() if sock is not None else -1
            return fd < 0 or _readable_now(fd)
        return None


def _readable_now(fd: int) -> bool:
    """Whether a read of `fd` would return at once (data, or the peer's close). With poll where
    there is one: select() refuses descriptors from FD_SETSIZE (1,024) on, which a server holding
    hundreds of sockets and upstream connections soon hands out, and every request that found
    such a kept connection failed."""
    if hasattr(select, "poll"):
        poller = select.poll()
        poller.register(fd, select.POLLIN)
        return bool(poller.poll(0))
    return bool(select.select([fd], [], [], 0)[0])


class AsyncioBackend(httpcore.AsyncNetworkBackend):
    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,  # noqa: ASYNC109
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        loop = asyncio.get_running_loop()
        local = (local_address, 0) if local_address else None
        stream = await self._connect(
            lambda: loop.create_connection(
                _Protocol,
                host,
                port,
                local_addr=local,
                happy_eyeballs_delay=HAPPY_EYEBALLS_DELAY,
            ),
            timeout,
        )
        return _with_options(stream, socket_options)

    async def connect_unix_socket(
        self,
        path: str,
        timeout: float | None = None,  # noqa: ASYNC109
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        loop = asyncio.get_running_loop()
        stream = await self._connect(lambda: loop.create_unix_connection(_Protocol, path), timeout)
        return _with_options(stream, socket_options)

    @staticmethod
    async def _connect(connect, timeout: float | None) -> AsyncioStream:  # noqa: ASYNC109
        try:
            async with asyncio.timeout(timeout):
                transport, protocol = await connect()
        except TimeoutError as exc:
            raise httpcore.ConnectTimeout("timed out") from exc
        except OSError as exc:
            raise httpcore.ConnectError(_describe(exc)) from exc
        return AsyncioStream(transport, protocol)

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(seconds)


def _with_options(stream: AsyncioStream, options: Iterable[Any] | None) -> AsyncioStream:
    sock = stream.get_extra_info("socket")
    try:
        for option in options or ():
            sock.setsockopt(*option)
    except OSError as exc:
        stream._transport.abort()
        raise httpcore.ConnectError(_describe(exc)) from exc
    return stream


BACKEND = AsyncioBackend()


def use_asyncio_backend(transport: httpx.AsyncHTTPTransport) -> httpx.AsyncHTTPTransport:
    """`transport` with its connections (direct or through its proxy) on AsyncioBackend.

    httpx builds the httpcore pool itself and offers no argument for its network backend, which
    every httpcore pool and proxy class takes and keeps in `_network_backend` for the
    connections it opens; it is set here, before any connection exists. The test of this module
    checks a response's `network_stream` is ours, so an httpx that moves it fails loudly.
    """
    pool = transport._pool
    if not isinstance(pool, httpcore.AsyncConnectionPool) or not hasattr(pool, "_network_backend"):
        raise RuntimeError("httpx's transport no longer holds an httpcore pool")
    pool._network_backend = BACKEND
    return transport
