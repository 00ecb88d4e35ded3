"""The embedded Redis has a memory limit and never evicts: rate limits, features and
timelines are not dropped to make room. A full Redis refuses writes; clients get coded
errors (never a 500), and fan-out waits until there is room again instead of losing posts."""

from __future__ import annotations

import uuid

import pytest
import redis.asyncio as aioredis
from redis import exceptions as redis_errors

from actors.timeline_shard import timeline_key
from deployments.settings import Settings
from storage.db import Database
from tests.conftest import wait_until
from tests.support.graphql import LOGIN, PASSWORD, Reply, post, register
from tests.support.social import (
    CREATE_POST,
    FOLLOW,
    LIKE,
    all_fanned_out,
    call,
    create_post,
    feed_ids,
    make_members,
)

pytestmark = pytest.mark.stack

WAIT_S = 60.0
FEED_CURSORS = "query { feed { edges { cursor } } }"
MIB = 1024 * 1024


async def _config(redis: aioredis.Redis, pattern: str) -> dict[str, str]:
    raw = await redis.config_get(pattern)
    return {
        (k.decode() if isinstance(k, bytes) else str(k)): (
            v.decode() if isinstance(v, bytes) else str(v)
        )
        for k, v in raw.items()
    }


async def test_redis_has_a_memory_limit_and_evicts_nothing(
    redis: aioredis.Redis, deployed: Settings
) -> None:
    config = await _config(redis, "maxmemory*")
    assert int(config["maxmemory"]) == deployed.redis_max_memory_mb * MIB, config
    assert config["maxmemory-policy"] == "noeviction", config


async def test_a_full_redis_gives_coded_errors_and_loses_no_post(
    http_url: str, db: Database, deployed: Settings, redis: aioredis.Redis
) -> None:
    account = await register(http_url)
    author, follower = await make_members(db, deployed, 2, prefix="full")
    (await call(http_url, follower, FOLLOW, id=author.id)).ok()
    await feed_ids(http_url, follower)  # the follower's timeline is active, and in Redis
    await wait_until(
        lambda: redis.exists(timeline_key(follower.uuid)),
        timeout_s=WAIT_S,
        message="the follower's timeline in Redis",
    )
    earlier = await create_post(http_url, author, "before Redis filled up")

    limit = (await _config(redis, "maxmemory"))["maxmemory"]
    replies: list[tuple[str, Reply]] = []
    acknowledged: list[str] = []
    await redis.config_set("maxmemory", 1)  # full: every write is refused
    try:
        with pytest.raises(redis_errors.OutOfMemoryError):
            await redis.set(f"nova:test:probe:{uuid.uuid4()}", "x")
        for n in range(3):
            reply = await call(http_url, author, CREATE_POST, text=f"while Redis is full {n}")
            replies.append(("createPost", reply))
            if reply.status == 200 and not reply.errors:
                acknowledged.append(reply.data["createPost"]["id"])
        replies.append(("likePost", await call(http_url, follower, LIKE, id=earlier["id"])))
        replies.append(
            ("feed", await call(http_url, follower, "query { feed { edges { cursor } } }"))
        )
        replies.append(
            (
                "login",
                await post(
                    http_url, LOGIN, {"input": {"login": account.username, "password": PASSWORD}}
                ),
            )
        )
    finally:
        await redis.config_set("maxmemory", limit)
    for operation, reply in replies:
        assert reply.status < 500, (operation, reply.status, reply.body)
        assert "INTERNAL_SERVER_ERROR" not in reply.codes, (operation, reply.body)
        assert None not in [(e.get("extensions") or {}).get("code") for e in reply.errors]
    assert acknowledged, [reply.body for _, reply in replies]
    await all_fanned_out(http_url, db, redis, follower, acknowledged)
