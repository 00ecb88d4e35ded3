"""Client analytics: events from `trackEvents` into the outbox, and what the ranking jobs read
back from `analytics_events` (written by the analytics sink, `actors.consumers.analytics_sink`).

An impression is *engaged* when the same user engaged with the same post at or after it: a
click, a dwell of at least the given milliseconds, a like or a comment. Training labels and
the per-version report count it the same way (`_ENGAGED`).
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from storage.db import Connection, Database
from storage.events import Event
from storage.outbox.rows import add_events
from storage.rows import from_rows

# The analytics_events columns the sink writes, in the order of its rows.
COLUMNS = (
    "event_id",
    "user_id",
    "post_id",
    "kind",
    "model_name",
    "model_version",
    "position",
    "dwell_ms",
    "features",
    "occurred_at",
)


async def copy_events(conn: Connection, rows: Sequence[tuple[Any, ...]]) -> None:
    """Write a batch of analytics rows by COPY in the caller's transaction (the sink's
    ledger transaction, so they land exactly once). Rows of accounts erased meanwhile are
    dropped: the erasure pseudonymized what was there, and must not be undone by the log."""
    user = COLUMNS.index("user_id")
    existing = set(
        await conn.fetchval(
            "SELECT array(SELECT id FROM users WHERE id = ANY($1::uuid[]))",
            list({row[user] for row in rows}),
        )
    )
    kept = [row for row in rows if row[user] in existing]
    if kept:
        await conn.copy_records_to_table("analytics_events", records=kept, columns=COLUMNS)


# Whether impression `i` was followed by an engagement of its user with its post.
# $2 is the dwell that counts as engaged.
_ENGAGED = """
EXISTS (
    SELECT 1 FROM analytics_events e
    WHERE e.user_id = i.user_id AND e.post_id = i.post_id AND e.occurred_at >= i.occurred_at
      AND (e.kind = 'CLICK' OR (e.kind = 'DWELL' AND e.dwell_ms >= $2))
)
OR EXISTS (SELECT 1 FROM likes l WHERE l.user_id = i.user_id AND l.post_id = i.post_id
           AND l.created_at >= i.occurred_at)
OR EXISTS (SELECT 1 FROM comments c WHERE c.author_id = i.user_id AND c.post_id = i.post_id
           AND c.created_at >= i.occurred_at)
"""

_LABELLED = f"""
SELECT i.user_id, i.features, ({_ENGAGED}) AS engaged
FROM analytics_events i
WHERE i.kind = 'IMPRESSION' AND i.features IS NOT NULL AND i.occurred_at >= $1
  AND cardinality(i.features) = $3
"""

_BY_VERSION = f"""
SELECT i.model_version AS version, count(*) AS impressions,
       count(*) FILTER (WHERE ({_ENGAGED})) AS engaged
FROM analytics_events i
WHERE i.kind = 'IMPRESSION' AND i.model_name = $1 AND i.occurred_at >= $3
GROUP BY i.model_version
"""


@dataclass(frozen=True)
class LabelledImpression:
    """One impression with the features served for it, and whether it was engaged."""

    user_id: uuid.UUID
    features: tuple[float, ...]
    engaged: bool


@dataclass(frozen=True)
class VersionCounts:
    """Impressions attributed to one version of a model (None: to no version)."""

    version: str | None
    impressions: int
    engaged: int


class AnalyticsStore:
    def __init__(self, db: Database) -> None:
        self._db = db

    async def record(self, events: Sequence[Event]) -> None:
        """Write client events to the outbox, all of them or none (one transaction), so an
        acknowledged `trackEvents` call is never lost."""
        async with self._db.transaction() as conn:
            await add_events(conn, events)

    async def labelled_impressions(
        self, since: datetime, *, engaged_dwell_ms: int, features: int
    ) -> list[LabelledImpression]:
        """Impressions since `since` that carry a vector of `features` values."""
        async with self._db.connection() as conn:
            rows = await conn.fetch(_LABELLED, since, engaged_dwell_ms, features)
        return from_rows(LabelledImpression, rows)

    async def counts_by_version(
        self, model_name: str, since: datetime, *, engaged_dwell_ms: int
    ) -> list[VersionCounts]:
        """Impressions and engaged impressions since `since`, per version of `model_name`."""
        async with self._db.connection() as conn:
            rows = await conn.fetch(_BY_VERSION, model_name, engaged_dwell_ms, since)
        return from_rows(VersionCounts, rows)
