"""Keyset pages: `(created_at, id)` cursors, newest first, shared by every connection."""

from __future__ import annotations

import uuid
from dataclasses import dataclass

import asyncpg

from gateway.services.profiles import encode_cursor


@dataclass(frozen=True)
class Page:
    """Ids with their cursors, in order, and whether more follow."""

    items: list[tuple[str, uuid.UUID]]
    has_next_page: bool


def page_of(rows: list[asyncpg.Record], limit: int, id_column: str) -> Page:
    """`limit + 1` rows fetched → a page of `limit` and whether there is a next one."""
    items = [(encode_cursor(row["created_at"], row[id_column]), row[id_column]) for row in rows]
    return Page(items[:limit], len(rows) > limit)
