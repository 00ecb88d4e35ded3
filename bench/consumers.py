"""Consumers the benchmarks run in Ray actors (`deployments.workers.ConsumerActor`).

They are loaded by `"module:Class"` path, so this module must stay importable from the
repository root (Ray gives the actor the driver's `sys.path`).
"""

from __future__ import annotations

import asyncpg

from storage.events import Event
from storage.kafka.consumer import Consumer
from storage.settings import StorageSettings

BENCH_APPLIED_DDL = (
    "CREATE TABLE IF NOT EXISTS bench_applied (event_id uuid, applied_at timestamptz NOT NULL)"
)


class LatencyConsumer(Consumer[StorageSettings]):
    """Records when each event was applied. No primary key: a double apply shows as two rows."""

    name = "bench-outbox"
    topics = ("bench.outbox",)

    async def apply(self, event: Event, conn: asyncpg.Connection) -> None:
        await conn.execute(
            "INSERT INTO bench_applied (event_id, applied_at) VALUES ($1, clock_timestamp())",
            event.event_id,
        )
