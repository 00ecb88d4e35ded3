"""CounterShard: group commit against the real PostgreSQL, and the real Ray actors under a
kill. Counts must always equal the rows they count."""

from __future__ import annotations

import asyncio
import uuid

import pytest
import ray

from actors.counter_client import CounterClient
from actors.counter_shard import CounterShard
from actors.directory import shard_name
from actors.remote import COUNTER, NAMESPACE
from deployments.settings import Settings
from storage.db import Database
from storage.errors import NotFound, Unavailable
from storage.repositories.counters import CounterRow
from tests.support.social import make_members

pytestmark = pytest.mark.stack


async def _post(db: Database, author: uuid.UUID) -> uuid.UUID:
    post_id = uuid.uuid4()
    async with db.transaction() as conn:
        await conn.execute(
            "INSERT INTO posts (id, author_id, text, search) VALUES ($1, $2, 'p', ''::tsvector)",
            post_id,
            author,
        )
    return post_id


async def _rows(db: Database, post_id: uuid.UUID) -> tuple[int, int]:
    async with db.connection() as conn:
        likes = await conn.fetchval("SELECT count(*) FROM likes WHERE post_id = $1", post_id)
        counter = await conn.fetchval(
            "SELECT coalesce((SELECT likes FROM post_counters WHERE post_id = $1), 0)", post_id
        )
    return likes, counter


async def test_concurrent_likes_are_group_committed_and_exact(
    db: Database, settings: Settings
) -> None:
    author, *fans = await make_members(db, settings, 121)
    post_id = await _post(db, author.uuid)
    shard = CounterShard(db, max_batch=50)
    results = await asyncio.gather(*(shard.like(post_id, fan.uuid, True) for fan in fans))
    assert all(result.changed for result in results)
    assert max(result.row.counts["likes"] for result in results) == 120
    # Fewer commits than likes, none above the batch limit.
    assert shard.stats.commits < 120
    assert 1 < shard.stats.largest_batch <= 50
    assert await _rows(db, post_id) == (120, 120)
    counts = await shard.counts("post", [post_id])
    assert counts[post_id].counts["likes"] == 120


async def test_ops_on_one_pair_apply_in_arrival_order_across_commits(
    db: Database, settings: Settings
) -> None:
    author, fan = await make_members(db, settings, 2)
    post_id = await _post(db, author.uuid)
    shard = CounterShard(db)
    results = await asyncio.gather(
        shard.like(post_id, fan.uuid, True),
        shard.like(post_id, fan.uuid, False),
        shard.like(post_id, fan.uuid, True),
        shard.like(post_id, fan.uuid, True),
    )
    assert [r.changed for r in results] == [True, True, True, False]
    assert await _rows(db, post_id) == (1, 1)


async def test_one_bad_like_does_not_fail_its_batch_mates(db: Database, settings: Settings) -> None:
    author, *fans = await make_members(db, settings, 6)
    post_id = await _post(db, author.uuid)
    shard = CounterShard(db)
    ghost = uuid.uuid4()  # no such user: its like violates a foreign key
    outcomes = await asyncio.gather(
        *(shard.like(post_id, user, True) for user in [f.uuid for f in fans] + [ghost]),
        return_exceptions=True,
    )
    assert [isinstance(o, Exception) for o in outcomes] == [False] * 5 + [True]
    assert await _rows(db, post_id) == (5, 5)


async def test_likes_on_missing_or_deleted_posts_are_not_found(
    db: Database, settings: Settings
) -> None:
    author, fan = await make_members(db, settings, 2)
    shard = CounterShard(db)
    with pytest.raises(NotFound):
        await shard.like(uuid.uuid4(), fan.uuid, True)
    post_id = await _post(db, author.uuid)
    async with db.transaction() as conn:
        await conn.execute("UPDATE posts SET deleted_at = now() WHERE id = $1", post_id)
    with pytest.raises(NotFound):
        await shard.like(post_id, fan.uuid, True)


async def test_observed_rows_apply_only_when_newer_and_refresh_catches_lost_ones(
    db: Database, settings: Settings
) -> None:
    (author,) = await make_members(db, settings, 1)
    post_id = await _post(db, author.uuid)
    now = [0.0]
    shard = CounterShard(db, refresh_s=10, clock=lambda: now[0])
    assert (await shard.counts("post", [post_id]))[post_id].version == 0
    newer = CounterRow("post", post_id, {"likes": 0, "comments": 2, "shares": 0}, 2)
    older = CounterRow("post", post_id, {"likes": 0, "comments": 1, "shares": 0}, 1)
    shard.observe([newer, older])
    assert (await shard.counts("post", [post_id]))[post_id].counts["comments"] == 2
    # A change whose notice never arrived: the refresh reads it back.
    async with db.transaction() as conn:
        await conn.execute(
            "INSERT INTO post_counters (post_id, comments, version) VALUES ($1, 7, 9)", post_id
        )
    now[0] = 11.0
    await shard.maintain()
    assert (await shard.counts("post", [post_id]))[post_id].counts["comments"] == 7


async def test_shard_killed_under_load_loses_no_acknowledged_like(
    deployed: Settings, db: Database
) -> None:
    author, *fans = await make_members(db, deployed, 301)
    post_id = await _post(db, author.uuid)
    client = CounterClient(deployed.counter_shards, retry_for_s=30)
    index = client.shard_of(post_id)
    acknowledged: list[uuid.UUID] = []
    midway = asyncio.Event()

    async def like(fan_id: uuid.UUID) -> None:
        await client.like(post_id, fan_id, True)
        acknowledged.append(fan_id)
        if len(acknowledged) == 60:
            midway.set()

    async def kill_midway() -> None:
        await asyncio.wait_for(midway.wait(), 60)
        ray.kill(ray.get_actor(shard_name(COUNTER, index), namespace=NAMESPACE), no_restart=False)

    outcomes = await asyncio.gather(
        kill_midway(), *(like(fan.uuid) for fan in fans), return_exceptions=True
    )
    failures = [o for o in outcomes if isinstance(o, BaseException)]
    assert all(isinstance(f, Unavailable) for f in failures), failures
    likes, counter = await _rows(db, post_id)
    async with db.connection() as conn:
        stored = {
            r["user_id"]
            for r in await conn.fetch("SELECT user_id FROM likes WHERE post_id = $1", post_id)
        }
    assert set(acknowledged) <= stored  # nothing acknowledged was lost
    assert likes == counter  # nothing counted twice
    # The restarted shard re-activates the post from PostgreSQL and agrees with the rows.
    shown = (await client.counts("post", [post_id]))[post_id].counts["likes"]
    assert shown == likes
    # Likes retried after the restart are idempotent.
    await asyncio.gather(*(client.like(post_id, fan.uuid, True) for fan in fans))
    assert await _rows(db, post_id) == (300, 300)
    assert (await client.counts("post", [post_id]))[post_id].counts["likes"] == 300
