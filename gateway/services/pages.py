"""Keyset pages: `(created_at, id)` cursors, newest first, shared by every connection."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass

from gateway.services.profiles import encode_cursor
from storage.repositories.keysets import Keyed


@dataclass(frozen=True)
class Page:
    """Ids with their cursors, in order, and whether more follow."""

    items: list[tuple[str, uuid.UUID]]
    has_next_page: bool


def page_of(rows: Sequence[Keyed], limit: int) -> Page:
    """`limit + 1` rows fetched → a page of `limit` and whether there is a next one."""
    items = [(encode_cursor(row.created_at, row.id), row.id) for row in rows]
    return Page(items[:limit], len(rows) > limit)
