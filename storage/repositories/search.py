"""Search: people by trigram similarity, posts by full-text rank; relevance, then recency.

People: an exact username match comes first, then the closest usernames or display names
(`pg_trgm`, GIN-indexed), then a username prefix. Posts: `websearch_to_tsquery` over the
post's `search` document (`storage.repositories.posts.SEARCH_VECTOR`), ranked by
`ts_rank_cd`. Deleted posts and anyone blocked either way by the viewer never appear.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime

from storage.db import Database
from storage.rows import from_rows

RankBound = tuple[float, datetime, uuid.UUID]
"""A `(rank, created_at, id)` keyset bound: a page of hits starts strictly below it."""


@dataclass(frozen=True)
class PostHit:
    id: uuid.UUID
    created_at: datetime
    rank: float


def _escape_like(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


class SearchStore:
    def __init__(self, db: Database) -> None:
        self._db = db

    async def people(self, query: str, limit: int, viewer: uuid.UUID | None) -> list[uuid.UUID]:
        """Users matching `query` (lowercased by the caller), best first."""
        async with self._db.connection() as conn:
            rows = await conn.fetch(
                """
                SELECT id FROM (
                    SELECT id, created_at,
                           lower(username) = $1 AS exact,
                           greatest(similarity(lower(username), $1),
                                    similarity(lower(coalesce(display_name, '')), $1)) AS score,
                           lower(username) LIKE $2 AS prefix
                    FROM users
                    WHERE (lower(username) % $1 OR lower(display_name) % $1
                           OR lower(username) LIKE $2)
                      AND (suspended_until IS NULL OR suspended_until <= now())
                      AND NOT EXISTS (
                          SELECT 1 FROM blocks b
                          WHERE (b.blocker_id = users.id AND b.blocked_id = $4)
                             OR (b.blocker_id = $4 AND b.blocked_id = users.id))
                ) AS found
                ORDER BY exact DESC, score DESC, prefix DESC, created_at DESC, id
                LIMIT $3
                """,
                query,
                _escape_like(query) + "%",
                limit,
                viewer,
            )
        return [row["id"] for row in rows]

    async def posts(
        self, query: str, after: RankBound | None, limit: int, viewer: uuid.UUID | None
    ) -> list[PostHit]:
        """Live posts matching the web-search `query`, best rank first, below `after`."""
        async with self._db.connection() as conn:
            rows = await conn.fetch(
                """
                WITH q AS (SELECT websearch_to_tsquery('english', $1) AS query)
                SELECT id, created_at, rank FROM (
                    SELECT p.id, p.created_at, ts_rank_cd(p.search, q.query) AS rank
                    FROM posts p, q
                    WHERE p.deleted_at IS NULL AND p.search @@ q.query
                      AND NOT EXISTS (
                          SELECT 1 FROM blocks b
                          WHERE (b.blocker_id = p.author_id AND b.blocked_id = $6)
                             OR (b.blocker_id = $6 AND b.blocked_id = p.author_id))
                ) AS hits
                WHERE $2::real IS NULL OR (rank, created_at, id) < ($2::real, $3, $4::uuid)
                ORDER BY rank DESC, created_at DESC, id DESC
                LIMIT $5
                """,
                query,
                after[0] if after else None,
                after[1] if after else None,
                after[2] if after else None,
                limit,
                viewer,
            )
        return from_rows(PostHit, rows)
