"""A consumer whose fetch position jumps past records it never saw reads them again.

The embedded broker can show a fetch a batch appended after one still being appended by
another producer (`storage.kafka.offset_gaps`); the reader's position then passes the earlier
batch. That race can't be forced on demand, so this test moves a running consumer's
position past two published records, which is what the race does, and checks that the
consumer notices the jump, reads them, and applies every event once.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from aiokafka import TopicPartition

from deployments.settings import Settings
from storage.db import Database
from storage.kafka.runner import ConsumerRunner
from tests.conftest import Topics, applied, wait_until, write_events
from tests.support.consumers import GapRecorder, running

pytestmark = pytest.mark.stack


async def test_records_skipped_by_the_fetch_position_are_read_again_and_applied_once(
    db: Database, topics: Topics, deployed: Settings
) -> None:
    topic = await topics.create("test.gaps", partitions=1)
    tp = TopicPartition(topic, 0)
    runner = ConsumerRunner(GapRecorder(deployed), db, member="test-gaps-0")
    async with running(runner):

        async def count_applied(n: int) -> list[Any] | None:
            rows = await applied(db, "test-gaps")
            return rows if len(rows) >= n else None

        await write_events(db, topic, [("k", n) for n in range(3)])
        await wait_until(lambda: count_applied(3), timeout_s=60, message="the first events")

        kafka = runner._kafka
        assert kafka is not None
        position = await kafka.position(tp)
        kafka.seek(tp, position + 2)  # as the broker race does: 2 records never seen
        await write_events(db, topic, [("k", n) for n in range(3, 7)])

        await wait_until(
            lambda: count_applied(7), timeout_s=60, message="the skipped records read again"
        )
        await asyncio.sleep(0.5)  # a late double apply would show up now
        rows = await applied(db, "test-gaps")
        assert [row["n"] for row in rows] == list(range(7))
        assert runner.stats.gap_rereads >= 1
        assert runner.stats.gaps_accepted == 0
        assert runner.stats.duplicates == 0
