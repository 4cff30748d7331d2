"""Sockets end with their session (conversations.sessions): sign-out, password change and
deactivation close a user's sockets with 4401, and each socket re-checks on its own."""

import pytest
from asgiref.sync import sync_to_async
from channels.testing import WebsocketCommunicator
from django.conf import settings
from django.contrib.sessions.models import Session
from django.test import Client

from chatsite.asgi import application
from tests.conversations.conftest import FRAME_TIMEOUT, ORIGIN

pytestmark = pytest.mark.django_db(transaction=True)

CLOSED_SIGNED_OUT = {"type": "websocket.close", "code": 4401}


async def signed_in_client(user) -> Client:
    client = Client()
    await sync_to_async(client.force_login)(user)
    return client


async def socket_of(client: Client) -> WebsocketCommunicator:
    cookie = f"{settings.SESSION_COOKIE_NAME}={client.cookies[settings.SESSION_COOKIE_NAME].value}"
    communicator = WebsocketCommunicator(
        application, "/ws/chat/", headers=[ORIGIN, (b"cookie", cookie.encode())]
    )
    connected, _ = await communicator.connect(timeout=FRAME_TIMEOUT)
    assert connected
    return communicator


async def closed_signed_out(communicator: WebsocketCommunicator) -> bool:
    return await communicator.receive_output(FRAME_TIMEOUT) == CLOSED_SIGNED_OUT


async def test_signing_out_closes_that_sessions_sockets_and_no_other(clean_engine, ada):
    laptop, phone = await signed_in_client(ada), await signed_in_client(ada)
    laptop_tab, phone_tab = await socket_of(laptop), await socket_of(phone)
    await sync_to_async(laptop.post)("/accounts/logout/")
    assert await closed_signed_out(laptop_tab)
    # The phone's session still signs ada in: its socket stays.
    assert await phone_tab.receive_nothing(0.5)
    await phone_tab.disconnect()


async def test_a_password_change_closes_every_socket_of_the_user(clean_engine, ada, grace):
    first, second = await socket_of(await signed_in_client(ada)), None
    second = await socket_of(await signed_in_client(ada))
    bystander = await socket_of(await signed_in_client(grace))

    def change_password():
        ada.set_password("a new password entirely")
        ada.save()

    await sync_to_async(change_password)()
    assert await closed_signed_out(first)
    assert await closed_signed_out(second)
    assert await bystander.receive_nothing(0.5)
    await bystander.disconnect()


async def test_deactivating_the_user_closes_their_sockets(clean_engine, ada):
    socket = await socket_of(await signed_in_client(ada))
    ada.is_active = False
    await sync_to_async(ada.save)(update_fields=["is_active"])
    assert await closed_signed_out(socket)


async def test_other_saves_of_the_user_leave_sockets_open(clean_engine, ada):
    socket = await socket_of(await signed_in_client(ada))
    ada.first_name = "Ada"
    await sync_to_async(ada.save)(update_fields=["first_name", "last_login"])
    await sync_to_async(ada.save)()
    assert await socket.receive_nothing(0.5)
    await socket.disconnect()


async def test_a_socket_notices_on_its_own_when_its_session_is_gone(clean_engine, ada, settings):
    settings.CHAT_SESSION_RECHECK_SECONDS = 0.2
    socket = await socket_of(await signed_in_client(ada))
    # Deleted behind the site's back: no signal tells anyone.
    await sync_to_async(Session.objects.all().delete)()
    assert await closed_signed_out(socket)
