"""The channel layers, one per mode: channels' own, each with one fix for many sockets.

Scale mode (REDIS_URL): channels-redis with a connection pool that waits when it is busy.
channels-redis gives each Redis host redis-py's plain pool, which raises "Too many connections"
once a command finds all of its connections in use: a few hundred sockets joining their groups at
once made it fail their subscribe frames. A blocking pool queues those commands instead, and its
size (CHAT_REDIS_CHANNEL_CONNECTIONS) is a setting.

Embedded mode: channels' in-process layer, swept for expired entries at most once a second.
"""

import time

import redis.asyncio as aioredis
from channels import layers
from channels_redis.core import RedisChannelLayer as BaseRedisChannelLayer
from django.conf import settings


class RedisChannelLayer(BaseRedisChannelLayer):
    def create_pool(self, index: int) -> aioredis.BlockingConnectionPool:
        host = dict(self.hosts[index])
        address = host.pop("address")
        return aioredis.BlockingConnectionPool.from_url(
            address, timeout=settings.REDIS_POOL_WAIT_SECONDS, **host
        )


# How often expired messages and group memberships are swept out.
SWEEP_SECONDS = 1.0


class InMemoryChannelLayer(layers.InMemoryChannelLayer):
    """channels' in-process layer without its quadratic cost: that one sweeps every channel and
    every group membership for expired entries on each receive and each group_send, so with
    500 sockets every frame paid for 500 sockets (a quarter of the server's time starting 500
    answers at once). Here the sweep runs at most once per SWEEP_SECONDS; an expired message
    (60 s old by default) may be delivered up to that much later than it would have been."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self._swept_at = float("-inf")

    def _clean_expired(self) -> None:
        now = time.monotonic()
        if now - self._swept_at < SWEEP_SECONDS:
            return
        self._swept_at = now
        super()._clean_expired()
