"""The channel layer as configured by chatsite.settings, against the real Redis."""

import asyncio

import pytest
from channels.layers import get_channel_layer
from redis.asyncio import Redis

from chatsite.channel_layer import RedisChannelLayer

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


@pytest.fixture
async def busy_pool(settings):
    """A layer of two connections, and a way to keep both busy for a second (longer than five
    of its waits for a free one)."""
    settings.REDIS_POOL_WAIT_SECONDS = 0.2
    address = settings.CHANNEL_LAYERS["default"]["CONFIG"]["hosts"][0]["address"]
    layer = RedisChannelLayer(
        hosts=[{"address": address, "max_connections": 2, "socket_timeout": 30}]
    )
    observer = Redis.from_url(address)
    holders: list[asyncio.Task] = []

    async def occupy() -> list[asyncio.Task]:
        holders.extend(
            asyncio.create_task(layer.connection(0).blpop([f"hold-test-{n}"], timeout=1))
            for n in range(2)
        )
        async with asyncio.timeout(10):
            while True:  # until Redis shows both commands blocked
                if sum(c["cmd"] == "blpop" for c in await observer.client_list()) == 2:
                    return holders
                await asyncio.sleep(0.01)

    yield layer, occupy
    for task in holders:
        task.cancel()
    await layer.close_pools()
    await observer.aclose()


async def test_a_receive_waits_out_a_pool_with_no_free_connection(busy_pool):
    """Under load every connection of the layer's pool can stay busy for longer than a command
    waits for one. channels-redis let that failure out of receive(), which ends the consumer
    popping for the whole process and closes its user's socket (one answer in 1,000 in
    bench.starts); the receive now tries again and gets its message once a connection frees."""
    layer, occupy = busy_pool
    channel = await layer.new_channel()
    holders = await occupy()
    receiving = asyncio.create_task(layer.receive(channel))
    await asyncio.gather(*holders)
    assert not receiving.done() or receiving.exception() is None
    await layer.send(channel, {"type": "ping", "n": 2})
    assert await asyncio.wait_for(receiving, 10) == {"type": "ping", "n": 2}


async def test_a_received_message_s_backup_is_removed_once_a_connection_frees(busy_pool):
    """channels-redis keeps each received message in a backup queue until a task of its own
    removes it; that task failed on a busy pool, and the message came a second time."""
    layer, occupy = busy_pool
    channel = await layer.new_channel()
    await layer.send(channel, {"type": "ping", "n": 3})
    assert await asyncio.wait_for(layer.receive(channel), 10) == {"type": "ping", "n": 3}
    backup = layer._backup_channel_name(layer.prefix + layer.non_local_name(channel))
    # The backup as a receive leaves it when its cleaner cannot run yet.
    await layer.connection(0).zadd(backup, {b"copy": 1.0})
    holders = await occupy()
    await asyncio.gather(
        layer._clean_receive_backup(0, layer.prefix + layer.non_local_name(channel)), *holders
    )
    assert await layer.connection(0).zcard(backup) == 0
