"""What the online ranking features are derived from, read for `nova features rebuild`
(`ranking.feature_rebuild`): follows, recent posts, their engagement decayed to a moment,
authors' totals, and viewers' decayed affinity to authors.

Everything is read in one read-only, repeatable-read transaction (`FeatureSourceStore.snapshot`),
so the rebuild sees one consistent state however long it takes; large results stream
through server-side cursors.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

import asyncpg

from storage.db import Database
from storage.rows import from_row, from_rows

_FOLLOWS = "SELECT follower_id::text AS follower_id, followee_id::text AS followee_id FROM follows"
_POSTS = """
SELECT id::text AS post_id, author_id, extract(epoch FROM created_at)::float8 AS created,
       length(text) AS length
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
)
SELECT e.post_id::text AS post_id, e.counter,
       sum(power(2.0, -greatest(0, $1 - extract(epoch FROM e.created_at)) / $2))::float8
           AS value
FROM engagement e JOIN recent r ON r.id = e.post_id
GROUP BY e.post_id, e.counter
"""
# Clicks on recent posts by anyone but the author, by post and person in time order: the
# consumer counts each person once per window, which the rebuild replays (`Click`).
_CLICKS = """
SELECT a.post_id::text AS post_id, a.user_id::text AS person,
       extract(epoch FROM a.occurred_at)::float8 AS at
FROM analytics_events a JOIN posts p ON p.id = a.post_id
WHERE a.kind = 'CLICK' AND p.deleted_at IS NULL AND p.created_at >= to_timestamp($1)
  AND a.user_id <> p.author_id
ORDER BY a.post_id, a.user_id, a.occurred_at
"""
_AUTHORS = """
SELECT p.author_id::text AS author_id,
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
SELECT viewer::text AS viewer, author_id::text AS author_id,
       sum(weight * power(2.0, -greatest(0, $1 - extract(epoch FROM created_at)) / $2))::float8
           AS value
FROM acts
WHERE viewer <> author_id AND created_at >= to_timestamp($3)
GROUP BY viewer, author_id
"""


@dataclass(frozen=True)
class Follow:
    follower_id: str
    followee_id: str


@dataclass(frozen=True)
class RecentPost:
    post_id: str
    author_id: uuid.UUID
    created: float  # epoch seconds
    length: int  # of the text, in characters


@dataclass(frozen=True)
class DecayedCounter:
    post_id: str
    counter: str  # likes | comments | shares
    value: float


@dataclass(frozen=True)
class Click:
    post_id: str
    person: str
    at: float  # epoch seconds


@dataclass(frozen=True)
class AuthorTotals:
    author_id: str
    posts: int  # not deleted
    engagements: int  # likes, comments and shares their posts received


@dataclass(frozen=True)
class Affinity:
    viewer: str
    author_id: str
    value: float  # likes (1) and comments (2), decayed


class FeatureSnapshot:
    """Reads of one consistent snapshot; valid inside `FeatureSourceStore.snapshot()`."""

    def __init__(self, conn: asyncpg.Connection) -> None:
        self._conn = conn

    async def follows(self, *, prefetch: int) -> AsyncIterator[Follow]:
        async for row in self._conn.cursor(_FOLLOWS, prefetch=prefetch):
            yield from_row(Follow, row)

    async def recent_posts(self, since: float) -> AsyncIterator[RecentPost]:
        """Posts not deleted, created at or after `since` (epoch s)."""
        async for row in self._conn.cursor(_POSTS, since):
            yield from_row(RecentPost, row)

    async def decayed_counters(
        self, now: float, half_life_s: float, since: float
    ) -> list[DecayedCounter]:
        """Each recent post's likes, comments and shares, every one weighted by
        `2^-(age / half_life_s)` at `now` (epoch s)."""
        rows = await self._conn.fetch(_COUNTERS, now, half_life_s, since)
        return from_rows(DecayedCounter, rows)

    async def clicks(self, since: float, *, prefetch: int) -> AsyncIterator[Click]:
        """Clicks on posts created at or after `since`, not by their author, ordered by
        post, person and time."""
        async for row in self._conn.cursor(_CLICKS, since, prefetch=prefetch):
            yield from_row(Click, row)

    async def authors(self, *, prefetch: int) -> AsyncIterator[AuthorTotals]:
        async for row in self._conn.cursor(_AUTHORS, prefetch=prefetch):
            yield from_row(AuthorTotals, row)

    async def affinities(
        self, now: float, half_life_s: float, since: float, *, prefetch: int
    ) -> AsyncIterator[Affinity]:
        """Each viewer's likes and comments of an author's posts since `since`, decayed."""
        async for row in self._conn.cursor(_AFFINITY, now, half_life_s, since, prefetch=prefetch):
            yield from_row(Affinity, row)


class FeatureSourceStore:
    def __init__(self, db: Database) -> None:
        self._db = db

    @asynccontextmanager
    async def snapshot(self) -> AsyncIterator[FeatureSnapshot]:
        """One read-only, repeatable-read transaction: an operator's rebuild may take longer
        than a request, hence its own statement timeout."""
        async with (
            self._db.connection() as conn,
            conn.transaction(isolation="repeatable_read", readonly=True),
        ):
            await conn.execute("SET LOCAL statement_timeout = '30min'")
            yield FeatureSnapshot(conn)
