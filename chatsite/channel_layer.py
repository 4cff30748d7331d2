"""channels-redis with a connection pool that waits when it is busy.

channels-redis gives each Redis host redis-py's plain pool, which raises "Too many connections"
once a command finds all of its connections in use: a few hundred sockets joining their groups at
once made it fail their subscribe frames. A blocking pool queues those commands instead, and its
size (CHAT_REDIS_CHANNEL_CONNECTIONS) is a setting.
"""

import redis.asyncio as aioredis
from channels_redis.core import RedisChannelLayer as BaseRedisChannelLayer

# How long a command waits for a free connection before failing.
POOL_WAIT_SECONDS = 10


class RedisChannelLayer(BaseRedisChannelLayer):
    def create_pool(self, index: int) -> aioredis.BlockingConnectionPool:
        host = dict(self.hosts[index])
        address = host.pop("address")
        return aioredis.BlockingConnectionPool.from_url(address, timeout=POOL_WAIT_SECONDS, **host)
