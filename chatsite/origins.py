"""Which pages may open the chat socket: exactly the site's own origins.

Browsers send cookies with a WebSocket handshake whatever page opened it, and SameSite=Lax cookies
are shared by every port of a host name, so the socket must check the `Origin` itself, as exactly
as an origin is defined (RFC 6454: scheme, host and port). Channels' AllowedHostsOriginValidator
compares host names only, which let any other service on the same host (another port, or plain
http beside https) drive a signed-in user's chat.
"""

from urllib.parse import urlsplit

from channels.security.websocket import WebsocketDenier
from django.conf import settings
from django.http.request import validate_host

DEFAULT_PORTS = {"http": 80, "https": 443}


def _origin_parts(origin: str) -> tuple[str, str, int] | None:
    """(scheme, host, port) of an Origin value, or None for "null" or anything malformed."""
    try:
        parts = urlsplit(origin)
        port = parts.port
    except ValueError:
        return None
    scheme, host = parts.scheme.lower(), (parts.hostname or "").lower()
    if scheme not in DEFAULT_PORTS or not host or parts.username or parts.path not in ("", "/"):
        return None
    return scheme, host, port or DEFAULT_PORTS[scheme]


def _host_for_validation(host: str) -> str:
    # ALLOWED_HOSTS spells IPv6 addresses in brackets, as the Host header does.
    return f"[{host}]" if ":" in host else host


def _trusted_origin_matches(trusted: str, scheme: str, host: str, port: int) -> bool:
    # Django's own rule for CSRF_TRUSTED_ORIGINS: a leading "*." allows any subdomain.
    wildcard = "://*." in trusted
    parts = _origin_parts(trusted.replace("://*.", "://", 1))
    if parts is None:
        return False
    trusted_scheme, trusted_host, trusted_port = parts
    if (trusted_scheme, trusted_port) != (scheme, port):
        return False
    return host.endswith("." + trusted_host) if wildcard else host == trusted_host


def websocket_origin_allowed(*, origin: str, scheme: str, port: int) -> bool:
    """Whether `origin` is one of ours: a host of ALLOWED_HOSTS with the scheme and port this
    server is reached on, or one of CSRF_TRUSTED_ORIGINS (the address behind a TLS proxy)."""
    parts = _origin_parts(origin)
    if parts is None:
        return False
    origin_scheme, host, origin_port = parts
    if (origin_scheme, origin_port) == (scheme, port) and validate_host(
        _host_for_validation(host), settings.ALLOWED_HOSTS
    ):
        return True
    return any(
        _trusted_origin_matches(trusted, origin_scheme, host, origin_port)
        for trusted in settings.CSRF_TRUSTED_ORIGINS
    )


def _serving_scheme_and_port(scope: dict) -> tuple[str, int]:
    scheme = "https" if scope.get("scheme") in ("wss", "https") else "http"
    server = scope.get("server")
    port = server[1] if server and server[1] else settings.PORT
    return scheme, int(port)


class SameOriginWebSocket:
    """ASGI middleware: a WebSocket handshake from any other origin is refused (HTTP 403)."""

    def __init__(self, application) -> None:
        self.application = application

    async def __call__(self, scope, receive, send):
        if scope["type"] == "websocket":
            origin = next(
                (value.decode("latin1") for name, value in scope["headers"] if name == b"origin"),
                "",
            )
            scheme, port = _serving_scheme_and_port(scope)
            if not websocket_origin_allowed(origin=origin, scheme=scheme, port=port):
                denier = WebsocketDenier()
                return await denier(scope, receive, send)
        return await self.application(scope, receive, send)
