"""The asyncio network backend under every provider's httpx client, against real servers on
loopback: asyncio servers started by each test (byte-level control of every write, the TLS
handshake, resets) and the shared fake upstream.

Each test drives httpx as the providers do and asserts on what a caller sees (the bytes, the
exception) or on what the server saw (connections, the client going away). Waits are for
conditions, bounded by BOUND so that a broken backend fails instead of hanging.
"""

import asyncio
import datetime
import hashlib
import ipaddress
import os
import socket
import ssl
import struct
import sys
import threading
from collections.abc import Awaitable, Callable

import httpcore
import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from providers.network import (
    BACKEND,
    HIGH_WATER,
    READ_SLICE,
    AsyncioStream,
    use_asyncio_backend,
)
from providers.transport import client_lanes, close_shared_clients

# The longest any condition is waited for: far above what loopback needs, well below a hang.
BOUND = 3.0
# What one read of an asyncio socket transport takes from the kernel at most
# (selector_events._SelectorSocketTransport.max_size): the most that can arrive past HIGH_WATER
# before reading pauses.
SOCKET_READ = 256 * 1024

CHUNKED_HEAD = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
LAST_CHUNK = b"0\r\n\r\n"

type Serve = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


def chunk(data: bytes) -> bytes:
    return b"%x\r\n%s\r\n" % (len(data), data)


def fixed_head(length: int) -> bytes:
    return b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % length


async def until(condition: Callable[[], object], what: str, bound: float = BOUND) -> None:
    """Wait for `condition` to hold, looking every 10 ms, for at most `bound` seconds (for
    state no event announces: the backend's protocol, another thread's socket)."""
    try:
        async with asyncio.timeout(bound):
            while not condition():  # noqa: ASYNC110
                await asyncio.sleep(0.01)
    except TimeoutError:
        pytest.fail(f"{what} (waited {bound} s)")


async def wait(event: asyncio.Event) -> None:
    async with asyncio.timeout(BOUND):
        await event.wait()


class Upstream:
    """An asyncio server on loopback that runs `serve` for every connection it accepts and
    counts them. Connections still open when the test ends are cut and their handlers
    cancelled, so no test waits on a handler it left hanging on purpose."""

    def __init__(self, serve: Serve, tls: ssl.SSLContext | None = None) -> None:
        self.serve = serve
        self.tls = tls
        self.connections = 0
        self.handlers: set[asyncio.Task] = set()

    async def __aenter__(self) -> "Upstream":
        self.server = await asyncio.start_server(self._accept, "127.0.0.1", 0, ssl=self.tls)
        self.port = self.server.sockets[0].getsockname()[1]
        self.url = f"{'https' if self.tls else 'http'}://127.0.0.1:{self.port}"
        return self

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        task = asyncio.current_task()
        assert task is not None
        self.handlers.add(task)
        try:
            await self.serve(reader, writer)
        except (ConnectionError, asyncio.IncompleteReadError):
            pass  # the client went away, which several tests make it do
        finally:
            self.handlers.discard(task)
            writer.close()

    async def __aexit__(self, *exc_info: object) -> None:
        self.server.close()
        for task in list(self.handlers):
            task.cancel()
        self.server.abort_clients()
        await self.server.wait_closed()


def streamed_pieces(pieces: list[bytes]) -> Serve:
    """A server answering every request on a connection with `pieces` as chunks."""

    async def serve(reader, writer):
        while True:
            try:
                await reader.readuntil(b"\r\n\r\n")
            except asyncio.IncompleteReadError:
                writer.close()  # the client closed the connection
                return
            writer.write(CHUNKED_HEAD)
            for piece in pieces:
                writer.write(chunk(piece))
                await writer.drain()
            writer.write(LAST_CHUNK)
            await writer.drain()

    return serve


def new_client(verify: ssl.SSLContext | bool = True, **options) -> httpx.AsyncClient:
    """An httpx client built the way `_Lanes._new_client` builds the providers' clients."""
    transport = httpx.AsyncHTTPTransport(
        http1=True, http2=False, verify=verify, trust_env=False, **options
    )
    return httpx.AsyncClient(
        transport=use_asyncio_backend(transport),
        trust_env=False,
        follow_redirects=False,
        timeout=httpx.Timeout(BOUND),
    )


def protocol_of(response: httpx.Response):
    stream = response.extensions["network_stream"]
    assert isinstance(stream, AsyncioStream)
    return stream._protocol


# --- The providers' clients run on this backend -----------------------------------------------


