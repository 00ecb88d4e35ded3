"""Out-of-network candidates for the ranked feed: posts the viewer's followees liked
recently (a social signal) and posts trending over a window, never the viewer's own, never
by an author blocked either way, never deleted; and the block filter for candidates found
elsewhere. In-network candidates are the viewer's home timeline (`storage.repositories.timelines`).
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime

import asyncpg

from storage.db import Database
from storage.repositories.timelines import Entry
from storage.rows import from_rows

_VISIBLE = """
p.deleted_at IS NULL AND p.author_id <> $1
AND NOT EXISTS (SELECT 1 FROM blocks b
                WHERE (b.blocker_id = $1 AND b.blocked_id = p.author_id)
                   OR (b.blocker_id = p.author_id AND b.blocked_id = $1))
"""


async def liked_by_followees(
    conn: asyncpg.Connection, viewer: uuid.UUID, *, since: datetime, limit: int
) -> list[Entry]:
    """Posts liked since `since` by people the viewer follows, most recently liked first."""
    rows = await conn.fetch(
        f"""
        SELECT p.id AS post_id, p.author_id, p.created_at
        FROM (
            SELECT l.post_id, max(l.created_at) AS liked_at
            FROM follows f
            CROSS JOIN LATERAL (
                SELECT post_id, created_at FROM likes
                WHERE user_id = f.followee_id AND created_at >= $2
                ORDER BY created_at DESC LIMIT 20
            ) AS l
            WHERE f.follower_id = $1
            GROUP BY l.post_id
        ) AS liked
        JOIN posts p ON p.id = liked.post_id
        WHERE {_VISIBLE}
        ORDER BY liked.liked_at DESC
        LIMIT $3
        """,
        viewer,
        since,
        limit,
    )
    return from_rows(Entry, rows)


async def trending(conn: asyncpg.Connection, *, since: datetime, limit: int) -> list[Entry]:
    """The most engaged-with posts created since `since` (viewer filters come later)."""
    rows = await conn.fetch(
        """
        SELECT p.id AS post_id, p.author_id, p.created_at
        FROM posts p JOIN post_counters c ON c.post_id = p.id
        WHERE p.created_at >= $1 AND p.deleted_at IS NULL
          AND c.likes + 2 * c.comments + 3 * c.shares > 0
        ORDER BY c.likes + 2 * c.comments + 3 * c.shares DESC, p.created_at DESC
        LIMIT $2
        """,
        since,
        limit,
    )
    return from_rows(Entry, rows)


async def hidden_authors(
    conn: asyncpg.Connection, viewer: uuid.UUID, authors: Sequence[uuid.UUID]
) -> set[uuid.UUID]:
    """Those of `authors` blocked by the viewer or blocking the viewer."""
    rows = await conn.fetch(
        """
        SELECT blocked_id AS other FROM blocks WHERE blocker_id = $1 AND blocked_id = ANY($2)
        UNION
        SELECT blocker_id FROM blocks WHERE blocked_id = $1 AND blocker_id = ANY($2)
        """,
        viewer,
        list(authors),
    )
    return {row["other"] for row in rows}


class CandidateStore:
    """The same reads, each on a pooled connection of its own."""

    def __init__(self, db: Database) -> None:
        self._db = db

    async def liked_by_followees(
        self, viewer: uuid.UUID, *, since: datetime, limit: int
    ) -> list[Entry]:
        async with self._db.connection() as conn:
            return await liked_by_followees(conn, viewer, since=since, limit=limit)

    async def trending(self, *, since: datetime, limit: int) -> list[Entry]:
        async with self._db.connection() as conn:
            return await trending(conn, since=since, limit=limit)

    async def hidden_authors(
        self, viewer: uuid.UUID, authors: Sequence[uuid.UUID]
    ) -> set[uuid.UUID]:
        async with self._db.connection() as conn:
            return await hidden_authors(conn, viewer, authors)
