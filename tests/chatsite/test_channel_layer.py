"""The channel layer as configured by chatsite.settings, against the real Redis."""

import asyncio

import pytest
from channels.layers import get_channel_layer

pytestmark = pytest.mark.redis


async def test_receive_outlives_the_blocking_read_of_channels_redis():
    """channels-redis blocks 5 s per read. With redis-py's default 5 s socket timeout the read
    raised TimeoutError out of receive(), which ends the consumer and drops the user's socket."""
    layer = get_channel_layer()
    channel = await layer.new_channel()
    await layer.group_add("idle-test", channel)
    receiving = asyncio.create_task(layer.receive(channel))
    try:
        await asyncio.sleep(6.5)
        assert not receiving.done(), receiving.exception()
        await layer.group_send("idle-test", {"type": "ping", "n": 1})
        assert await asyncio.wait_for(receiving, 5) == {"type": "ping", "n": 1}
    finally:
        receiving.cancel()
        await layer.group_discard("idle-test", channel)


async def test_more_commands_at_once_than_the_pool_has_connections_wait_their_turn():
    """redis-py's plain pool raised "Too many connections" past 100 commands in flight: a few
    hundred sockets joining their groups at once lost their subscribe frames."""
    layer = get_channel_layer()
    channels = [await layer.new_channel() for _ in range(300)]
    try:
        await asyncio.gather(*(layer.group_add("crowd-test", channel) for channel in channels))
        await layer.group_send("crowd-test", {"type": "ping"})
        received = await asyncio.wait_for(
            asyncio.gather(*(layer.receive(channel) for channel in channels)), 30
        )
        assert received == [{"type": "ping"}] * len(channels)
    finally:
        await asyncio.gather(*(layer.group_discard("crowd-test", c) for c in channels))