@pytest.mark.parametrize("via_proxy", [False, True], ids=["direct", "forward-proxy"])
async def test_the_providers_clients_run_on_this_backend(fake_upstream, via_proxy):
    """httpx takes no network backend argument; `use_asyncio_backend` sets a private attribute
    of its pool. If an httpx release moved it, the clients would silently go back to anyio:
    this fails instead. Through a proxy too (httpx then builds a proxy pool)."""
    proxy = fake_upstream.url if via_proxy else None
    try:
        with client_lanes(proxy).lane() as client:
            # Through the proxy the origin named is never connected to: the proxy answers.
            origin = "http://upstream.invalid" if via_proxy else fake_upstream.url
            async with client.stream("GET", origin + "/v1/models") as response:
                assert isinstance(response.extensions["network_stream"], AsyncioStream)
                body = await response.aread()
    finally:
        await close_shared_clients()
    assert b"fake-model" in body
    [request] = fake_upstream.requests
    assert request.proxied_for == ("http://upstream.invalid" if via_proxy else None)


# --- Reading ----------------------------------------------------------------------------------


async def test_a_body_in_many_small_pieces_arrives_whole_and_in_order():
    """Each piece is sent only once the client has the one before, so nearly every read finds
    nothing buffered and waits for the next piece (the path a streamed answer takes)."""
    pieces = [os.urandom(1 + index % 7 * 13) for index in range(60)]
    received_through = [asyncio.Event() for _ in pieces]

    async def serve(reader, writer):
        await reader.readuntil(b"\r\n\r\n")
        writer.write(CHUNKED_HEAD)
        for index, piece in enumerate(pieces):
            writer.write(chunk(piece))
            await writer.drain()
            await wait(received_through[index])
        writer.write(LAST_CHUNK)
        await writer.drain()

    ends = [sum(len(piece) for piece in pieces[: index + 1]) for index in range(len(pieces))]
    received = bytearray()
    async with Upstream(serve) as upstream, new_client() as client:
        async with client.stream("GET", upstream.url) as response:
            async for data in response.aiter_raw():
                received += data
                for index, end in enumerate(ends):
                    if end <= len(received):
                        received_through[index].set()
    assert bytes(received) == b"".join(pieces)


async def test_a_read_takes_what_is_buffered_up_to_what_was_asked():
    """Reads over ten buffered pieces of 100 bytes: a piece bigger than what is asked is split
    (its rest stays first in line), pieces that fit are joined into one read, no read returns
    more than asked, and nothing is lost or reordered."""
    pieces = [bytes([index]) * 100 for index in range(10)]
    send_next = asyncio.Event()

    async def serve(reader, writer):
        for piece in pieces:
            await wait(send_next)
            send_next.clear()
            writer.write(piece)
            await writer.drain()

    async with Upstream(serve) as upstream:
        stream = await BACKEND.connect_tcp("127.0.0.1", upstream.port, timeout=BOUND)
        protocol = stream._protocol
        try:
            for count in range(1, len(pieces) + 1):
                send_next.set()
                # One piece at a time, so each arrives as its own read of the socket.
                await until(
                    lambda count=count: len(protocol.chunks) == count, "a piece did not arrive"
                )
            reads = [await stream.read(30, timeout=BOUND)]
            while sum(map(len, reads)) < 1000:
                reads.append(await stream.read(250, timeout=BOUND))
        finally:
            await stream.aclose()
    assert len(reads[0]) == 30
    assert all(len(data) <= 250 for data in reads)
    assert max(len(data) for data in reads[1:]) > 100
    assert b"".join(reads) == b"".join(pieces)
    assert protocol.buffered == 0


async def test_a_read_returns_at_most_a_slice_however_much_is_buffered():
    """httpcore asks for 64 KiB a read, and parses all of it before the loop runs anything
    else: a read gives at most READ_SLICE, so a fast upstream's backlog is handed on in slices
    with other tasks' turns between them."""
    body = os.urandom(5 * READ_SLICE + 123)

    async def serve(reader, writer):
        writer.write(body)
        await writer.drain()
        await reader.read()  # until the client goes

    async with Upstream(serve) as upstream:
        stream = await BACKEND.connect_tcp("127.0.0.1", upstream.port, timeout=BOUND)
        try:
            await until(lambda: stream._protocol.buffered == len(body), "the body did not arrive")
            reads = []
            while sum(map(len, reads)) < len(body):
                reads.append(await stream.read(64 * 1024, timeout=BOUND))
        finally:
            await stream.aclose()
    assert b"".join(reads) == body
    assert max(map(len, reads)) == READ_SLICE
    assert len(reads) == 6


