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
