"""The channel layers, one per mode: channels' own, with fixes for many sockets.

Scale mode (REDIS_URL): channels-redis with a connection pool that waits when it is busy.
channels-redis gives each Redis host redis-py's plain pool, which raises "Too many connections"
once a command finds all of its connections in use: a few hundred sockets joining their groups at
once made it fail their subscribe frames. A blocking pool queues those commands instead, and its
size (CHAT_REDIS_CHANNEL_CONNECTIONS) is a setting. A receive that finds no connection in time
tries again instead of closing a socket (receive_single).

Embedded mode: channels' in-process layer, swept for expired entries at most once a second.
"""

import asyncio
import logging
import time

import redis.asyncio as aioredis
from channels import layers
from channels_redis.core import RedisChannelLayer as BaseRedisChannelLayer
from django.conf import settings
from redis.exceptions import ConnectionError as RedisConnectionError

logger = logging.getLogger(__name__)


# The longest pause between tries of a command that found no free connection.
RECEIVE_RETRY_MAX_SECONDS = 2.0


class RedisChannelLayer(BaseRedisChannelLayer):
    def create_pool(self, index: int) -> aioredis.BlockingConnectionPool:
        host = dict(self.hosts[index])
        address = host.pop("address")
        return aioredis.BlockingConnectionPool.from_url(
            address, timeout=settings.REDIS_POOL_WAIT_SECONDS, **host
        )

    async def receive_single(self, channel: str) -> tuple[str, dict]:
        """One message for `channel`, however long the pool stays busy.

        One consumer at a time pops for every socket of the process, and channels-redis lets a
        failed pop out of that consumer's receive(), which ends it and closes its user's socket.
        Under load every connection of the pool can be busy for longer than a command waits for
        one (REDIS_POOL_WAIT_SECONDS): 1,000 answers starting at once on one process lost a
        socket that way. So the receive is tried again, and the socket waits as an idle one
        does. The command that got no connection was never sent: when it was the pop, nothing
        was taken; when it was the backup of a message just popped (channels-redis sends its
        commands on separate connections), that message is lost, as it was before, but not the
        socket. Redis itself failing still ends the consumer: a restarted Redis may have lost
        its group memberships, and the page's reconnect joins them again."""
        return await self._when_a_connection_frees(super().receive_single, channel)

    async def _clean_receive_backup(self, index: int, channel: str) -> None:
        # A received message's backup copy, removed in a task of its own: left in place it
        # would be delivered a second time, and the task's failure logged as never retrieved.
        await self._when_a_connection_frees(super()._clean_receive_backup, index, channel)

    async def _when_a_connection_frees(self, command, *args):
        pause = 0.05
        waited = False
        while True:
            try:
                result = await command(*args)
            except RedisConnectionError as exc:
                if not isinstance(exc.__cause__, TimeoutError):
                    raise  # not the pool's wait: Redis is unreachable
                if not waited:
                    logger.warning("channel layer: no free Redis connection; waiting for one")
                waited = True
                await asyncio.sleep(pause)
                pause = min(2 * pause, RECEIVE_RETRY_MAX_SECONDS)
                continue
            if waited:
                logger.warning("channel layer: a Redis connection is free again")
            return result


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
