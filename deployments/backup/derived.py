"""Derived state after a restore: Redis emptied of Nova's keys, then the online ranking
features recomputed from the restored tables.

Nothing else needs building ahead of use. Home timelines are rebuilt from PostgreSQL by
their shard when a user first reads one and Redis has none; counts are the counter rows,
read by their shard on first use; chat rooms are read from PostgreSQL by their shard;
search is PostgreSQL's (a `tsvector` column and trigram indexes, restored with the tables);
caches fill on a miss.

Two kinds of key stay: the persisted-query registry (`nova queries add`) and the APQ
cache. Both hold a document under its own SHA-256, which is right in any database, and
the registry is configuration, not data a backup carries.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import redis.asyncio as aioredis

from ranking.feature_rebuild import rebuild as rebuild_features
from ranking.settings import RankingSettings
from storage.db import Database

NOVA_KEYS = "nova:*"
KEPT = (b"nova:persisted-queries:", b"nova:apq:")
BATCH = 500


async def clear_redis(redis: aioredis.Redis) -> int:
    """Delete Nova's keys but the kept ones; how many were deleted."""
    deleted = 0
    batch: list[bytes] = []
    async for key in redis.scan_iter(match=NOVA_KEYS, count=1_000):
        name = key if isinstance(key, bytes) else str(key).encode()
        if name.startswith(KEPT):
            continue
        batch.append(name)
        if len(batch) >= BATCH:
            deleted += await redis.unlink(*batch)
            batch.clear()
    if batch:
        deleted += await redis.unlink(*batch)
    return deleted


async def rebuild_derived(
    db: Database,
    redis: aioredis.Redis,
    settings: RankingSettings,
    progress: Callable[[str], None],
) -> dict[str, Any]:
    """Empty Nova's part of Redis, then write the features again; a report of both."""
    cleared = await clear_redis(redis)
    progress(f"redis: {cleared} keys deleted")
    report = await rebuild_features(db, redis, settings, progress=progress)
    return {"redis_keys_deleted": cleared, "features": report.__dict__}
