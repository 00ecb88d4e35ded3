"""Presence is best-effort: a Redis that does not answer never ends a live subscription."""

from __future__ import annotations

import socket
import uuid
from collections.abc import AsyncIterator

import pytest
import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

from gateway.chat import Chat


@pytest.fixture
async def unreachable_redis() -> AsyncIterator[aioredis.Redis]:
    """A client for 127.0.0.1 on a port nothing listens on, with short timeouts."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    client = aioredis.Redis(
        host="127.0.0.1",
        port=port,
        socket_timeout=0.5,
        socket_connect_timeout=0.5,
        retry=Retry(NoBackoff(), 0),
    )
    try:
        yield client
    finally:
        await client.aclose()


async def test_a_heartbeat_redis_does_not_take_is_reported_not_raised(
    unreachable_redis: aioredis.Redis,
) -> None:
    chat = Chat(db=None, redis=unreachable_redis, shards=None)  # type: ignore[arg-type]
    assert await chat.heartbeat(uuid.uuid4(), "member") is False


async def test_going_online_survives_a_redis_that_does_not_answer(
    unreachable_redis: aioredis.Redis,
) -> None:
    chat = Chat(db=None, redis=unreachable_redis, shards=None)  # type: ignore[arg-type]
    async with chat.online(uuid.uuid4(), uuid.uuid4()) as member:
        assert member
