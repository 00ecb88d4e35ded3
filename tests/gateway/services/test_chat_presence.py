"""Presence is best-effort: a Redis that does not answer never ends a live subscription."""

from __future__ import annotations

import time
import uuid

import pytest
import redis.asyncio as aioredis

from deployments.settings import Settings
from gateway.services.chat import PRESENCE_TTL_S, Chat
from storage.redis_client import make_redis


async def test_a_heartbeat_redis_does_not_take_is_reported_not_raised(
    dead_redis: aioredis.Redis,
) -> None:
    chat = Chat(db=None, redis=dead_redis, shards=None)  # type: ignore[arg-type]
    assert await chat.heartbeat(uuid.uuid4(), "member") is False


async def test_going_online_survives_a_redis_that_does_not_answer(
    dead_redis: aioredis.Redis,
) -> None:
    chat = Chat(db=None, redis=dead_redis, shards=None)  # type: ignore[arg-type]
    async with chat.online(uuid.uuid4(), uuid.uuid4()) as member:
        assert member


@pytest.mark.stack
async def test_one_beat_refreshes_every_member_online_through_this_replica(
    settings: Settings,
) -> None:
    redis = make_redis(settings)
    chat = Chat(db=None, redis=redis, shards=None)  # type: ignore[arg-type]
    rooms = [uuid.uuid4(), uuid.uuid4()]
    try:
        async with (
            chat.online(rooms[0], uuid.uuid4()) as a,
            chat.online(rooms[1], uuid.uuid4()) as b,
        ):
            keys = [f"nova:chat:{room}:online" for room in rooms]
            for key, member in zip(keys, (a, b), strict=True):
                await redis.zadd(key, {member: time.time() + 1})  # about to lapse
            assert await chat.beat() is True
            for key, member in zip(keys, (a, b), strict=True):
                expires = await redis.zscore(key, member)
                assert expires is not None
                assert expires > time.time() + PRESENCE_TTL_S - 5
        for key, member in zip(keys, (a, b), strict=True):
            assert await redis.zscore(key, member) is None  # gone when the block ends
        assert await chat.beat() is True  # nothing held: nothing to do
    finally:
        await redis.aclose()
