"""The relay: per-key order with several relays, relay crashes, operator replays."""

from __future__ import annotations

import asyncio
from collections import defaultdict
from typing import Any

import pytest
import ray

from deployments.settings import Settings
from deployments.workers import NAMESPACE, relay_name
from storage.db import Database
from storage.events import Event
from storage.outbox.rows import add_events
from tests.conftest import Consumers, Topics, applied, nova, wait_until, write_events

pytestmark = pytest.mark.stack


def relays(settings: Settings) -> list[Any]:
    return [ray.get_actor(relay_name(i), namespace=NAMESPACE) for i in range(settings.relay_count)]


def published_by(settings: Settings) -> list[int]:
    statuses = ray.get([relay.status.remote() for relay in relays(settings)], timeout=30)
    return [status.get("published", 0) for status in statuses]


async def test_per_key_order_holds_with_three_partitions_and_two_relays(
    db: Database, topics: Topics, consumers: Consumers, deployed: Settings
) -> None:
    assert deployed.relay_count >= 2
    topic = await topics.create("test.order", partitions=3)
    consumer = consumers.start("tests.support.consumers:OrderRecorder")
    before = published_by(deployed)
    epoch = await db.fetchval("SELECT epoch FROM broker_state")
    keys = [f"author-{i}" for i in range(12)]
    per_key = 40

    async def writer(key: str) -> None:
        await write_events(db, topic, [(key, n) for n in range(per_key)])

    await asyncio.gather(*(writer(key) for key in keys))
    rows = await wait_until(
        lambda: _all_applied(db, "test-order", len(keys) * per_key),
        timeout_s=120,
        message="every ordered event to be applied",
    )

    seen: dict[str, list[int]] = defaultdict(list)
    for row in rows:
        seen[row["key"]].append(row["n"])
    for key in keys:
        assert seen[key] == list(range(per_key)), f"{key} applied out of order: {seen[key]}"
    after = published_by(deployed)
    assert all(b > a for a, b in zip(before, after, strict=True)), (
        f"both relays should have published: before={before} after={after}"
    )
    status = ray.get(consumer.status.remote(), timeout=30)
    assert status["dead_lettered"] == 0
    # Concurrent batches into the same partitions must not look like broker data loss.
    await asyncio.sleep(3 * deployed.broker_check_interval_ms / 1000)
    await _assert_no_reset_since(db, epoch)


async def _assert_no_reset_since(db: Database, epoch: int) -> None:
    state = await db.fetchrow("SELECT epoch, reset_reason FROM broker_state")
    assert state["epoch"] == epoch, f"false broker reset: {state['reset_reason']}"


async def _all_applied(db: Database, consumer: str, expected: int) -> list[Any] | None:
    rows = await applied(db, consumer)
    return rows if len(rows) >= expected else None


async def test_relay_killed_mid_batch_loses_nothing_and_applies_once(
    db: Database, topics: Topics, consumers: Consumers, deployed: Settings
) -> None:
    topic = await topics.create("test.relay-kill", partitions=3)
    consumer = consumers.start("tests.support.consumers:RelayKillRecorder")
    total = 3000
    events = [
        Event(type="test.event", aggregate_id=f"k{i % 30}", payload={"n": i}) for i in range(total)
    ]
    for start in range(0, total, 300):
        async with db.transaction() as conn:
            await add_events(conn, events[start : start + 300], topic=topic)
    # Kill every relay while the backlog drains; Ray restarts them.
    for _ in range(3):
        for relay in relays(deployed):
            ray.kill(relay, no_restart=False)
        await asyncio.sleep(0.7)

    rows = await wait_until(
        lambda: _all_applied(db, "test-relay-kill", total),
        timeout_s=180,
        message="all events to be applied after relay kills",
    )
    ids = [row["event_id"] for row in rows]
    assert len(ids) == total
    assert set(ids) == {event.event_id for event in events}
    pending = await db.fetchval(
        "SELECT count(*) FROM outbox WHERE topic = $1 AND published_at IS NULL", topic
    )
    assert pending == 0
    status = ray.get(consumer.status.remote(), timeout=30)
    assert status["dead_lettered"] == 0


async def test_operator_replay_redelivers_and_the_ledger_absorbs_duplicates(
    db: Database, topics: Topics, consumers: Consumers
) -> None:
    topic = await topics.create("test.duplicates", partitions=3)
    consumer = consumers.start("tests.support.consumers:DuplicateRecorder")
    events = await write_events(db, topic, [(f"k{i}", i) for i in range(50)])
    await wait_until(
        lambda: _all_applied(db, "test-duplicates", 50), timeout_s=60, message="the first delivery"
    )

    assert "re-driving" in await nova("outbox", "replay", "--since", "10m")

    async def duplicates_absorbed() -> bool:
        status: dict[str, Any] = await asyncio.to_thread(
            ray.get, consumer.status.remote(), timeout=30
        )
        return int(status["duplicates"]) >= len(events)

    await wait_until(duplicates_absorbed, timeout_s=60, message="the replay to be redelivered")
    rows = await applied(db, "test-duplicates")
    assert sorted(r["event_id"] for r in rows) == sorted(e.event_id for e in events)


async def test_multi_record_batches_are_not_mistaken_for_broker_loss(
    db: Database, topics: Topics, consumers: Consumers, deployed: Settings
) -> None:
    """The embedded broker reports end offsets per batch; that alone is no data loss."""
    topic = await topics.create("test.batches", partitions=1)
    consumers.start("tests.support.consumers:BatchRecorder")
    epoch = await db.fetchval("SELECT epoch FROM broker_state")
    for round_ in range(3):
        events = [
            Event(type="test.event", aggregate_id="k", payload={"n": round_ * 200 + n})
            for n in range(200)
        ]
        async with db.transaction() as conn:
            await add_events(conn, events, topic=topic)
    await wait_until(
        lambda: _all_applied(db, "test-batches", 600), timeout_s=60, message="all batches"
    )
    # Give the relays' periodic end-offset check time to run against these batches.
    await asyncio.sleep(3 * deployed.broker_check_interval_ms / 1000)
    await _assert_no_reset_since(db, epoch)
    rows = await applied(db, "test-batches")
    assert [r["n"] for r in rows] == list(range(600))
