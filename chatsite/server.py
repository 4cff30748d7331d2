"""Daphne, with the limits an HTTP server facing the internet needs before Django sees a request.

`manage.py serve` runs `python -m chatsite.server` with Daphne's own command-line options. Daphne
reads a whole request body (into a file) before it calls the application, and then queues all of
it in memory at once, so a body limit in ASGI alone comes too late: three 300 MB posts to the
sign-in page took the process to almost 1 GB. Daphne has no option for that, nor for clients
that trickle their request head (its `--http-timeout` starts only once the body is in, its
`--websocket_connect_timeout` only after an upgrade). Twisted, underneath, has an idle timeout
(HTTPFactory's `timeout`), which we configure. The rest is here, at the points Twisted offers:

- a request head (request line and headers) must be complete within HTTP_HEAD_TIMEOUT_SECONDS
  of the connection opening or of the previous response (RFC 9112 leaves this to the server);
- no data for HTTP_IDLE_TIMEOUT_SECONDS closes the connection: a stalled body, an idle
  keep-alive (Twisted's idle timeout, paused while a response is being produced);
- a `Content-Length` over the route's limit (chatsite.request_limits) is answered 413 and the
  connection closed before any of the body is read; a chunked body is counted and cut off the
  same way;
- a WebSocket frame over Daphne's message limit closes the socket with 1009 and a reason.

It also makes Daphne's `--fd` work: `manage.py serve` with SERVER_PROCESSES > 1 binds the port
itself and hands each Daphne process a listening socket that way (chatsite.supervisor).
"""

import os
import socket
import sys

from daphne.http_protocol import HTTPFactory, WebRequest
from daphne.ws_protocol import WebSocketFactory
from twisted.web import http

from chatsite.request_limits import (
    api_key_of,
    request_body_limit,
    session_key_of,
    too_large_body,
)
from chatsite.supervisor import SUPERVISOR_ENV
from providers.transport import transport_warm_up


class LimitedRequest(WebRequest):
    """A request whose body is counted as it arrives (chunked bodies have no declared size)."""

    body_limit: int | None = None
    body_received = 0

    def handleContentChunk(self, data: bytes) -> None:
        if self.channel is None or self.channel.refused:
            return
        self.body_received += len(data)
        if self.body_limit is not None and self.body_received > self.body_limit:
            self.channel.refuse(413, b"Content Too Large", too_large_body(self.body_limit))
            return
        super().handleContentChunk(data)

    def requestReceived(self, command, path, version):
        if self.channel is not None and self.channel.refused:
            return
        super().requestReceived(command, path, version)


class LimitedHTTPChannel(http.HTTPChannel):
    head_timeout: float = 30.0
    refused = False
    _head_timer = None
    # Whether any byte of the awaited request head has arrived.
    _head_begun = False

    def connectionMade(self) -> None:
        super().connectionMade()
        self._start_head_timer()

    def _start_head_timer(self) -> None:
        self._cancel_head_timer()
        self._head_begun = False
        self._head_timer = self.callLater(self.head_timeout, self._head_timed_out)

    def dataReceived(self, data: bytes) -> None:
        if self._head_timer is not None:
            self._head_begun = True
        super().dataReceived(data)

    def _cancel_head_timer(self) -> None:
        if self._head_timer is not None and self._head_timer.active():
            self._head_timer.cancel()
        self._head_timer = None

    def _head_timed_out(self) -> None:
        self._head_timer = None
        if not self._head_begun:
            # An idle connection (a keep-alive between requests, or one never used): closed
            # quietly. A 408 here would reach a client that is just sending its next request
            # on it as the answer to that request.
            self.refused = True
            self.loseConnection()
            return
        self.refuse(408, b"Request Timeout", b"The request took too long to arrive.\n")

    def allHeadersReceived(self) -> None:
        self._cancel_head_timer()
        request = self.requests[-1]
        path = self._path.split(b"?", 1)[0].decode("latin1")
        cookie = request.requestHeaders.getRawHeaders(b"cookie", [b""])[0]
        authorization = request.requestHeaders.getRawHeaders(b"authorization", [b""])[0]
        # Without a session cookie (or an API key) nobody is signed in; with one,
        # RequestBodyLimit (in the application) checks that it is real before taking a larger
        # body.
        credentials = session_key_of(cookie) or api_key_of(path=path, authorization=authorization)
        limit = request_body_limit(path=path, signed_in=credentials is not None)
        if self.length is not None and self.length > limit:
            self.refuse(413, b"Content Too Large", too_large_body(limit))
            return
        request.body_limit = limit
        super().allHeadersReceived()

    def requestDone(self, request) -> None:
        # Started first: a pipelined request already buffered is parsed inside requestDone,
        # and its head must stop this timer, not be followed by it.
        if self.persistent and not self.refused:
            self._start_head_timer()
        super().requestDone(request)

    def refuse(self, status: int, reason: bytes, body: bytes) -> None:
        """Answer `status` and close, reading nothing more of this connection."""
        if self.refused:
            return
        self.refused = True
        self._cancel_head_timer()
        head = b"HTTP/1.1 %d %s\r\n" % (status, reason)
        head += b"Content-Type: text/plain; charset=utf-8\r\nConnection: close\r\n"
        head += b"Content-Length: %d\r\n\r\n" % len(body)
        self.transport.write(head + body)
        self.loseConnection()

    def connectionLost(self, reason) -> None:
        self._cancel_head_timer()
        super().connectionLost(reason)