async def test_a_second_read_while_one_waits_is_refused():
    """httpcore never reads twice at once; if anything did, the second read would steal the
    first one's wake-up and leave it waiting until its timeout. It is refused instead, and the
    first read still gets its data."""

    async def serve(reader, writer):
        await reader.read(1)
        writer.write(b"late")
        await writer.drain()
        await reader.read()  # until the client goes

    async with Upstream(serve) as upstream:
        stream = await BACKEND.connect_tcp("127.0.0.1", upstream.port, timeout=BOUND)
        try:
            first = asyncio.ensure_future(stream.read(100, timeout=BOUND))
            await until(lambda: stream._protocol.reader is not None, "the first read never waited")
            with pytest.raises(RuntimeError, match="another read"):
                await stream.read(100, timeout=BOUND)
            await stream.write(b"x")
            assert await first == b"late"
        finally:
            await stream.aclose()


async def test_a_socket_option_the_socket_refuses_is_a_connect_error():
    """An option the socket refuses fails the connection as a connection error, as anyio's
    did (httpx maps it), and the socket is closed rather than left open."""

    async def serve(reader, writer):
        await reader.read()

    async with Upstream(serve) as upstream:
        bogus = (socket.SOL_SOCKET, 0x7FFF, 1)
        with pytest.raises(httpcore.ConnectError):
            await BACKEND.connect_tcp(
                "127.0.0.1", upstream.port, timeout=BOUND, socket_options=[bogus]
            )
        await until(lambda: not upstream.handlers, "the connection was left open")


async def test_a_read_of_buffered_data_lets_other_tasks_run_first():
    """A read that finds data waiting still yields to the loop once, as anyio's did: a stream
    whose upstream is ahead would otherwise parse everything buffered (up to HIGH_WATER, some
    thousand tokens) before any other answer or socket got a turn."""

    async def serve(reader, writer):
        writer.write(b"x" * 100)
        await writer.drain()
        await reader.read()  # until the client goes

    async with Upstream(serve) as upstream:
        stream = await BACKEND.connect_tcp("127.0.0.1", upstream.port, timeout=BOUND)
        try:
            await until(lambda: stream._protocol.buffered == 100, "the data did not arrive")
            turns = []
            other = asyncio.get_running_loop().call_soon(turns.append, "other")
            data = await stream.read(1000, timeout=BOUND)
            turns.append("read")
        finally:
            other.cancel()
            await stream.aclose()
    assert data == b"x" * 100
    assert turns == ["other", "read"]


async def read_slowly(response: httpx.Response) -> tuple[bytes, int]:
    """A reader slower than its upstream: waits until reading has paused, then takes the body
    letting the loop run several times per piece (each time free to read from the socket, were
    reading not paused). The body, and the most that was ever buffered."""
    protocol = protocol_of(response)
    await until(lambda: protocol.paused_reading, "reading never paused")
    received, peak = bytearray(), protocol.buffered
    async for data in response.aiter_raw():
        received += data
        for _ in range(5):
            await asyncio.sleep(0)
        peak = max(peak, protocol.buffered)
    return bytes(received), peak


async def test_a_body_bigger_than_the_buffer_pauses_reading_and_arrives_exactly():
    """A reader slower than its upstream: reading stops once HIGH_WATER is buffered, starts
    again as the reader catches up, and not a byte is lost or reordered."""
    body = os.urandom(2 * 1024 * 1024)

    async def serve(reader, writer):
        await reader.readuntil(b"\r\n\r\n")
        writer.write(fixed_head(len(body)) + body)
        await writer.drain()

    async with Upstream(serve) as upstream, new_client() as client:
        async with client.stream("GET", upstream.url) as response:
            protocol = protocol_of(response)
            received, peak = await read_slowly(response)
            assert not protocol.paused_reading
    assert len(received) == len(body)
    assert hashlib.sha256(received).digest() == hashlib.sha256(body).digest()
    assert peak <= HIGH_WATER + SOCKET_READ


async def test_a_body_ended_by_closing_the_connection_is_complete():
    """Without a length or chunks the server's close ends the body: the read that finds the
    connection closed returns nothing, and httpx takes that as the end."""
    body = os.urandom(100_000)

    async def serve(reader, writer):
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n" + body)
        await writer.drain()

    async with Upstream(serve) as upstream, new_client() as client:
        response = await client.get(upstream.url)
    assert response.content == body


async def test_concurrent_streams_each_get_their_own_bytes():
    """Many answers stream at once, one connection each, their pieces interleaved in time:
    every body arrives whole, in order, and unmixed with the others."""
    streams = 20

    async def serve(reader, writer):
        head = await reader.readuntil(b"\r\n\r\n")
        name = head.split(b" ")[1]
        writer.write(CHUNKED_HEAD)
        for index in range(30):
            writer.write(chunk(b"%s:%d;" % (name, index)))
            await writer.drain()
            await asyncio.sleep(0)  # let the other connections write in between
        writer.write(LAST_CHUNK)
        await writer.drain()

    async def fetch(client: httpx.AsyncClient, name: str) -> bytes:
        async with client.stream("GET", f"{upstream.url}/{name}") as response:
            return b"".join([data async for data in response.aiter_raw()])

    async with Upstream(serve) as upstream, new_client() as client:
        bodies = await asyncio.gather(*(fetch(client, f"s{n}") for n in range(streams)))
    for n, body in enumerate(bodies):
        assert body == b"".join(b"/s%d:%d;" % (n, index) for index in range(30))
    assert upstream.connections == streams


