"""Keyset pages: rows ordered by `(created_at, id)` and read after a decoded bound.

Stores take the bound decoded and the number of rows to read; cursors (their encoding,
page sizes, "is there a next page") are the gateway's business (`gateway.services.pages`).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime

Bound = tuple[datetime, uuid.UUID]
"""A `(created_at, id)` keyset bound: a page starts strictly after it in its order."""


@dataclass(frozen=True)
class Keyed:
    """One row of a keyset page: the id listed and the time it sorts by."""

    id: uuid.UUID
    created_at: datetime


def bound_args(bound: Bound | None) -> tuple[datetime | None, uuid.UUID | None]:
    """The bound as two query parameters, both NULL when there is none (the first page)."""
    return (bound[0], bound[1]) if bound is not None else (None, None)
