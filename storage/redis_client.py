"""Redis: one client per process with bounded connect and command times."""

from __future__ import annotations

import asyncio

import redis.asyncio as aioredis

from storage.config import Settings
from storage.errors import classify


def make_redis(settings: Settings) -> aioredis.Redis:
    return aioredis.Redis.from_url(
        settings.redis_url,
        socket_timeout=settings.redis_timeout_s,
        socket_connect_timeout=settings.redis_timeout_s,
        health_check_interval=30,
        decode_responses=False,
    )


async def ping(client: aioredis.Redis, timeout_s: float) -> None:
    """Raise `Unavailable` unless Redis answers PING within `timeout_s`."""
    try:
        await asyncio.wait_for(client.ping(), timeout_s)
    except Exception as exc:
        raise classify(exc, "redis") from exc