# --- Timeouts, broken connections, giving up -------------------------------------------------


@pytest.mark.parametrize(
    "sent",
    [b"", fixed_head(10), CHUNKED_HEAD + chunk(b"first")],
    ids=["before-headers", "after-headers", "mid-body"],
)
async def test_a_silent_server_times_out_and_the_connection_is_closed(sent):
    """Silence before the headers, after them, or in the middle of the body: each read is
    bounded by the read timeout, and the connection is then closed (the server sees it).
    (Tests of timeouts are bounded themselves: a backend ignoring them would hang.)"""
    client_left = asyncio.Event()

    async def serve(reader, writer):
        await reader.readuntil(b"\r\n\r\n")
        writer.write(sent)
        await writer.drain()
        if await reader.read() == b"":
            client_left.set()

    async with Upstream(serve) as upstream, new_client() as client:
        loop = asyncio.get_running_loop()
        started = loop.time()
        async with asyncio.timeout(BOUND):
            with pytest.raises(httpx.ReadTimeout):
                async with client.stream(
                    "GET", upstream.url, timeout=httpx.Timeout(BOUND, read=0.2)
                ) as response:
                    await response.aread()
        assert loop.time() - started >= 0.2
        await wait(client_left)


@pytest.mark.parametrize(
    ("ending", "error", "message"),
    [
        ("close", httpx.RemoteProtocolError, "incomplete"),
        ("reset", httpx.ReadError, "reset by peer"),
    ],
)
async def test_a_connection_ended_mid_body_raises_after_the_bytes_that_arrived(
    ending, error, message
):
    """The server ends the connection before the terminating chunk. A close (FIN): the read
    finds the connection closed and httpx reports an incomplete message. A reset (SO_LINGER 0,
    then close): the socket's error is raised as a read error, not as an incomplete message."""
    first_read = asyncio.Event()

    async def serve(reader, writer):
        await reader.readuntil(b"\r\n\r\n")
        writer.write(CHUNKED_HEAD + chunk(b"partial"))
        await writer.drain()
        await wait(first_read)
        if ending == "reset":
            sock = writer.get_extra_info("socket")
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            writer.transport.abort()
        else:
            writer.close()

    received = bytearray()
    async with Upstream(serve) as upstream, new_client() as client:
        async with client.stream("GET", upstream.url) as response:
            with pytest.raises(error, match=message) as raised:
                async for data in response.aiter_raw():
                    received += data
                    first_read.set()
    assert received == b"partial"
    assert type(raised.value) is error


async def test_a_read_cancelled_by_its_caller_leaves_the_client_usable():
    """The caller gives up on a read (an `asyncio.timeout` around the body, as `drain_lines`
    does): the cancellation comes out as such, that connection is closed, and the next
    request gets its answer on a new one."""
    first_left = asyncio.Event()

    async def serve(reader, writer):
        await reader.readuntil(b"\r\n\r\n")
        if upstream.connections == 1:
            writer.write(CHUNKED_HEAD + chunk(b"first"))
            await writer.drain()
            if await reader.read() == b"":
                first_left.set()
            return
        writer.write(CHUNKED_HEAD + chunk(b"second") + LAST_CHUNK)
        await writer.drain()

    async with Upstream(serve) as upstream, new_client() as client:
        with pytest.raises(TimeoutError):
            async with client.stream("GET", upstream.url) as response:
                async with asyncio.timeout(0.1):
                    async for _data in response.aiter_raw():
                        pass
        await wait(first_left)
        second = await client.get(upstream.url)
    assert second.content == b"second"
    assert upstream.connections == 2


# --- Connecting -------------------------------------------------------------------------------


async def test_a_refused_connection_is_a_connect_error(closed_port_url):
    """The OSError of a refused connection becomes httpcore's ConnectError, which httpx (and
    so the providers) report as the upstream being unavailable."""
    async with new_client() as client:
        with pytest.raises(httpx.ConnectError):
            await client.get(closed_port_url)


