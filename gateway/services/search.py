"""Search: people by trigram similarity, posts by full-text rank; relevance, then recency.

People: an exact username match comes first, then the closest usernames or display names
(`pg_trgm`, GIN-indexed), then a username prefix. Posts: `websearch_to_tsquery` over the
post's tags (weight A) and text (weight B), English stemming, ranked by `ts_rank_cd`.
Deleted posts and anyone blocked either way never appear. The queries are in
`storage.repositories.search`; here are the inputs' checks and the cursors.
"""

from __future__ import annotations

import base64
import uuid
from dataclasses import dataclass
from datetime import datetime

from gateway.services.profiles import page_size
from storage.db import Database
from storage.errors import InvalidInput
from storage.repositories.search import SearchStore

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
        self._store = SearchStore(db)

    async def users(
        self, query: str, first: int | None, viewer: uuid.UUID | None
    ) -> list[uuid.UUID]:
        query = _clean(query).lstrip("@").lower()
        limit = page_size(first)
        return await self._store.people(query, limit, viewer)

    async def posts(
        self, query: str, first: int | None, after: str | None, viewer: uuid.UUID | None
    ) -> tuple[list[Hit], bool]:
        query = _clean(query)
        limit = page_size(first)
        since = decode_rank_cursor(after) if after else None
        rows = await self._store.posts(query, since, limit + 1, viewer)
        hits = [
            Hit(encode_rank_cursor(row.rank, row.created_at, row.id), row.id)
            for row in rows[:limit]
        ]
        return hits, len(rows) > limit
