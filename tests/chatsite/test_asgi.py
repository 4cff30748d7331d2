"""The WebSocket route as the browser meets it: through the full ASGI stack of chatsite.asgi."""

import pytest
from asgiref.sync import sync_to_async
from channels.testing import WebsocketCommunicator

from chatsite.asgi import application
from tests.live_server import session_cookie

pytestmark = pytest.mark.django_db(transaction=True)

ORIGIN = (b"origin", b"http://127.0.0.1:8000")


async def connect(headers) -> tuple[bool, int | None, WebsocketCommunicator]:
    communicator = WebsocketCommunicator(application, "/ws/chat/", headers=headers)
    connected, code = await communicator.connect()
    return connected, code, communicator


async def test_anonymous_socket_is_closed_with_4401():
    # Accepted, then closed with an application code: a browser sees 4401 (and knows the user is
    # signed out) only when the handshake completed; a refused handshake reads as 1006.
    connected, _, communicator = await connect([ORIGIN])
    assert connected
    closed = await communicator.receive_output()
    assert closed == {"type": "websocket.close", "code": 4401}


async def test_foreign_origin_is_refused_even_when_signed_in(client, django_user_model):
    cookie = await _cookie(client, django_user_model)
    connected, _, communicator = await connect([(b"origin", b"https://evil.example"), cookie])
    assert not connected
    await communicator.disconnect()


async def test_signed_in_user_from_our_origin_is_accepted(client, django_user_model):
    cookie = await _cookie(client, django_user_model)
    connected, _, communicator = await connect([ORIGIN, cookie])
    assert connected
    await communicator.disconnect()


async def _cookie(client, django_user_model):
    user = await django_user_model.objects.acreate(username="ada")
    return (b"cookie", (await sync_to_async(session_cookie)(user)).encode())


@pytest.mark.parametrize(
    "origin",
    [
        "http://127.0.0.1:9999",  # another service on our host name
        "https://127.0.0.1",  # another scheme (and its default port)
        "http://localhost:1",
        "http://127.0.0.1",  # port 80, not ours
        "null",
        "",
    ],
)
async def test_origins_differing_in_port_or_scheme_are_refused(client, django_user_model, origin):
    cookie = await _cookie(client, django_user_model)
    headers = [cookie] + ([(b"origin", origin.encode())] if origin else [])
    connected, _, communicator = await connect(headers)
    assert not connected
    await communicator.disconnect()


@pytest.mark.parametrize("origin", ["http://localhost:8000", "http://[::1]:8000"])
async def test_every_allowed_host_with_our_port_is_accepted(client, django_user_model, origin):
    cookie = await _cookie(client, django_user_model)
    connected, _, communicator = await connect([(b"origin", origin.encode()), cookie])
    assert connected
    await communicator.disconnect()


async def test_a_trusted_origin_behind_a_proxy_is_accepted(client, django_user_model, settings):
    settings.CSRF_TRUSTED_ORIGINS = ["https://chat.example.org", "https://*.example.net"]
    cookie = await _cookie(client, django_user_model)
    for origin, accepted in [
        (b"https://chat.example.org", True),
        (b"https://eu.chat.example.net", True),
        (b"http://chat.example.org", False),
        (b"https://chat.example.org:8443", False),
    ]:
        connected, _, communicator = await connect([(b"origin", origin), cookie])
        assert connected == accepted, origin
        await communicator.disconnect()
