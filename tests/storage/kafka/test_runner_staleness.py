"""How stale a consumer's effects are, as operators see it: the records still waiting for a
member at the broker, and each applied event's age (its `occurred_at` to the commit)."""

from __future__ import annotations

import asyncio
import time

import pytest

from deployments.settings import Settings
from deployments.stack import Stack
from storage.db import Database
from storage.events import Event
from storage.kafka.runner import ConsumerRunner
from tests.conftest import Consumers, Topics, applied, wait_until, write_events
from tests.support.consumers import StalenessRecorder, joined, running
from tests.support.metrics import metric_reaches, metric_sum, samples, scrape

pytestmark = pytest.mark.stack

HELD_S = 1.5


async def test_a_member_reports_what_waits_for_it_and_how_old_its_events_were(
    db: Database, topics: Topics, deployed: Settings
) -> None:
    topic = await topics.create("test.staleness", partitions=2)
    runner = ConsumerRunner(StalenessRecorder(deployed), db, member="test-staleness-0")
    async with joined(runner) as kafka:
        assert await runner.records_behind() == 0
        kafka.pause(*kafka.assignment())  # the events arrive; this member reads none

        # One batch each: the embedded broker's end offset is its last batch's first
        # offset + 1, so a lag counted against it is exact only for one-record batches.
        events: list[Event] = []
        for n in range(4):
            [event] = await write_events(db, topic, [(f"k{n}", n)])
            events.append(event)
            await wait_until(
                lambda e=event: published(db, e), timeout_s=60, message="event published"
            )
        await wait_until(lambda: behind_is(runner, 4), timeout_s=60, message="4 records behind")
        await asyncio.sleep(HELD_S)

    async with running(runner):

        async def all_applied() -> bool:
            return len(await applied(db, StalenessRecorder.name)) == 4

        await wait_until(all_applied, timeout_s=60, message="the held events applied")
        applied_by = time.time()
        await wait_until(
            lambda: behind_is(runner, 0), timeout_s=30, message="nothing behind once applied"
        )
    ages = runner.take_ages()
    assert len(ages) == 4
    oldest = applied_by - min(event.occurred_at.timestamp() for event in events)
    # Held at the broker for HELD_S at least; none older than the first event written.
    assert all(HELD_S <= age <= oldest for age in ages), (ages, oldest)
    assert runner.take_ages() == []  # taken once


async def behind_is(runner: ConsumerRunner, records: int) -> bool:
    return await runner.records_behind() == records


async def published(db: Database, event: Event) -> bool:
    return bool(
        await db.fetchval(
            "SELECT published_at IS NOT NULL FROM outbox WHERE event_id = $1", event.event_id
        )
    )


async def test_consumer_actors_export_event_ages_and_records_behind_and_show_them(
    db: Database, topics: Topics, consumers: Consumers, stack: Stack
) -> None:
    topic = await topics.create("test.metrics")
    member = consumers.start("tests.support.consumers:MetricsRecorder")
    await write_events(db, topic, [("k", n) for n in range(3)])

    async def all_applied() -> bool:
        return len(await applied(db, "test-metrics")) == 3

    await wait_until(all_applied, timeout_s=60, message="the events applied")
    count = await metric_reaches(
        stack,
        "ray_nova_consumer_event_age_seconds_count",
        lambda v: v >= 3,
        consumer="test-metrics",
    )
    assert count == 3
    text = await scrape(stack)
    assert metric_sum(text, "ray_nova_consumer_event_age_seconds_sum", consumer="test-metrics") > 0

    async def records_behind() -> list[float]:  # present once the member has reported it
        return samples(
            await scrape(stack), "ray_nova_consumer_records_behind", consumer="test-metrics"
        )

    assert await wait_until(records_behind, timeout_s=60, interval_s=1, message="the gauge") == [0]
    status = await member.status.remote()  # what `nova status` shows
    assert status["records_behind"] == 0
    assert status["applied"] == 3
