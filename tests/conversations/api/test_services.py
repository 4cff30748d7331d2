"""The record of calls: running calls hold their user's answer slots until they end, or until
their process is known to be dead."""

from datetime import timedelta

import pytest
from django.utils import timezone

from conversations.api.services import (
    api_call_interrupt_dead,
    api_call_interrupt_stale,
    api_call_keepalive,
)
from conversations.errors import ChatError
from conversations.models import ApiCall
from conversations.services import answer_slot_check

pytestmark = pytest.mark.django_db


def running(user, *, seconds_ago: float) -> ApiCall:
    return ApiCall.objects.create(
        user=user, key_name="k", alive_at=timezone.now() - timedelta(seconds=seconds_ago)
    )


def test_running_calls_hold_slots_until_their_process_is_stale(ada, grace, settings):
    settings.CHAT_MAX_CONCURRENT_GENERATIONS = 2
    settings.CHAT_STALE_STREAM_SECONDS = 30
    running(ada, seconds_ago=1)
    running(grace, seconds_ago=1)
    dead = running(ada, seconds_ago=60)
    answer_slot_check(user=ada)  # one live call of hers, one dead: a slot is free
    running(ada, seconds_ago=0)
    with pytest.raises(ChatError) as raised:
        answer_slot_check(user=ada)
    assert raised.value.code == "rate_limited"
    # A keepalive makes a call count again; the stale sweep ends only dead ones.
    api_call_keepalive(call_id=dead.pk)
    assert api_call_interrupt_stale() == 0
    ApiCall.objects.filter(pk=dead.pk).update(alive_at=timezone.now() - timedelta(seconds=60))
    assert api_call_interrupt_stale() == 1
    dead.refresh_from_db()
    assert dead.status == ApiCall.Status.INTERRUPTED


def test_at_start_without_shared_streams_every_running_call_is_dead(ada):
    running(ada, seconds_ago=0)
    finished = ApiCall.objects.create(user=ada, status=ApiCall.Status.COMPLETE)
    assert api_call_interrupt_dead(alive_before=None) == 1
    finished.refresh_from_db()
    assert finished.status == ApiCall.Status.COMPLETE
