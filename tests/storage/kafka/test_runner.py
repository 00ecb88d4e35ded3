"""Consumers: crash before commit, poison events, the DLQ and its replay."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
import ray
from aiokafka import AIOKafkaConsumer

from deployments.settings import Settings
from storage.db import Database
from storage.events import Event
from storage.kafka.topics import DLQ_TOPIC
from storage.outbox.rows import add_events
from tests.conftest import Consumers, Topics, applied, nova, wait_until, write_events

pytestmark = pytest.mark.stack


async def test_consumer_killed_before_committing_offsets_redelivery_is_absorbed(
    db: Database, topics: Topics, consumers: Consumers
) -> None:
    topic = await topics.create("test.crash", partitions=1)
    consumer = consumers.start("tests.support.consumers:CrashRecorder")
    # The crash comes after the PostgreSQL commit of the batch holding the marked event
    # and before its offsets are committed: that whole batch is delivered again.
    events = [Event(type="test.event", aggregate_id="k", payload={"n": n}) for n in range(20)]
    events.append(Event(type="test.event", aggregate_id="k", payload={"n": 20, "crash_once": True}))
    async with db.transaction() as conn:
        await add_events(conn, events, topic=topic)

    async def all_applied() -> list[Any] | None:
        rows = await applied(db, "test-crash")
        return rows if len(rows) >= len(events) else None

    rows = await wait_until(all_applied, timeout_s=120, message="redelivery after the crash")
    assert [row["n"] for row in rows] == list(range(21))

    # The mark is written just after the batch commits (`after_commit`), so the rows can
    # be seen a moment before it.
    async def crashed_once() -> bool:
        marks = await db.fetchval(
            "SELECT count(*) FROM test_crash_marks WHERE event_id = $1", events[-1].event_id
        )
        return bool(marks == 1)

    await wait_until(crashed_once, timeout_s=30, message="the consumer crashing once")

    async def redelivered() -> bool:
        # The restarted member receives the crashed batch again and the ledger skips it.
        try:
            status: dict[str, Any] = await asyncio.to_thread(
                ray.get, consumer.status.remote(), timeout=30
            )
        except (ray.exceptions.ActorUnavailableError, ray.exceptions.RayActorError):
            return False  # still restarting after the crash
        return int(status.get("duplicates", 0)) >= 1

    await wait_until(redelivered, timeout_s=120, message="the redelivery to be absorbed")
    rows = await applied(db, "test-crash")
    assert [row["n"] for row in rows] == list(range(21)), "nothing may be applied twice"


async def test_poison_event_goes_to_dlq_and_replay_applies_it_after_the_fix(
    db: Database, topics: Topics, consumers: Consumers, deployed: Settings
) -> None:
    topic = await topics.create("test.poison", partitions=1)
    consumers.start("tests.support.consumers:PoisonRecorder")
    poison, healthy = await write_events(db, topic, [("k", 1)], poison=True) + await write_events(
        db, topic, [("k", 2)]
    )

    async def dead_letter() -> Any:
        return await db.fetchrow(
            "SELECT id, topic, error, attempts, replayed_at FROM dead_letters "
            "WHERE consumer = 'test-poison' AND event_id = $1",
            poison.event_id,
        )

    letter = await wait_until(dead_letter, timeout_s=60, message="the dead letter")
    assert letter["topic"] == topic
    assert "no fix recorded" in letter["error"]
    assert letter["attempts"] == deployed.consumer_poison_attempts
    # The consumer moved on past the poison event.
    rows = await wait_until(
        lambda: applied(db, "test-poison"), timeout_s=30, message="the healthy event"
    )
    assert [r["event_id"] for r in rows] == [healthy.event_id]

    message = await wait_until(
        lambda: _dlq_message(deployed, letter["id"]), timeout_s=60, message="the message on dlq.all"
    )
    assert message["consumer"] == "test-poison"
    assert message["original_topic"] == topic
    assert message["event"]["event_id"] == str(poison.event_id)
    assert "no fix recorded" in message["error"]

    listing = await nova("dlq", "list", "--consumer", "test-poison", "--json")
    assert [d["id"] for d in json.loads(listing)] == [letter["id"]]

    async with db.transaction() as conn:
        await conn.execute("INSERT INTO test_fixes VALUES ($1)", poison.event_id)
    assert str(letter["id"]) in await nova("dlq", "replay", "--consumer", "test-poison")

    async def poison_applied() -> bool:
        return poison.event_id in {r["event_id"] for r in await applied(db, "test-poison")}

    await wait_until(poison_applied, timeout_s=60, message="the replayed event to be applied")
    rows = await applied(db, "test-poison")
    assert sorted(str(r["event_id"]) for r in rows) == sorted(
        [str(poison.event_id), str(healthy.event_id)]
    )
    assert (await dead_letter())["replayed_at"] is not None
    assert json.loads(await nova("dlq", "list", "--consumer", "test-poison", "--json")) == []


async def _dlq_message(settings: Settings, dead_letter_id: int) -> dict[str, Any] | None:
    reader = AIOKafkaConsumer(
        DLQ_TOPIC,
        bootstrap_servers=settings.kafka_bootstrap,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
    )
    await reader.start()
    try:
        for _ in range(6):
            batches = await reader.getmany(timeout_ms=500)
            for records in batches.values():
                for record in records:
                    payload = json.loads(record.value)["payload"]
                    if payload["dead_letter_id"] == dead_letter_id:
                        return dict(payload)
    finally:
        await reader.stop()
    return None