@pytest.mark.skipif(sys.platform != "linux", reason="relies on Linux dropping SYNs to a full queue")
async def test_a_connection_never_accepted_is_a_connect_timeout():
    """A listening socket whose accept queue is full: Linux drops further SYNs, so connecting
    hangs until the connect timeout, which must bound it."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(0)  # room for one connection, which the next line takes
        port = listener.getsockname()[1]
        with socket.create_connection(("127.0.0.1", port), timeout=BOUND):
            async with new_client() as client, asyncio.timeout(BOUND):
                with pytest.raises(httpx.ConnectTimeout):
                    await client.get(
                        f"http://127.0.0.1:{port}", timeout=httpx.Timeout(BOUND, connect=0.2)
                    )


async def test_a_unix_socket(tmp_path):
    """`connect_unix_socket` (httpx's `uds=`): the body arrives, and a missing socket file is
    a connect error."""
    path = str(tmp_path / "upstream.sock")
    server = await asyncio.start_unix_server(streamed_pieces([b"over ", b"unix"]), path)
    try:
        async with new_client(uds=path) as client:
            response = await client.get("http://upstream/")
        async with new_client(uds=str(tmp_path / "missing.sock")) as client:
            with pytest.raises(httpx.ConnectError):
                await client.get("http://upstream/")
    finally:
        server.close()
        await server.wait_closed()
    assert response.content == b"over unix"


# --- TLS --------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def certificate(tmp_path_factory) -> tuple[str, str]:
    """A self-signed certificate for 127.0.0.1 and localhost, made for this run: the paths of
    its PEM certificate and key."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "test upstream")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            ),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    folder = tmp_path_factory.mktemp("tls")
    cert_path, key_path = folder / "cert.pem", folder / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return str(cert_path), str(key_path)


@pytest.fixture
def server_tls(certificate) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(*certificate)
    return context


@pytest.fixture
def trusting(certificate) -> ssl.SSLContext:
    """A client context like the providers' (httpx's defaults) that also trusts the test
    certificate."""
    context = httpx.create_ssl_context(trust_env=False)
    context.load_verify_locations(cafile=certificate[0])
    return context


@pytest.fixture(params=["http", "https"])
def wire(request) -> tuple[ssl.SSLContext | None, ssl.SSLContext | bool]:
    """The server's TLS context (None for plain HTTP) and the client's `verify`."""
    if request.param == "http":
        return None, True
    return request.getfixturevalue("server_tls"), request.getfixturevalue("trusting")


async def test_a_streamed_body_over_tls(server_tls, trusting):
    """The TLS stream httpcore gets from `start_tls` is this backend's, and reads through it."""
    pieces = [b"piece %d;" % index for index in range(50)]
    async with Upstream(streamed_pieces(pieces), tls=server_tls) as upstream:
        async with new_client(verify=trusting) as client:
            async with client.stream("GET", upstream.url) as response:
                stream = response.extensions["network_stream"]
                assert isinstance(stream, AsyncioStream)
                assert stream.get_extra_info("ssl_object") is not None
                body = b"".join([data async for data in response.aiter_raw()])
    assert body == b"".join(pieces)


async def test_a_big_body_over_tls_read_slowly_arrives_exactly(server_tls, trusting):
    """Once the handshake is done, flow control goes through the TLS transport: reading
    pauses and resumes there too, without losing or reordering a byte. The body ends with the
    server's close (a close_notify, then TCP's)."""
    body = os.urandom(2 * 1024 * 1024)

    async def serve(reader, writer):
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n" + body)
        await writer.drain()

    async with Upstream(serve, tls=server_tls) as upstream, new_client(verify=trusting) as client:
        async with client.stream("GET", upstream.url) as response:
            received, peak = await read_slowly(response)
    assert hashlib.sha256(received).digest() == hashlib.sha256(body).digest()
    # The TLS transport hands over what it decrypted in one go: up to its own high-water mark
    # (256 KiB, asyncio's FLOW_CONTROL_HIGH_WATER_SSL_READ) plus one socket read.
    assert peak <= HIGH_WATER + 2 * SOCKET_READ


async def test_an_untrusted_certificate_is_a_connect_error(server_tls):
    async with Upstream(streamed_pieces([b"secret"]), tls=server_tls) as upstream:
        async with new_client(verify=httpx.create_ssl_context(trust_env=False)) as client:
            with pytest.raises(httpx.ConnectError, match="CERTIFICATE_VERIFY_FAILED"):
                await client.get(upstream.url)


async def test_a_tls_handshake_the_server_never_answers_is_a_connect_timeout(trusting):
    """A server that accepts but never answers the ClientHello: the handshake is bounded by
    the connect timeout, and the connection is then closed (the server sees it)."""
    client_left = asyncio.Event()

    async def serve(reader, writer):
        while await reader.read(65536):
            pass
        client_left.set()

    async with Upstream(serve) as upstream, new_client(verify=trusting) as client:
        url = f"https://127.0.0.1:{upstream.port}"
        async with asyncio.timeout(BOUND):
            with pytest.raises(httpx.ConnectTimeout):
                await client.get(url, timeout=httpx.Timeout(BOUND, connect=0.2))
        await wait(client_left)


async def test_a_connection_closed_during_the_tls_handshake_is_a_connect_error(trusting):
    """asyncio reports a connection closed mid-handshake in its own ways (a reset, or no
    transport at all); each is httpcore's ConnectError."""

    async def serve(reader, writer):
        await reader.read(1)  # the ClientHello has begun
        writer.close()

    async with Upstream(serve) as upstream, new_client(verify=trusting) as client:
        with pytest.raises(httpx.ConnectError):
            await client.get(f"https://127.0.0.1:{upstream.port}")


class BlockingTlsServer:
    """A TLS server on a blocking socket in a thread, for one connection: it sends `response`
    to the first request, then, with `fin`, closes its side of TCP without a close_notify (as
    many servers do). Unlike asyncio's TLS server it answers no close_notify on its own; after
    the response it only watches for the client's TCP close (`tcp_closed`)."""

    def __init__(self, context: ssl.SSLContext, response: bytes, *, fin: bool = False) -> None:
        self.context = context
        self.response = response
        self.fin = fin
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.listener.settimeout(BOUND)
        self.url = f"https://127.0.0.1:{self.listener.getsockname()[1]}"
        self.tcp_closed = threading.Event()
        self._over = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)

    async def __aenter__(self) -> "BlockingTlsServer":
        self._thread.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        self._over.set()
        await asyncio.to_thread(self._thread.join, BOUND)

    def _serve(self) -> None:
        with self.listener:
            conn, _ = self.listener.accept()
        conn.settimeout(BOUND)
        with self.context.wrap_socket(conn, server_side=True) as tls:
            head = b""
            while b"\r\n\r\n" not in head:
                head += tls.recv(65536)
            tls.sendall(self.response)
            if self.fin:
                tls.shutdown(socket.SHUT_WR)  # drops the TLS layer first: no close_notify
            # Below TLS: whatever the client still sends (its close_notify) is skipped, until
            # its TCP close (a FIN, or a reset if it left data unread) or the end of the test.
            with socket.socket(fileno=os.dup(tls.fileno())) as raw:
                raw.settimeout(0.01)
                closed = False
                while not closed and not self._over.is_set():
                    try:
                        closed = not raw.recv(65536)
                    except TimeoutError:
                        pass
                    except ConnectionResetError:
                        closed = True
            if closed:
                self.tcp_closed.set()


