"""The Redis client: short timeouts everywhere, so an unreachable Redis can't stall a request."""

from __future__ import annotations

from redis.asyncio import Redis

from stockyard.core.settings import Settings


def create_redis(url: str, settings: Settings) -> Redis:
    return Redis.from_url(
        url,
        socket_timeout=settings.redis_timeout_seconds,
        socket_connect_timeout=settings.redis_timeout_seconds,
        health_check_interval=0,
        retry_on_timeout=False,
        decode_responses=False,
    )
