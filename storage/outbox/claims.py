"""The relay's side of the outbox table: claiming a batch under slot locks, the Kafka message
each row becomes, marking rows published, purging retained ones, and the lag.

Rows fall into 16 slots by a hash of their key (`storage.outbox.rows`). A relay claims the
oldest unpublished rows of every pending slot it can lock with `pg_try_advisory_xact_lock`
(a busy slot is skipped, like `SKIP LOCKED` at slot level), so a slot is published by one
relay at a time, in id order.
"""

from __future__ import annotations

from typing import Any

import asyncpg

from storage.db import Database
from storage.events import HEADER_EPOCH, HEADER_EVENT_ID, HEADER_TRACEPARENT, HEADER_TYPE, Event
from storage.outbox.rows import RELAY_LOCK_CLASS, purge_ledger, purge_published

_PURGE_LOCK = 0x4E4F5641_0002

# The pending slots this transaction could lock. A busy slot is skipped, never waited for,
# so relays cannot deadlock. DISTINCT sits in a subquery: the volatile lock call is not
# pushed below it, hence one call per pending slot.
_CLAIM_SLOTS = """
SELECT array_agg(slot) FROM (
    SELECT DISTINCT slot FROM outbox WHERE published_at IS NULL
) AS pending
WHERE pg_try_advisory_xact_lock($1, slot)
"""

_CLAIM_ROWS = """
SELECT id, event_id, topic, type, aggregate_id, occurred_at, schema_version, traceparent,
       payload, headers, (SELECT epoch FROM broker_state) AS epoch
FROM outbox WHERE slot = ANY($1::smallint[]) AND published_at IS NULL
ORDER BY id LIMIT $2 FOR UPDATE
"""


async def claim_batch(conn: asyncpg.Connection, batch_size: int) -> list[asyncpg.Record]:
    """In the caller's transaction: lock every pending slot no one else holds and read
    their oldest unpublished rows `FOR UPDATE` (each with the broker epoch); [] if none."""
    slots = await conn.fetchval(_CLAIM_SLOTS, RELAY_LOCK_CLASS)
    if not slots:
        return []
    # Read after the locks: the epoch only changes under every slot lock
    # (`storage.outbox.broker_loss.start_new_epoch`), so it holds for the whole batch.
    rows: list[asyncpg.Record] = await conn.fetch(_CLAIM_ROWS, slots, batch_size)
    return rows


async def mark_published(conn: asyncpg.Connection, ids: list[int], epoch: int) -> None:
    await conn.execute(
        "UPDATE outbox SET published_at = now(), publish_epoch = $2 WHERE id = ANY($1)",
        ids,
        epoch,
    )


def kafka_message(
    row: asyncpg.Record, epoch: int
) -> tuple[str, bytes, bytes, list[tuple[str, bytes]]]:
    """A claimed row as (topic, value, key, headers): the event envelope, keyed by its
    aggregate, with its id, type, the broker epoch and its trace context as headers."""
    event = Event(
        event_id=row["event_id"],
        type=row["type"],
        aggregate_id=row["aggregate_id"],
        occurred_at=row["occurred_at"],
        schema_version=row["schema_version"],
        traceparent=row["traceparent"],
        payload=row["payload"],
    )
    headers = [
        (HEADER_EVENT_ID, str(event.event_id).encode()),
        (HEADER_TYPE, event.type.encode()),
        (HEADER_EPOCH, str(epoch).encode()),
    ]
    if event.traceparent:
        headers.append((HEADER_TRACEPARENT, event.traceparent.encode()))
    headers.extend((k, str(v).encode()) for k, v in (row["headers"] or {}).items())
    return row["topic"], event.encode(), event.aggregate_id.encode(), headers


async def purge_retained(db: Database, *, retention_s: int) -> int:
    """Published events and ledger entries past retention, by one relay at a time."""
    async with db.transaction() as conn:
        if not await conn.fetchval("SELECT pg_try_advisory_xact_lock($1)", _PURGE_LOCK):
            return 0
        purged = await purge_published(conn, retention_s=retention_s)
        await purge_ledger(conn, retention_s=retention_s)
    return purged


async def outbox_lag(db: Database) -> dict[str, Any]:
    """Unpublished events and the age of the oldest, for `nova status` and metrics."""
    row = await db.fetchrow(
        "SELECT count(*) AS pending, EXTRACT(EPOCH FROM now() - min(created_at)) AS oldest_s "
        "FROM outbox WHERE published_at IS NULL"
    )
    return {"pending": row["pending"], "oldest_s": float(row["oldest_s"] or 0.0)}