# A body that makes the client pause reading (it is over HIGH_WATER) and still leaves the
# server's socket whole while the client is paused: the rest fits in asyncio's TLS buffer
# (256 KiB) without the kernel's buffers, so the blocking server gets to send its close.
PAUSING_BODY = HIGH_WATER + 128 * 1024


def tls_close_seen(stream: AsyncioStream) -> bool:
    """Whether asyncio's TLS layer under `stream` has taken in the server's close (it leaves
    the WRAPPED state). asyncio's private state, read only to put a test's steps in order."""
    return stream._transport._ssl_protocol._state.name != "WRAPPED"


async def test_a_tls_body_ended_by_a_bare_tcp_close_while_reading_is_paused_arrives_whole(
    server_tls, trusting
):
    """The server closes TCP without a close_notify while the client, behind, has paused
    reading: asyncio's TLS layer holds the close back until reading resumes, and then the
    whole body arrives and ends cleanly."""
    body = os.urandom(PAUSING_BODY)
    answer = b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n" + body
    async with (
        BlockingTlsServer(server_tls, answer, fin=True) as upstream,
        new_client(verify=trusting) as client,
        client.stream("GET", upstream.url) as response,
    ):
        stream = response.extensions["network_stream"]
        protocol = protocol_of(response)
        await until(
            lambda: protocol.paused_reading and tls_close_seen(stream), "the close never came"
        )
        received = b"".join([data async for data in response.aiter_raw()])
    assert hashlib.sha256(received).digest() == hashlib.sha256(body).digest()


async def test_a_tls_connection_given_up_is_closed_without_waiting_for_the_server(
    server_tls, trusting
):
    """httpcore's own backend closes the socket at once when a connection is given up (a read
    timeout, an abandoned stream, an idle connection expiring). One closed here should not
    stay open until the server answers the TLS close: a stalled server, or one that does not
    read while it streams, never does, and each such connection holds a socket meanwhile."""
    async with (
        BlockingTlsServer(server_tls, fixed_head(10)) as upstream,
        new_client(verify=trusting) as client,
    ):
        async with asyncio.timeout(BOUND):
            with pytest.raises(httpx.ReadTimeout):
                await client.get(upstream.url, timeout=httpx.Timeout(BOUND, read=0.2))
        await until(upstream.tcp_closed.is_set, "the socket stayed open")


