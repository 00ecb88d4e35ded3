"""The transactional outbox: events are rows written in the caller's own transaction.

A change and the event describing it commit together or not at all; the relay
(`storage.outbox.relay`) publishes committed rows to Kafka afterwards. Usage::

    async with db.transaction() as conn:
        await conn.execute("INSERT INTO posts ...")
        await add_event(conn, Event("content.post.created", author_id, {"post_id": ...}))
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from datetime import datetime

import asyncpg

from storage.errors import InvalidInput, StorageError
from storage.events import Event
from storage.tracing import current_traceparent

NOTIFY_CHANNEL = "nova_outbox"
# Advisory lock class (first int of the two-int key space) for relay slots.
RELAY_LOCK_CLASS = 0x4E4F5641  # "NOVA"
SLOTS = 16  # must match the `& 15` in the outbox.slot column definition

# Before inserting, each writer takes a transaction-scoped advisory lock on its key. Two
# transactions that write events for the same key are thereby serialized, so outbox ids
# follow commit order per key and the relay, which publishes in id order, never reorders
# a key's events. (One-bigint advisory keys; the relay's slot locks use the two-int space.)
_INSERT = """
WITH key_lock AS (SELECT pg_advisory_xact_lock(hashtextextended($4, 0)))
INSERT INTO outbox (event_id, topic, type, aggregate_id, occurred_at, schema_version,
                    traceparent, payload, headers)
SELECT $1, $2, $3, $4, $5, $6, $7, $8, $9 FROM key_lock
RETURNING id
"""


# One statement: lock each key once, in sorted order (concurrent writers cannot deadlock),
# insert the rows in list order (`WITH ORDINALITY` + `ORDER BY`, so ids follow it), and
# notify the relay. No row is produced, hence none inserted, before the locks are held.
_INSERT_MANY = """
WITH key_locks AS (
    SELECT count(pg_advisory_xact_lock(hashtextextended(k, 0))) AS held
    FROM (SELECT DISTINCT k FROM unnest($4::text[]) AS k ORDER BY k) AS keys
), wake AS (
    SELECT pg_notify('nova_outbox', '') FROM key_locks
)
INSERT INTO outbox (event_id, topic, type, aggregate_id, occurred_at, schema_version,
                    traceparent, payload, headers)
SELECT e, t, ty, a, o, v, tp, p::jsonb, '{}'::jsonb
FROM unnest($1::uuid[], $2::text[], $3::text[], $4::text[], $5::timestamptz[], $6::int[],
            $7::text[], $8::text[]) WITH ORDINALITY AS x(e, t, ty, a, o, v, tp, p, n),
     key_locks, wake
