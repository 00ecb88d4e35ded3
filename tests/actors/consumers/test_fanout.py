"""The fan-out consumer through a Redis outage: posts acknowledged while Redis is down reach
their followers' timelines (in the shards and in Redis, which timelines are reloaded from)
once it is back, and the outage dead-letters nothing."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
import ray
import redis.asyncio as aioredis

from actors.consumers.fanout import FanoutConsumer
from actors.remote import NAMESPACE
from actors.timeline_shard import timeline_key
from deployments.settings import Settings
from deployments.stack import Stack
from deployments.workers import consumer_member_name
from storage.db import Database
from tests.conftest import wait_until
from tests.support.social import (
    CREATE_POST,
    FOLLOW,
    all_fanned_out,
    call,
    feed_ids,
    make_members,
)

pytestmark = pytest.mark.stack

WAIT_S = 60.0


async def _fanout_status() -> dict[str, Any]:
    path = f"{FanoutConsumer.__module__}:{FanoutConsumer.__name__}"
    handle = ray.get_actor(consumer_member_name(path, 0), namespace=NAMESPACE)
    status: dict[str, Any] = await asyncio.to_thread(ray.get, handle.status.remote(), timeout=30)
    return status


async def test_posts_acknowledged_while_redis_is_down_reach_the_timeline_afterwards(
    stack: Stack, http_url: str, db: Database, deployed: Settings, redis: aioredis.Redis
) -> None:
    author, follower = await make_members(db, deployed, 2, prefix="outage")
    (await call(http_url, follower, FOLLOW, id=author.id)).ok()
    await feed_ids(http_url, follower)  # the follower's timeline is active, and in Redis
    await wait_until(
        lambda: redis.exists(timeline_key(follower.uuid)),
        timeout_s=WAIT_S,
        message="the follower's timeline in Redis",
    )
    retries_before = (await _fanout_status()).get("retries", 0)

    acknowledged: list[str] = []
    stack.redis.stop()
    try:
        for n in range(5):
            reply = await call(http_url, author, CREATE_POST, text=f"during the outage {n}")
            if reply.status == 200 and not reply.errors:
                acknowledged.append(reply.data["createPost"]["id"])

        async def retrying() -> dict[str, Any] | None:
            status = await _fanout_status()
            error = str(status.get("last_error") or "")
            return status if status.get("retries", 0) >= retries_before + 3 and error else None

        # Fan-out meets the outage and keeps retrying (it dead-lettered after three tries).
        await wait_until(retrying, timeout_s=WAIT_S, message="fan-out retrying against Redis")
    finally:
        stack.redis.start()
    assert acknowledged, "no post was acknowledged while Redis was down"
    await all_fanned_out(http_url, db, redis, follower, acknowledged)