async def test_an_abandoned_tls_stream_the_server_closed_while_paused_is_closed(
    server_tls, trusting
):
    """The server has sent everything and closed TCP (no close_notify) while the client,
    behind, had paused reading; the client then abandons the response. asyncio's TLS layer,
    still holding the close back for the paused reader, ignores a graceful close: the socket
    stays open for as long as the loop runs."""
    answer = b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n" + os.urandom(PAUSING_BODY)
    async with (
        BlockingTlsServer(server_tls, answer, fin=True) as upstream,
        new_client(verify=trusting) as client,
    ):
        async with client.stream("GET", upstream.url) as response:
            stream = response.extensions["network_stream"]
            protocol = protocol_of(response)
            await until(
                lambda: protocol.paused_reading and tls_close_seen(stream), "the close never came"
            )
        await until(upstream.tcp_closed.is_set, "the socket stayed open")


# --- Proxies ----------------------------------------------------------------------------------


class ConnectProxy:
    """A tunnelling HTTP proxy: reads `CONNECT host:port`, connects there, answers 200 and
    pipes bytes both ways. `requests` holds the request lines it received."""

    def __init__(self) -> None:
        self.requests: list[bytes] = []
        self.upstream = Upstream(self._tunnel)

    async def __aenter__(self) -> "ConnectProxy":
        await self.upstream.__aenter__()
        self.url = self.upstream.url
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.upstream.__aexit__(*exc_info)

    async def _tunnel(self, reader, writer):
        head = await reader.readuntil(b"\r\n\r\n")
        request_line = head.split(b"\r\n", 1)[0]
        self.requests.append(request_line)
        method, target, _version = request_line.split(b" ")
        assert method == b"CONNECT"
        host, port = target.decode().rsplit(":", 1)
        target_reader, target_writer = await asyncio.open_connection(host, int(port))
        writer.write(b"HTTP/1.1 200 Connection established\r\n\r\n")
        try:
            await asyncio.gather(
                self._pipe(reader, target_writer), self._pipe(target_reader, writer)
            )
        finally:
            target_writer.close()

    @staticmethod
    async def _pipe(source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
        while data := await source.read(65536):
            sink.write(data)
            await sink.drain()
        if sink.can_write_eof():
            sink.write_eof()


async def test_https_through_a_connect_proxy(server_tls, trusting):
    """httpx opens a tunnel with CONNECT on a plain connection, then starts TLS on that same
    connection: the TLS stream is this backend's too, and the body arrives through it."""
    pieces = [b"through the tunnel %d;" % index for index in range(20)]
    async with (
        Upstream(streamed_pieces(pieces), tls=server_tls) as upstream,
        ConnectProxy() as proxy,
        new_client(verify=trusting, proxy=proxy.url) as client,
    ):
        async with client.stream("GET", f"https://localhost:{upstream.port}/") as response:
            stream = response.extensions["network_stream"]
            assert isinstance(stream, AsyncioStream)
            assert stream.get_extra_info("ssl_object") is not None
            body = b"".join([data async for data in response.aiter_raw()])
    assert body == b"".join(pieces)
    assert proxy.requests == [b"CONNECT localhost:%d HTTP/1.1" % upstream.port]
    assert upstream.connections == 1


async def test_tls_on_a_connection_already_closed_is_a_connect_error(trusting):
    """A tunnel the proxy closes right after its 200: by the time TLS is to start, the
    connection is gone. That is a connection error at once (the user hears the provider is
    unreachable), not a wait for a handshake that cannot come, reported as a slow provider."""

    async def serve(reader, writer):
        writer.close()

    async with Upstream(serve) as upstream:
        stream = await BACKEND.connect_tcp("127.0.0.1", upstream.port, timeout=BOUND)
        await until(lambda: stream._protocol.lost, "the server never closed")
        async with asyncio.timeout(BOUND):
            with pytest.raises(httpcore.ConnectError, match="closed before the TLS handshake"):
                await stream.start_tls(trusting, server_hostname="localhost", timeout=2 * BOUND)


# --- Keep-alive -------------------------------------------------------------------------------


async def test_sequential_requests_share_one_connection(wire):
    server_tls, verify = wire
    async with (
        Upstream(streamed_pieces([b"same ", b"connection"]), tls=server_tls) as upstream,
        new_client(verify=verify) as client,
    ):
        for _ in range(3):
            response = await client.get(upstream.url)
            assert response.content == b"same connection"
    assert upstream.connections == 1


async def test_a_kept_connection_the_server_closed_is_not_reused(wire):
    """The server closes a kept-alive connection while it is idle (as servers do after their
    own idle timeout). httpcore asks the stream `is_readable` before reusing it; seeing the
    close, it connects again instead of sending on a dead connection."""

    async def serve_once(reader, writer):
        await reader.readuntil(b"\r\n\r\n")
        writer.write(CHUNKED_HEAD + chunk(b"answer") + LAST_CHUNK)
        await writer.drain()
        # No `Connection: close`: the client keeps the connection for the next request.

    server_tls, verify = wire
    async with (
        Upstream(serve_once, tls=server_tls) as upstream,
        new_client(verify=verify) as client,
    ):
        first = await client.get(upstream.url)
        stream = first.extensions["network_stream"]
        await until(lambda: stream.get_extra_info("is_readable"), "the close never arrived")
        second = await client.get(upstream.url)
    assert first.content == second.content == b"answer"
    assert upstream.connections == 2


@pytest.fixture
def descriptors_past_select_limit():
    """Hold enough descriptors that the next socket's number is past select()'s FD_SETSIZE
    (1,024), as a server with hundreds of sockets and upstream connections has them."""
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < 1200:
        if hard != resource.RLIM_INFINITY and hard < 1200:
            pytest.skip(f"the descriptor limit ({hard}) is below select()'s 1,024 plus room")
        resource.setrlimit(resource.RLIMIT_NOFILE, (1200, hard))
    held = []
    try:
        while not held or held[-1] < 1030:
            held.append(os.open(os.devnull, os.O_RDONLY))
        yield
    finally:
        for fd in held:
            os.close(fd)
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


async def test_a_kept_connection_past_select_limit_is_reused(descriptors_past_select_limit):
    """httpcore asks a kept connection `is_readable` before reusing it. select() cannot ask
    that of descriptor 1,024 or later (ValueError), and every request that found such a kept
    connection failed: with 500 answers streaming, one in ten ended as an error."""

    async def serve(reader, writer):
        while True:
            await reader.readuntil(b"\r\n\r\n")
            writer.write(CHUNKED_HEAD + chunk(b"answer") + LAST_CHUNK)
            await writer.drain()

    async with Upstream(serve) as upstream, new_client() as client:
        first = await client.get(upstream.url)
        assert first.extensions["network_stream"].get_extra_info("socket").fileno() >= 1024
        second = await client.get(upstream.url)
    assert first.content == second.content == b"answer"
    assert upstream.connections == 1


# --- Writing ----------------------------------------------------------------------------------


async def test_a_body_bigger_than_the_socket_buffers_is_uploaded_exactly(wire):
    """A request body that cannot all go into the kernel at once: the write waits for the
    transport to drain, resumes, and the server receives every byte."""
    body = os.urandom(16 * 1024 * 1024)

    async def serve(reader, writer):
        head = await reader.readuntil(b"\r\n\r\n")
        length = int(head.lower().split(b"content-length: ")[1].split(b"\r\n")[0])
        digest = hashlib.sha256(await reader.readexactly(length)).hexdigest().encode()
        writer.write(fixed_head(len(digest)) + digest)
        await writer.drain()

    server_tls, verify = wire
    async with (
        Upstream(serve, tls=server_tls) as upstream,
        new_client(verify=verify) as client,
    ):
        response = await client.post(upstream.url, content=body)
    assert response.content.decode() == hashlib.sha256(body).hexdigest()


async def test_an_upload_the_server_never_reads_is_a_write_timeout(wire):
    """A server that stops reading: once the kernel's buffers and the transport's are full, a
    write waits, bounded by the write timeout. The body is streamed in pieces: over TLS,
    asyncio takes any single write whole into memory and pauses the writer only from the
    next one on, so a body sent in one write is never bounded by the write timeout there."""
    client_left = asyncio.Event()

    async def pieces():
        for _ in range(32):
            yield bytes(1024 * 1024)

    async def serve(reader, writer):
        await reader.readuntil(b"\r\n\r\n")
        await wait(client_gave_up)
        while await reader.read(1024 * 1024):
            pass
        client_left.set()

    client_gave_up = asyncio.Event()
    server_tls, verify = wire
    async with (
        Upstream(serve, tls=server_tls) as upstream,
        new_client(verify=verify) as client,
    ):
        async with asyncio.timeout(BOUND):
            with pytest.raises(httpx.WriteTimeout):
                await client.post(
                    upstream.url,
                    content=pieces(),
                    timeout=httpx.Timeout(BOUND, write=0.2),
                )
        client_gave_up.set()
        await wait(client_left)
