"""Consumers used by the tests: each records what it applies in `test_applied`.

They run in Ray actors like production consumers (`deployments.workers.ConsumerActor`),
so they must be importable by name; each owns one topic and one consumer group.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager

import asyncpg
from aiokafka import AIOKafkaConsumer

from deployments.settings import Settings
from storage.errors import PoisonEvent
from storage.events import Event
from storage.kafka.consumer import Consumer
from storage.kafka.runner import ConsumerRunner


class Recorder(Consumer[Settings]):
    name = "test-recorder"
    topics = ("test.recorder",)

    async def apply(self, event: Event, conn: asyncpg.Connection) -> None:
        await self.before_apply(event, conn)
        await conn.execute(
            "INSERT INTO test_applied (consumer, event_id, key, n) VALUES ($1, $2, $3, $4)",
            self.name,
            event.event_id,
            event.aggregate_id,
            event.payload.get("n"),
        )

    async def before_apply(self, event: Event, conn: asyncpg.Connection) -> None:
        """Hook for the failure-injecting recorders."""


def recorder(class_name: str, name: str, topic: str) -> type[Recorder]:
    """A recorder in a consumer group and on a topic of its own, importable by its path
    (`tests.support.consumers:<class_name>`) as a Ray actor loads it."""
    attributes = {"name": name, "topics": (topic,), "__module__": __name__}
    return type(class_name, (Recorder,), attributes)


DeliveryRecorder = recorder("DeliveryRecorder", "test-delivery", "test.delivery")
OrderRecorder = recorder("OrderRecorder", "test-order", "test.order")
OutageRecorder = recorder("OutageRecorder", "test-outage", "test.outage")
RelayKillRecorder = recorder("RelayKillRecorder", "test-relay-kill", "test.relay-kill")
DuplicateRecorder = recorder("DuplicateRecorder", "test-duplicates", "test.duplicates")


# The next four run in the test's own process (`running`), not in an actor.
GapRecorder = recorder("GapRecorder", "test-gaps", "test.gaps")
PacingRecorder = recorder("PacingRecorder", "test-pacing", "test.pacing")
LagRecorder = recorder("LagRecorder", "test-lag", "test.lag")
StalenessRecorder = recorder("StalenessRecorder", "test-staleness", "test.staleness")


@asynccontextmanager
async def joined(runner: ConsumerRunner) -> AsyncIterator[AIOKafkaConsumer]:
    """Connect `runner` and join its group while its topic is still empty; yield its Kafka
    consumer for the test to drive by hand, disconnected after the block."""
    await runner._connect()
    kafka = runner._kafka
    assert kafka is not None
    try:
        while not kafka.assignment():
            assert not await kafka.getmany(timeout_ms=200)
        yield kafka
    finally:
        await runner._disconnect()


@asynccontextmanager
async def running(runner: ConsumerRunner) -> AsyncIterator[None]:
    """Run a `ConsumerRunner` in this process for the block, cancelled after it."""
    task = asyncio.get_running_loop().create_task(runner.run())
    try:
        yield
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


BrokerRestartRecorder = recorder(
    "BrokerRestartRecorder", "test-broker-restart", "test.broker-restart"
)


class CrashRecorder(Recorder):
    """Kills its own process once, right after applying an event marked `crash_once`.

    That is after the PostgreSQL commit and before the Kafka offset commit, so the
    restarted member receives the whole batch again and the ledger must absorb it.
    """

    name = "test-crash"
    topics = ("test.crash",)

    async def after_commit(self, events: Sequence[Event]) -> None:
        marked = [e.event_id for e in events if e.payload.get("crash_once")]
        if not marked:
            return
        mark = await asyncpg.connect(self.settings.database_url)
        try:
            first_time = await mark.fetchval(
                "INSERT INTO test_crash_marks VALUES ($1) ON CONFLICT DO NOTHING RETURNING true",
                marked[0],
            )
        finally:
            await mark.close()
        if first_time:
            os._exit(1)


class PoisonRecorder(Recorder):
    """Refuses events marked `poison` until a fix for their id is recorded."""

    name = "test-poison"
    topics = ("test.poison",)

    async def before_apply(self, event: Event, conn: asyncpg.Connection) -> None:
        if event.payload.get("poison"):
            fixed = await conn.fetchval(
                "SELECT true FROM test_fixes WHERE event_id = $1", event.event_id
            )
            if not fixed:
                raise PoisonEvent(f"cannot apply {event.event_id}: no fix recorded")


MetricsRecorder = recorder("MetricsRecorder", "test-metrics", "test.metrics")
BatchRecorder = recorder("BatchRecorder", "test-batches", "test.batches")
