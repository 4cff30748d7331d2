"""The WebSocket route as the browser meets it: through the full ASGI stack of chatsite.asgi."""

import pytest
from channels.testing import WebsocketCommunicator
from django.conf import settings

from chatsite.asgi import application

pytestmark = pytest.mark.django_db(transaction=True)

ORIGIN = (b"origin", b"http://127.0.0.1:8000")


def session_cookie(client, django_user_model) -> tuple[bytes, bytes]:
    user = django_user_model.objects.create_user(username="ada", password="pw-for-tests-only")
    client.force_login(user)
    value = client.cookies[settings.SESSION_COOKIE_NAME].value
    return (b"cookie", f"{settings.SESSION_COOKIE_NAME}={value}".encode())


async def connect(headers) -> tuple[bool, int | None, WebsocketCommunicator]:
    communicator = WebsocketCommunicator(application, "/ws/chat/", headers=headers)
    connected, code = await communicator.connect()
    return connected, code, communicator


async def test_anonymous_socket_is_refused():
    connected, code, communicator = await connect([ORIGIN])
    assert not connected
    assert code == 4401
    await communicator.disconnect()


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
    from asgiref.sync import sync_to_async

    return await sync_to_async(session_cookie)(client, django_user_model)
