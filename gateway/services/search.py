"""Search: people by trigram similarity, posts by full-text rank; relevance, then recency.

People: an exact username match comes first, then the closest usernames or display names
(`pg_trgm`, GIN-indexed), then a username prefix. Posts: `websearch_to_tsquery` over the
post's tags (weight A) and text (weight B), English stemming, ranked by `ts_rank_cd`.
Deleted posts and anyone blocked either way never appear.
"""

from __future__ import annotations

import base64
import uuid
from dataclasses import dataclass
from datetime import datetime

from gateway.services.profiles import page_size
from storage.db import Database
from storage.errors import InvalidInput

MAX_QUERY = 200


@dataclass(frozen=True)
class Hit:
    cursor: str
    id: uuid.UUID


def _clean(query: str) -> str:
    query = query.strip()
    if not query:
        raise InvalidInput("query must not be empty")
    if len(query) > MAX_QUERY:
        raise InvalidInput(f"query must be at most {MAX_QUERY} characters")
    return query


def _escape_like(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def encode_rank_cursor(rank: float, created_at: datetime, post_id: uuid.UUID) -> str:
    raw = f"{rank!r}|{created_at.isoformat()}|{post_id}".encode()
    return base64.urlsafe_b64encode(raw).decode()


def decode_rank_cursor(cursor: str) -> tuple[float, datetime, uuid.UUID]:
    try:
        rank, created, post = base64.urlsafe_b64decode(cursor.encode()).decode().split("|")
        return float(rank), datetime.fromisoformat(created), uuid.UUID(post)
    except (ValueError, UnicodeDecodeError) as exc:
        raise InvalidInput("after is not a valid cursor") from exc


class Search:
    def __init__(self, db: Database) -> None:
        self._db = db

    async def users(
        self, query: str, first: int | None, viewer: uuid.UUID | None
    ) -> list[uuid.UUID]:
        query = _clean(query).lstrip("@").lower()
        limit = page_size(first)
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
        self, query: str, first: int | None, after: str | None, viewer: uuid.UUID | None
    ) -> tuple[list[Hit], bool]:
        query = _clean(query)
        limit = page_size(first)
        since = decode_rank_cursor(after) if after else None
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
                since[0] if since else None,
                since[1] if since else None,
                since[2] if since else None,
                limit + 1,
                viewer,
            )
        hits = [
            Hit(encode_rank_cursor(row["rank"], row["created_at"], row["id"]), row["id"])
            for row in rows[:limit]
        ]
        return hits, len(rows) > limit
