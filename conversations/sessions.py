"""Sockets follow the session that opened them.

A socket is authenticated once, at its handshake; after that only this module ends it. When a
user signs out, changes their password or is deactivated, every socket of theirs, on every server
process, is asked (through the channel-layer group `chat.user.<id>`) to check its session again,
and closes with 4401 when the session no longer signs that user in. Each socket also checks on
its own every CHAT_SESSION_RECHECK_SECONDS, for whatever no signal reports (a session expiring or
deleted by hand).
"""

import logging
from importlib import import_module
from typing import Any

from asgiref.sync import async_to_sync
from channels.auth import get_user
from channels.layers import get_channel_layer
from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.signals import user_logged_out
from django.db import transaction
from django.db.models.signals import post_save
from django.dispatch import receiver

from conversations.groups import user_group

logger = logging.getLogger(__name__)

RECHECK_EVENT = "chat.session.recheck"
# Saves of a user row that can end its sessions; others (such as `last_login`) cannot.
SESSION_FIELDS = frozenset({"password", "is_active"})


async def session_signs_in(*, session_key: str | None, user_id: Any) -> bool:
    """Whether the stored session `session_key` still signs in the user `user_id`: it exists, the
    user is active, and the password has not changed since (Django's session hash)."""
    if not session_key:
        return False
    store = import_module(settings.SESSION_ENGINE).SessionStore(session_key=session_key)
    user = await get_user({"session": store})
    return user.is_authenticated and user.pk == user_id


def user_sockets_recheck(*, user_id: Any, ended_session: str | None = None) -> None:
    """Ask every socket of the user to check its session; those of `ended_session` close at
    once. Sent after the transaction commits, so the sockets read the new state."""

    def send() -> None:
        event = {"type": RECHECK_EVENT, "ended_session": ended_session}
        try:
            async_to_sync(get_channel_layer().group_send)(user_group(user_id), event)
        except Exception:
            # A channel-layer blip must not fail a sign-out; the periodic check still ends
            # the sockets.
            logger.warning("could not tell user %s's sockets to check their session", user_id)

    transaction.on_commit(send)


@receiver(user_logged_out, dispatch_uid="chat-sockets-logout")
def _on_logout(sender, request, user, **kwargs) -> None:
    if user is not None:
        # The session is flushed right after this signal: name it, as it still looks valid.
        user_sockets_recheck(user_id=user.pk, ended_session=request.session.session_key)


@receiver(post_save, dispatch_uid="chat-sockets-user-saved")
def _on_user_saved(sender, instance, created, update_fields=None, **kwargs) -> None:
    if created or sender is not get_user_model():
        return
    if update_fields is not None and not SESSION_FIELDS & set(update_fields):
        return
    user_sockets_recheck(user_id=instance.pk)
