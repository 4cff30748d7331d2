"""How large a request body may be, and the ASGI middleware that holds Django to it.

One rule, used in two places: by the HTTP server (chatsite.server), which refuses a body before
reading it, and by `RequestBodyLimit` in front of Django, which also knows whether the session
signs anyone in. Anonymous clients only ever send the sign-in form, so they get a small limit;
signed-in users (and API clients with a valid key) get room for the chat form; the import route,
its documented maximum; the attachment upload route, one file of ATTACHMENT_MAX_FILE_BYTES; the
no-JavaScript send form, its message plus one message's files (ATTACHMENT_MAX_MESSAGE_BYTES).
"""

import re
from http import HTTPStatus
from importlib import import_module

from django.conf import settings
from django.contrib.auth import SESSION_KEY

from chatsite.db import db_call

IMPORT_PATH = "/import/"
API_PATH_PREFIX = "/v1/"
UPLOAD_PATH = "/attachments/"
# The no-JavaScript composer posts here, with the message's files (conversations.urls).
SEND_PATH = re.compile(r"^/(?:c/[0-9a-f-]{36}/)?send/$")
# Room for the multipart framing around an imported file (boundaries, part headers, the CSRF
# token): a file of exactly the documented maximum must still reach the form's own check.
MULTIPART_ROOM = 64 * 1024


def request_body_limit(*, path: str, signed_in: bool) -> int:
    """The largest body, in bytes, a request to `path` may carry."""
    if not signed_in:
        return settings.HTTP_MAX_ANONYMOUS_BODY_BYTES
    if path == IMPORT_PATH:
        from conversations.forms import IMPORT_MAX_BYTES

        return IMPORT_MAX_BYTES + MULTIPART_ROOM
    if path == UPLOAD_PATH:
        return settings.ATTACHMENT_MAX_FILE_BYTES + MULTIPART_ROOM
    if SEND_PATH.match(path):
        return settings.HTTP_MAX_BODY_BYTES + settings.ATTACHMENT_MAX_MESSAGE_BYTES + MULTIPART_ROOM
    return settings.HTTP_MAX_BODY_BYTES


def too_large_body(limit: int) -> bytes:
    return f"The request is too large: at most {limit} bytes may be sent here.\n".encode()


def api_key_of(*, path: str, authorization: bytes | None) -> str | None:
    """The API key of a request to the API (`Authorization: Bearer <key>` on a /v1/ path):
    an API client has no session, its key signs it in."""
    if not path.startswith(API_PATH_PREFIX) or not authorization:
        return None
    scheme, _, key = authorization.decode("latin1").partition(" ")
    key = key.strip()
    return key if scheme.lower() == "bearer" and key else None


def _api_key_signs_in(key: str) -> bool:
    from conversations.api.selectors import api_key_authenticate

    return api_key_authenticate(key=key) is not None


def session_key_of(cookie_header: bytes | None) -> str | None:
    """The session cookie's value in a raw `Cookie` header, if any."""
    if not cookie_header:
        return None
    name = settings.SESSION_COOKIE_NAME.encode()
    for pair in cookie_header.split(b";"):
        key, _, value = pair.strip().partition(b"=")
        if key == name and value:
            return value.decode("latin1")
    return None


def _session_signs_in(session_key: str) -> bool:
    store = import_module(settings.SESSION_ENGINE).SessionStore(session_key=session_key)
    return SESSION_KEY in store.load()


class RequestBodyLimit:
    """ASGI middleware for HTTP: a declared Content-Length over the limit gets 413 before any of
    the body is read; a body without one (chunked) is counted and cut off at the limit."""

    def __init__(self, application) -> None:
        self.application = application

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.application(scope, receive, send)
        headers = dict(scope["headers"])
        declared = _content_length(headers.get(b"content-length"))
        session_key = session_key_of(headers.get(b"cookie"))
        path = scope["path"]
        api_key = api_key_of(path=path, authorization=headers.get(b"authorization"))
        signed_in = None

        async def limit_for(size: int) -> int:
            # The session (or API key) is looked up only for a body an anonymous client may not
            # send.
            nonlocal signed_in
            if size <= settings.HTTP_MAX_ANONYMOUS_BODY_BYTES or not (session_key or api_key):
                return settings.HTTP_MAX_ANONYMOUS_BODY_BYTES
            if signed_in is None:
                # On the database threads (chatsite.db), not on channels' one shared thread.
                if api_key:
                    signed_in = await db_call(_api_key_signs_in)(api_key)
                else:
                    signed_in = await db_call(_session_signs_in)(session_key)
            return request_body_limit(path=path, signed_in=signed_in)

        if declared is not None and declared > (limit := await limit_for(declared)):
            return await _send_too_large(send, limit)

        received = 0
        refused = False

        async def counted_receive():
            nonlocal received, refused
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                limit = await limit_for(received)
                if received > limit:
                    refused = True
                    await _send_too_large(send, limit)
                    # Django stops reading and answers nothing more.
                    return {"type": "http.disconnect"}
            return message

        async def guarded_send(message):
            if not refused:
                await send(message)

        return await self.application(scope, counted_receive, guarded_send)


def _content_length(value: bytes | None) -> int | None:
    if value is None or not value.strip().isdigit():
        return None
    return int(value)


async def _send_too_large(send, limit: int) -> None:
    body = too_large_body(limit)
    await send(
        {
            "type": "http.response.start",
            "status": HTTPStatus.REQUEST_ENTITY_TOO_LARGE,
            "headers": [
                (b"content-type", b"text/plain; charset=utf-8"),
                (b"content-length", str(len(body)).encode()),
                (b"connection", b"close"),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})
