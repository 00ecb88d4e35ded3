"""Rebuild the online features in Redis from PostgreSQL: `nova features rebuild`.

Features are derived state. The `ranking-features` consumer keeps them current event by
event; this recomputes them from the tables, for a Redis that lost them, or after a change
of layout (the old `nova:f:p:*` and `nova:f:a:*` hashes are removed). What it writes:

* follows and followers sets, from `follows`;
* a record for each post created within `feature_post_ttl_s`: author, creation time, text
  length, and likes, comments, shares and clicks decayed to now, as the consumer would
  have left them;
* each author's posts and the engagements their posts received (plain counts);
* each viewer's affinity to authors, from likes and comments within
  `feature_affinity_ttl_s`, decayed to now.

Values are overwritten, not added to. Run it with the consumer caught up: an engagement
applied by the consumer between the query and the write is lost or counted twice, a small
error in a signal that decays anyway.
"""

from __future__ import annotations

import struct
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import redis.asyncio as aioredis

from ranking import features as f
from ranking.settings import RankingSettings
from storage.db import Database

CHUNK = 2_000
_OLD_LAYOUT = ("nova:f:p:*", "nova:f:a:*")

_FOLLOWS = "SELECT follower_id::text, followee_id::text FROM follows"
_POSTS = """
SELECT id::text, author_id, extract(epoch FROM created_at)::float8, length(text)
FROM posts WHERE deleted_at IS NULL AND created_at >= to_timestamp($1)
"""
# Per recent post: each counter decayed to $1 (epoch s) with half-life $2.
_COUNTERS = """
WITH recent AS (
    SELECT id FROM posts WHERE deleted_at IS NULL AND created_at >= to_timestamp($3)
), engagement AS (
    SELECT post_id, 'likes' AS counter, created_at FROM likes
    UNION ALL SELECT post_id, 'comments', created_at FROM comments WHERE deleted_at IS NULL
    UNION ALL SELECT shared_post_id, 'shares', created_at FROM posts
              WHERE shared_post_id IS NOT NULL AND deleted_at IS NULL
    UNION ALL SELECT post_id, 'clicks', occurred_at FROM analytics_events WHERE kind = 'CLICK'
)
SELECT e.post_id::text, e.counter,
       sum(power(2.0, -greatest(0, $1 - extract(epoch FROM e.created_at)) / $2))::float8
FROM engagement e JOIN recent r ON r.id = e.post_id
GROUP BY e.post_id, e.counter
"""
_AUTHORS = """
SELECT p.author_id::text,
       count(*) FILTER (WHERE p.deleted_at IS NULL) AS posts,
       (coalesce(sum(l.n), 0) + coalesce(sum(c.n), 0) + coalesce(sum(s.n), 0))::bigint
           AS engagements
FROM posts p
LEFT JOIN (SELECT post_id, count(*) AS n FROM likes GROUP BY post_id) l ON l.post_id = p.id
LEFT JOIN (SELECT post_id, count(*) AS n FROM comments WHERE deleted_at IS NULL
           GROUP BY post_id) c ON c.post_id = p.id
LEFT JOIN (SELECT shared_post_id, count(*) AS n FROM posts WHERE shared_post_id IS NOT NULL
           AND deleted_at IS NULL GROUP BY shared_post_id) s ON s.shared_post_id = p.id
GROUP BY p.author_id
"""
_AFFINITY = """
WITH acts AS (
    SELECT l.user_id AS viewer, p.author_id, l.created_at, 1.0 AS weight
    FROM likes l JOIN posts p ON p.id = l.post_id
    UNION ALL
    SELECT c.author_id, p.author_id, c.created_at, 2.0
    FROM comments c JOIN posts p ON p.id = c.post_id WHERE c.deleted_at IS NULL
)
SELECT viewer::text, author_id::text,
       sum(weight * power(2.0, -greatest(0, $1 - extract(epoch FROM created_at)) / $2))::float8
FROM acts
WHERE viewer <> author_id AND created_at >= to_timestamp($3)
GROUP BY viewer, author_id
"""


@dataclass
class RebuildReport:
    follows: int = 0
    posts: int = 0
    authors: int = 0
    affinities: int = 0
    old_keys_removed: int = 0
    seconds: float = 0.0
    counters: dict[str, int] = field(default_factory=dict)


async def rebuild(
    db: Database,
    redis: aioredis.Redis,
    settings: RankingSettings,
    *,
    now: float | None = None,
    progress: Callable[[str], None] = lambda _: None,
) -> RebuildReport:
    started = time.monotonic()
    moment = time.time() if now is None else now
    half_life = settings.feature_half_life_s
    report = RebuildReport()
    writer = _Writer(redis)

    async with (
        db.connection() as conn,
        conn.transaction(isolation="repeatable_read", readonly=True),
    ):
        # One consistent snapshot; an operator's rebuild may take longer than a request.
        await conn.execute("SET LOCAL statement_timeout = '30min'")
        async for follower, followee in conn.cursor(_FOLLOWS, prefetch=CHUNK):
            writer.pipe.sadd(f.FOLLOWS + follower, followee)
            writer.pipe.sadd(f.FOLLOWERS + followee, follower)
            report.follows += 1
            await writer.flush_if_full()
        progress(f"follows: {report.follows}")

        records: dict[str, bytearray] = {}
        since_post = moment - settings.feature_post_ttl_s
        async for post, author, created, length in conn.cursor(_POSTS, since_post):
            identity = f.post_identity(author, created, length)
            records[post] = bytearray(identity.ljust(f.RECORD_SIZE, b"\0"))
        for post, counter, value in await conn.fetch(_COUNTERS, moment, half_life, since_post):
            record = records.get(post)
            if record is not None:
                struct.pack_into("<dd", record, f.record_offset(counter), value, moment)
                report.counters[counter] = report.counters.get(counter, 0) + 1
        for post, record in records.items():
            writer.pipe.set(f.POST + post, bytes(record), ex=settings.feature_post_ttl_s)
            await writer.flush_if_full()
        report.posts = len(records)
        progress(f"posts: {report.posts}")

        async for author, posts, engagements in conn.cursor(_AUTHORS, prefetch=CHUNK):
            writer.pipe.set(f.AUTHOR_POSTS + author, posts)
            writer.pipe.set(f.AUTHOR_ENGAGEMENTS + author, engagements)
            report.authors += 1
            await writer.flush_if_full()
        progress(f"authors: {report.authors}")

        since_affinity = moment - settings.feature_affinity_ttl_s
        async for viewer, author, value in conn.cursor(
            _AFFINITY, moment, half_life, since_affinity, prefetch=CHUNK
        ):
            key = f.AFFINITY + viewer
            writer.pipe.hset(key, mapping={author: repr(value), f"{author}@": repr(moment)})
            writer.pipe.expire(key, settings.feature_affinity_ttl_s)
            report.affinities += 1
            await writer.flush_if_full()
        progress(f"affinities: {report.affinities}")
    await writer.flush()

    for pattern in _OLD_LAYOUT:
        async for key in redis.scan_iter(match=pattern, count=1_000):
            report.old_keys_removed += await redis.unlink(key)
    report.seconds = round(time.monotonic() - started, 2)
    return report


class _Writer:
    """One pipeline, sent every `CHUNK` commands."""

    def __init__(self, redis: aioredis.Redis) -> None:
        self.pipe = redis.pipeline(transaction=False)

    async def flush_if_full(self) -> None:
        if len(self.pipe) >= CHUNK:
            await self.flush()

    async def flush(self) -> None:
        if len(self.pipe):
            await self.pipe.execute()  # and the pipeline is empty again
