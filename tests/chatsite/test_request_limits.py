"""The body limit in front of Django (chatsite.request_limits), through chatsite.asgi."""

import pytest
from asgiref.sync import sync_to_async
from asgiref.testing import ApplicationCommunicator
from django.conf import settings

from chatsite.asgi import application
from chatsite.request_limits import MULTIPART_ROOM, request_body_limit
from conversations.forms import IMPORT_MAX_BYTES
from tests.live_server import session_cookie

pytestmark = pytest.mark.django_db(transaction=True)

WAIT = 10


def http_scope(path: str, headers: list[tuple[bytes, bytes]]) -> dict:
    return {
        "type": "http",
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "root_path": "",
        "headers": [(b"host", b"127.0.0.1:8000"), *headers],
        "client": ("127.0.0.1", 50000),
        "server": ("127.0.0.1", 8000),
    }


async def response_start(communicator: ApplicationCommunicator) -> dict:
    while True:
        message = await communicator.receive_output(WAIT)
        if message["type"] == "http.response.start":
            return message


async def cookie_of(django_user_model) -> tuple[bytes, bytes]:
    user = await django_user_model.objects.acreate(username="ada")
    return (b"cookie", (await sync_to_async(session_cookie)(user)).encode())


async def test_a_declared_length_over_the_anonymous_limit_is_refused_before_reading():
    length = 300 * 1024 * 1024
    scope = http_scope("/accounts/login/", [(b"content-length", str(length).encode())])
    communicator = ApplicationCommunicator(application, scope)
    # No body is ever sent: an application that waited for it would never answer.
    start = await response_start(communicator)
    body = await communicator.receive_output(WAIT)
    assert start["status"] == 413
    assert body["body"] == b"The request is too large: at most 16384 bytes may be sent here.\n"


async def test_a_made_up_session_cookie_does_not_buy_a_larger_limit():
    scope = http_scope(
        "/accounts/login/",
        [(b"content-length", b"100000"), (b"cookie", b"sessionid=not-a-real-session")],
    )
    communicator = ApplicationCommunicator(application, scope)
    assert (await response_start(communicator))["status"] == 413


async def test_a_chunked_body_is_counted_and_cut_at_the_limit():
    communicator = ApplicationCommunicator(application, http_scope("/accounts/login/", []))
    piece = b"a" * 4096
    sent = 0
    while sent <= settings.HTTP_MAX_ANONYMOUS_BODY_BYTES:
        await communicator.send_input({"type": "http.request", "body": piece, "more_body": True})
        sent += len(piece)
    start = await response_start(communicator)
    assert start["status"] == 413
    await communicator.receive_output(WAIT)  # the body
    # Nothing else: Django was told the client left and answers nothing of its own.
    assert await communicator.receive_nothing(0.5)


async def test_a_signed_in_user_may_send_the_chat_forms_largest_message(django_user_model):
    cookie = await cookie_of(django_user_model)
    length = 6 * settings.CHAT_MAX_CONTENT_BYTES
    scope = http_scope("/", [(b"content-length", str(length).encode()), cookie])
    communicator = ApplicationCommunicator(application, scope)
    await communicator.send_input({"type": "http.request", "body": b"a" * length})
    # Through to Django, which refuses the form for its own reasons (no CSRF token).
    assert (await response_start(communicator))["status"] == 403


async def test_imports_may_be_as_large_as_documented_and_no_larger(django_user_model):
    assert request_body_limit(path="/import/", signed_in=True) == IMPORT_MAX_BYTES + MULTIPART_ROOM
    cookie = await cookie_of(django_user_model)
    too_large = IMPORT_MAX_BYTES + MULTIPART_ROOM + 1
    scope = http_scope("/import/", [(b"content-length", str(too_large).encode()), cookie])
    communicator = ApplicationCommunicator(application, scope)
    start = await response_start(communicator)
    assert start["status"] == 413
    scope = http_scope("/", [(b"content-length", str(IMPORT_MAX_BYTES).encode()), cookie])
    communicator = ApplicationCommunicator(application, scope)
    assert (await response_start(communicator))["status"] == 413


async def test_uploads_follow_the_attachment_limits_without_loosening_other_routes(
    django_user_model, settings
):
    settings.ATTACHMENT_MAX_FILE_BYTES = 2 * 1024 * 1024
    settings.ATTACHMENT_MAX_MESSAGE_BYTES = 3 * 1024 * 1024
    upload_limit = 2 * 1024 * 1024 + MULTIPART_ROOM
    send_limit = settings.HTTP_MAX_BODY_BYTES + 3 * 1024 * 1024 + MULTIPART_ROOM
    assert request_body_limit(path="/attachments/", signed_in=True) == upload_limit
    assert request_body_limit(path="/send/", signed_in=True) == send_limit
    chat = "/c/00000000-0000-0000-0000-000000000000/send/"
    assert request_body_limit(path=chat, signed_in=True) == send_limit
    assert request_body_limit(path="/attachments/", signed_in=False) == (
        settings.HTTP_MAX_ANONYMOUS_BODY_BYTES
    )
    assert request_body_limit(path="/render/", signed_in=True) == settings.HTTP_MAX_BODY_BYTES
    cookie = await cookie_of(django_user_model)
    scope = http_scope("/attachments/", [(b"content-length", str(upload_limit + 1).encode()),
                                         cookie])  # fmt: skip
    assert (await response_start(ApplicationCommunicator(application, scope)))["status"] == 413