ORDER BY n
RETURNING id
"""


async def add_event(
    conn: asyncpg.Connection,
    event: Event,
    *,
    topic: str | None = None,
    headers: Mapping[str, str] | None = None,
) -> int:
    """Add `event` to the outbox inside the caller's transaction; return its outbox id.

    `topic` defaults to the event type. The topic must be registered (see
    `storage.kafka.topics`); an unknown one raises `InvalidInput` and the transaction aborts.
    """
    if not conn.is_in_transaction():
        raise StorageError("add_event must run inside the transaction that makes the change")
    traceparent = event.traceparent or current_traceparent()
    try:
        outbox_id: int = await conn.fetchval(
            _INSERT,
            event.event_id,
            topic or event.type,
            event.type,
            event.aggregate_id,
            event.occurred_at,
            event.schema_version,
            traceparent,
            dict(event.payload),
            dict(headers or {}),
        )
    except asyncpg.ForeignKeyViolationError as exc:
        raise InvalidInput(
            f"topic {topic or event.type!r} is not registered in kafka_topics"
        ) from exc
    # NOTIFY is transactional (delivered at commit) and deduplicated within a transaction,
    # so a batch of events wakes the relay once.
    await conn.execute(f"NOTIFY {NOTIFY_CHANNEL}")
    return outbox_id


async def add_events(
    conn: asyncpg.Connection, events: Sequence[Event], *, topic: str | None = None
) -> list[int]:
    """Add several events with one statement whatever their number (group commit)."""
    if not events:
        return []
    if not conn.is_in_transaction():
        raise StorageError("add_events must run inside the transaction that makes the change")
    traceparent = current_traceparent()
    try:
        rows = await conn.fetch(
            _INSERT_MANY,
            [event.event_id for event in events],
            [topic or event.type for event in events],
            [event.type for event in events],
            [event.aggregate_id for event in events],
            [event.occurred_at for event in events],
            [event.schema_version for event in events],
            [event.traceparent or traceparent for event in events],
            [json.dumps(dict(event.payload)) for event in events],
        )
    except asyncpg.ForeignKeyViolationError as exc:
        raise InvalidInput(f"an event's topic is not registered in kafka_topics: {exc}") from exc
    return [row["id"] for row in rows]


async def redrive(
    conn: asyncpg.Connection, *, since: datetime | None, unapplied_within_s: int | None = None
) -> int:
    """Mark retained published events as unpublished so the relay sends them again.

    With `unapplied_within_s`, only the events that some consumer group seen within that
    many seconds (`storage.kafka.groups`) reads and has not recorded in its ledger: after
    a broker loss, what still has to reach someone, not the whole retention window (which
    every group would have to read through again, skipping, before its new events). With
    no group known, every retained event.

    Takes every relay slot lock first, so no relay is mid-batch and each key's events
    are re-sent in their original order. Consumers absorb the duplicates by event id.
    Must run inside a transaction.
    """
    if not conn.is_in_transaction():
        raise StorageError("redrive must run inside a transaction")
    for slot in range(SLOTS):
        await conn.execute("SELECT pg_advisory_xact_lock($1, $2)", RELAY_LOCK_CLASS, slot)
    if unapplied_within_s is None:
        result: str = await conn.execute(_REDRIVE_ALL, since)
    else:
        result = await conn.execute(_REDRIVE_UNAPPLIED, since, float(unapplied_within_s))
    return int(result.split()[-1])


_REDRIVE_ALL = """
    UPDATE outbox SET published_at = NULL, publish_epoch = NULL
    WHERE published_at IS NOT NULL AND ($1::timestamptz IS NULL OR created_at >= $1)
"""
_REDRIVE_UNAPPLIED = """
    WITH readers AS (
        SELECT name, unnest(topics) AS topic FROM consumer_groups
        WHERE seen_at > now() - make_interval(secs => $2)
    )
    UPDATE outbox o SET published_at = NULL, publish_epoch = NULL
    WHERE o.published_at IS NOT NULL AND ($1::timestamptz IS NULL OR o.created_at >= $1)
      AND (
        NOT EXISTS (SELECT 1 FROM readers)
        OR EXISTS (
            SELECT 1 FROM readers r
            WHERE r.topic = o.topic AND NOT EXISTS (
                SELECT 1 FROM processed_events p
                WHERE p.consumer = r.name AND p.event_id = o.event_id
            )
        )
      )
"""


async def purge_published(
    conn: asyncpg.Connection, *, retention_s: int, limit: int = 10_000
) -> int:
    """Delete published events older than the retention window, at most `limit` at a time."""
    result: str = await conn.execute(
        """
        DELETE FROM outbox WHERE id IN (
            SELECT id FROM outbox
            WHERE published_at IS NOT NULL
              AND created_at < now() - make_interval(secs => $1)
            ORDER BY id LIMIT $2
        )
        """,
        float(retention_s),
        limit,
    )
    return int(result.split()[-1])


async def purge_ledger(conn: asyncpg.Connection, *, retention_s: int, limit: int = 10_000) -> int:
    """Forget processed event ids older than twice the outbox retention.

    An event can only be redelivered while its outbox row is retained, so a ledger entry
    older than that window can never be needed again; the factor two is headroom.
    """
    result: str = await conn.execute(
        """
        DELETE FROM processed_events WHERE ctid IN (
            SELECT ctid FROM processed_events
            WHERE processed_at < now() - make_interval(secs => $1)
            LIMIT $2
        )
        """,
        float(2 * retention_s),
        limit,
    )
    return int(result.split()[-1])