class LimitedHTTPFactory(HTTPFactory):
    # HTTP/1.1 only, as Daphne serves it without TLS; its default wrapper would choose between
    # HTTP/1.1 and HTTP/2 and hide our channel class.
    protocol = LimitedHTTPChannel

    def __init__(self, server) -> None:
        from django.conf import settings

        super().__init__(server)
        self.timeOut = settings.HTTP_IDLE_TIMEOUT_SECONDS
        self.head_timeout = settings.HTTP_HEAD_TIMEOUT_SECONDS

    def buildProtocol(self, addr):
        channel = super().buildProtocol(addr)
        channel.requestFactory = LimitedRequest
        channel.head_timeout = self.head_timeout
        return channel


class ClosingWebSocketFactory(WebSocketFactory):
    def setProtocolOptions(self, **options) -> None:
        # Autobahn's default answers a protocol violation by dropping the TCP connection, which
        # a browser reports as 1006 with no reason. With a close frame instead, a frame over
        # Daphne's size limit (1 MiB) ends the socket with 1009 "message too big" and says why
        # (RFC 6455, section 7.4.1).
        super().setProtocolOptions(failByDrop=False, **options)


def server_from_string(reactor, description: str):
    """Twisted's endpoint for `description`. Daphne describes `--fd N` as "fd:fileno=N", which
    Twisted has no parser for: that one becomes the endpoint that adopts a listening socket."""
    from twisted.internet.endpoints import AdoptedStreamServerEndpoint, serverFromString

    prefix = "fd:fileno="
    if not description.startswith(prefix):
        return serverFromString(reactor, description)
    fileno = int(description.removeprefix(prefix))
    # The socket knows its own family; the probe works on a copy, Twisted adopts the original.
    with socket.socket(fileno=os.dup(fileno)) as probe:
        family = probe.family
    return AdoptedStreamServerEndpoint(reactor, fileno, family)


def stop_without_supervisor(supervisor: int) -> None:
    """Stop, as on SIGTERM (answers saved), once the supervising `manage.py serve` is gone however
    it ended: a killed supervisor can neither stop nor restart this process any more, and a
    server left running would keep its share of the port's connections."""
    from twisted.internet import reactor, task

    def check() -> None:
        # Orphans are adopted by another process: the parent changes.
        if os.getppid() != supervisor and reactor.running:
            reactor.stop()

    reactor.callWhenRunning(task.LoopingCall(check).start, 1.0)


def main(argv: list[str]) -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "chatsite.settings")
    import daphne.server
    import django
    from daphne.cli import CommandLineInterface

    # Daphne builds its factories and endpoints inside Server.run, with no option to pass others.
    daphne.server.HTTPFactory = LimitedHTTPFactory
    daphne.server.WebSocketFactory = ClosingWebSocketFactory
    daphne.server.serverFromString = server_from_string
    if supervisor := os.environ.get(SUPERVISOR_ENV):
        stop_without_supervisor(int(supervisor))
    # Settings first (the application would load them next anyway): a configuration error
    # stops the start here, before the warm-up, whose requests read the provider settings.
    django.setup()
    transport_warm_up()
    CommandLineInterface().run(argv)


if __name__ == "__main__":
    main(sys.argv[1:])
