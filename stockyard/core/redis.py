"""The Redis client: short timeouts everywhere, so an unreachable Redis can't stall a request.

One Redis, or a Redis Cluster (STOCKYARD_REDIS_CLUSTER): the URL then names any node, and
redis-py's cluster client finds the rest and routes each command to the node holding its
keys. Every script call keeps its keys in one slot (one hash tag per bucket, auth/limiter.py).
"""

from __future__ import annotations

from redis.asyncio import Redis
from redis.asyncio.cluster import RedisCluster
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import RedisClusterException, RedisError

from stockyard.core.settings import Settings

RedisClient = Redis | RedisCluster
# What "Redis is unavailable" looks like: the cluster client's own errors (no node reachable,
# the slot map unknown) are not RedisErrors.
REDIS_ERRORS = (RedisError, RedisClusterException, OSError, TimeoutError)


def create_redis(url: str, settings: Settings) -> RedisClient:
    if settings.redis_cluster:
        return RedisCluster.from_url(
            url,
            socket_timeout=settings.redis_timeout_seconds,
            socket_connect_timeout=settings.redis_timeout_seconds,
            # A node that is down fails the call at once (the limiter then fails open or
            # closed as configured); the client relearns the cluster's layout on the next.
            retry=Retry(NoBackoff(), retries=0),
            require_full_coverage=False,
            decode_responses=False,
        )
    return Redis.from_url(
        url,
        socket_timeout=settings.redis_timeout_seconds,
        socket_connect_timeout=settings.redis_timeout_seconds,
        health_check_interval=0,
        retry_on_timeout=False,
        decode_responses=False,
    )
