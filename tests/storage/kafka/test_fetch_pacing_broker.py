"""A consumer's fetch wait on the wire: short while records flow, long when idle, and
raised when the broker cannot find waiting records within it (`storage.kafka.fetch_pacing`)."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer
from aiokafka.protocol.fetch import FetchRequest

from deployments.settings import Settings
from storage.db import Database
from storage.kafka.fetch_pacing import LAG_CHECK_S
from storage.kafka.runner import ConsumerRunner
from tests.conftest import Topics, applied, wait_until, write_events
from tests.support.consumers import LagRecorder, PacingRecorder, joined, running

pytestmark = pytest.mark.stack

IDLE_MS = 300
BUSY_MS = 20


def spy_on_fetch_waits(kafka: AIOKafkaConsumer) -> list[int]:
    """Record the max wait of every fetch request this consumer sends from now on."""
    waits: list[int] = []
    client = kafka._client
    send = client.send

    async def recording_send(node_id: Any, request: Any, **kwargs: Any) -> Any:
        if isinstance(request, FetchRequest):
            waits.append(request._max_wait_ms)  # what `build` puts on the wire
        return await send(node_id, request, **kwargs)

    client.send = recording_send
    return waits


async def test_fetches_wait_briefly_while_records_flow_and_long_once_idle(
    db: Database, topics: Topics, deployed: Settings
) -> None:
    topic = await topics.create("test.pacing", partitions=1)
    settings = deployed.replace(kafka_fetch_max_wait_ms=IDLE_MS, kafka_fetch_busy_wait_ms=BUSY_MS)
    runner = ConsumerRunner(PacingRecorder(settings), db, member="test-pacing-0")
    async with running(runner):
        await wait_until(
            lambda: asyncio.sleep(0, runner._kafka is not None and runner._kafka.assignment()),
            timeout_s=60,
            message="the partition assigned",
        )
        assert runner._kafka is not None
        waits = spy_on_fetch_waits(runner._kafka)
        await wait_until(lambda: asyncio.sleep(0, waits), timeout_s=10, message="a fetch")
        assert set(waits) == {IDLE_MS}

        async def all_applied() -> bool:
            return len(await applied(db, "test-pacing")) >= 5

        for n in range(5):
            await write_events(db, topic, [("k", n)])
            await asyncio.sleep(0.05)
        await wait_until(all_applied, timeout_s=60, message="the events applied")
        for _ in range(100):
            if BUSY_MS in waits:
                break
            await asyncio.sleep(0.1)
        assert BUSY_MS in waits, f"no busy fetch: sent {waits}, status {runner.status()}"
        assert runner.status()["fetch_wait_ms"] in (BUSY_MS, IDLE_MS)

        # A quiet spell of more than a second: back to the idle wait.
        quiet_from = len(waits)
        await wait_until(
            lambda: asyncio.sleep(0, waits[quiet_from:][-3:] == [IDLE_MS] * 3),
            timeout_s=15,
            message="idle fetches again",
        )
        assert runner.status()["fetch_wait_ms"] == IDLE_MS
        assert runner.status()["fetch_wait_raises"] == 0


async def test_a_member_stuck_while_records_wait_raises_its_fetch_wait(
    db: Database, topics: Topics, deployed: Settings
) -> None:
    """What the broker's too-slow scans look like from the consumer: polls that stay empty
    while its partition holds records past the member's position, check after check."""
    topic = await topics.create("test.lag", partitions=1)
    settings = deployed.replace(kafka_fetch_max_wait_ms=IDLE_MS, kafka_fetch_busy_wait_ms=BUSY_MS)
    runner = ConsumerRunner(LagRecorder(settings), db, member="test-lag-0")
    async with joined(runner) as kafka:
        pacer = runner._pacer
        assert await pacer.positions_behind_end(kafka) is None
        kafka.pause(*kafka.assignment())  # records arrive but this member fetches none

        await write_events(db, topic, [("k", n) for n in range(3)])
        await wait_until(
            lambda: pacer.positions_behind_end(kafka),
            timeout_s=60,
            message="records past the position",
        )
        # Records that arrived during a poll: not yet a reason to wait longer.
        await pacer.after_poll(kafka, got_records=False)
        assert runner.status()["fetch_wait_raises"] == 0
        assert runner.status()["fetch_wait_ms"] == IDLE_MS
        # Still at the same positions at the next check: the broker is too slow.
        pacer._lag_checked -= LAG_CHECK_S
        await pacer.after_poll(kafka, got_records=False)
        assert runner.status()["fetch_wait_raises"] == 1
        assert runner.status()["fetch_wait_ms"] == 2 * IDLE_MS

        kafka.resume(*kafka.assignment())
        got = 0
        for _ in range(50):
            batches = await kafka.getmany(timeout_ms=1500)
            got += sum(len(records) for records in batches.values())
            if got >= 3:
                break
        assert got == 3
        pacer = runner._pacer
        assert await pacer.positions_behind_end(kafka) is None
