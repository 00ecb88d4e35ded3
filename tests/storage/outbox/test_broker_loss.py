"""The embedded broker loses everything when it restarts; no event may be lost for that."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from deployments.stack import Stack
from storage.db import Database
from storage.outbox.rows import redrive
from tests.conftest import Consumers, Topics, applied, wait_until, write_events

pytestmark = pytest.mark.stack


async def _exactly_once(db: Database, consumer: str, expected: set[Any]) -> list[Any] | None:
    rows = await applied(db, consumer)
    return rows if {r["event_id"] for r in rows} >= expected else None


async def test_events_written_while_the_broker_is_stopped_are_all_applied_once(
    db: Database, stack: Stack, topics: Topics, consumers: Consumers
) -> None:
    topic = await topics.create("test.outage", partitions=3)
    consumers.start("tests.support.consumers:OutageRecorder")
    before = await write_events(db, topic, [(f"k{i % 10}", i) for i in range(20)])
    await wait_until(
        lambda: _exactly_once(db, "test-outage", {e.event_id for e in before}),
        timeout_s=120,  # includes the consumer group's first join, slow on a busy machine
        message="events before the outage",
    )

    stack.broker.stop()
    try:
        during = await write_events(db, topic, [(f"k{i % 10}", i) for i in range(20, 1020)])
    finally:
        stack.broker.start()
    expected = {e.event_id for e in before + during}
    rows = await wait_until(
        lambda: _exactly_once(db, "test-outage", expected),
        timeout_s=180,
        message="all 1,000 events written during the outage",
    )
    ids = [r["event_id"] for r in rows]
    assert len(ids) == len(set(ids)) == 1020


async def test_broker_restart_mid_stream_every_event_is_applied_once(
    db: Database, stack: Stack, topics: Topics, consumers: Consumers
) -> None:
    topic = await topics.create("test.broker-restart", partitions=3)
    consumers.start("tests.support.consumers:BrokerRestartRecorder")
    first = await write_events(db, topic, [("warm", 0)])
    await wait_until(
        lambda: _exactly_once(db, "test-broker-restart", {first[0].event_id}),
        timeout_s=60,
        message="the warm-up event",
    )

    async def writer(worker: int) -> list[Any]:
        written = []
        for n in range(150):
            written += await write_events(db, topic, [(f"k{worker}", n)])
            await asyncio.sleep(0.01)
        return written

    writing = asyncio.gather(*(writer(w) for w in range(4)))
    await asyncio.sleep(1.0)
    stack.broker.stop()  # the memory-only broker loses its topics, log and offsets
    stack.broker.start()
    written = [event for batch in await writing for event in batch]

    expected = {e.event_id for e in first + written}
    rows = await wait_until(
        lambda: _exactly_once(db, "test-broker-restart", expected),
        timeout_s=180,
        message="every event despite the broker restart",
    )
    ids = [r["event_id"] for r in rows]
    assert len(ids) == len(set(ids)) == len(expected)
    epoch = await db.fetchval("SELECT epoch FROM broker_state")
    assert epoch >= 1, "the relay should have noticed the broker lost its log"


async def _published(db: Database, event_ids: list[Any]) -> bool:
    unpublished: int = await db.fetchval(
        "SELECT count(*) FROM outbox WHERE event_id = ANY($1::uuid[]) AND published_at IS NULL",
        event_ids,
    )
    return unpublished == 0


async def test_after_a_broker_loss_only_what_a_live_group_has_not_applied_is_sent_again(
    db: Database, topics: Topics
) -> None:
    """Re-driving asks each consumer group seen lately (`consumer_groups`) what it has not
    applied of its topics (its ledger); events every such group applied stay published.
    Run in a transaction that is rolled back, so the stack's relays never see it."""
    topic = await topics.create("test.redrive-unapplied", partitions=1)
    since = await db.fetchval("SELECT now()")
    events = await write_events(db, topic, [("k", n) for n in range(6)])
    ids = [e.event_id for e in events]
    await wait_until(lambda: _published(db, ids), timeout_s=60, message="the events published")

    async with db.connection() as conn:
        transaction = conn.transaction()
        await transaction.start()
        try:
            await conn.execute(
                "INSERT INTO consumer_groups (name, topics, seen_at) VALUES"
                " ('test-redrive-live', $1, now()),"
                " ('test-redrive-gone', $1, now() - interval '2 hours')",
                [topic],
            )
            # The live group applied the first four; the one not seen for two hours none.
            await conn.execute(
                "INSERT INTO processed_events (consumer, event_id)"
                " SELECT 'test-redrive-live', unnest($1::uuid[])",
                ids[:4],
            )
            await redrive(conn, since=since, unapplied_within_s=3600)
            rows = await conn.fetch(
                "SELECT event_id FROM outbox WHERE event_id = ANY($1::uuid[])"
                " AND published_at IS NULL",
                ids,
            )
        finally:
            await transaction.rollback()
    assert {r["event_id"] for r in rows} == set(ids[4:])
