"""Apply-once ledgers: which events a consumer has applied, in PostgreSQL and in Redis.

`record_new` and `record_one` write a consumer's event ids into `processed_events` inside
the transaction that applies them (`storage.kafka.runner`): an id already there is a
redelivery, and its event is skipped.

For effects that live in Redis rather than PostgreSQL, `RedisLedger.apply_many_once`
writes a batch's effects and their events' ledger keys in one MULTI/EXEC under WATCH:
either all land or none, and an event id already in the ledger is skipped. Three round
trips per batch, not per event, which is what lets a consumer keep up with a hot post's
likes. Use it inside `Consumer.apply_many`; the PostgreSQL ledger
around it then only speeds up duplicates.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Sequence

import asyncpg
import redis.asyncio as aioredis
from redis.asyncio.client import Pipeline

from storage.errors import classify


async def record_new(
    conn: asyncpg.Connection, consumer: str, event_ids: Sequence[uuid.UUID]
) -> set[uuid.UUID]:
    """Record `event_ids` as applied by `consumer`; return those not recorded before."""
    recorded = await conn.fetchval(
        """
        WITH recorded AS (
            INSERT INTO processed_events (consumer, event_id)
            SELECT $1, unnest($2::uuid[])
            ON CONFLICT DO NOTHING RETURNING event_id
        )
        SELECT coalesce(array_agg(event_id), '{}') FROM recorded
        """,
        consumer,
        list(event_ids),
    )
    return set(recorded)


async def record_one(conn: asyncpg.Connection, consumer: str, event_id: uuid.UUID) -> bool:
    """Record one event as applied by `consumer`; False if it was already."""
    fresh = await conn.fetchval(
        """
        INSERT INTO processed_events (consumer, event_id) VALUES ($1, $2)
        ON CONFLICT DO NOTHING RETURNING true
        """,
        consumer,
        event_id,
    )
    return bool(fresh)


class RedisLedger:
    def __init__(self, client: aioredis.Redis, *, ttl_s: int) -> None:
        # Keep ledger keys at least as long as events can be redelivered (outbox retention).
        self._client = client
        self._ttl_s = ttl_s

    def key(self, consumer: str, event_id: uuid.UUID) -> str:
        return f"nova:ledger:{consumer}:{event_id}"

    async def apply_many_once(
        self,
        consumer: str,
        batch: Sequence[tuple[uuid.UUID, Callable[[Pipeline], None]]],
    ) -> set[uuid.UUID]:
        """Queue each event's `effects` with its ledger key, in order, in one MULTI/EXEC;
        returns the ids applied (those already in the ledger are skipped).

        Every ledger key of the batch is watched: if another instance records one of them
        meanwhile, the transaction is retried and that event skipped. The same id twice in
        a batch is applied once. Split very large batches: WATCH and EXEC grow with it.
        """
        if not batch:
            return set()
        keys = list(dict.fromkeys(self.key(consumer, event_id) for event_id, _ in batch))

        async def transaction(pipe: Pipeline) -> set[uuid.UUID]:
            recorded = await pipe.mget(keys)
            done = {key for key, value in zip(keys, recorded, strict=True) if value is not None}
            applied: set[uuid.UUID] = set()
            pipe.multi()  # type: ignore[no-untyped-call]
            for event_id, effects in batch:
                key = self.key(consumer, event_id)
                if key in done:
                    continue
                done.add(key)
                effects(pipe)
                pipe.set(key, b"1", ex=self._ttl_s)
                applied.add(event_id)
            return applied

        try:
            applied: set[uuid.UUID] = await self._client.transaction(
                transaction, *keys, value_from_callable=True
            )
        except Exception as exc:
            raise classify(exc, "redis") from exc
        return applied
