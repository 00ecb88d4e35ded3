"""Offset commits in the background: one request at a time, the newest offsets winning.

The next fetch need not wait for the broker to record a commit. A commit lost in a crash or
refused by a rebalance only means a redelivery, which the consumer's ledger absorbs.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.errors import CommitFailedError, KafkaError

log = logging.getLogger(__name__)


class BackgroundCommits:
    """Commits one member's offsets behind its loop."""

    def __init__(self, name: str, *, timeout_s: float) -> None:
        self._name = name
        self._timeout_s = timeout_s
        self._pending: dict[TopicPartition, int] = {}
        self._task: asyncio.Task[None] | None = None
        self.failures = 0

    def schedule(self, kafka: AIOKafkaConsumer, offsets: dict[TopicPartition, int]) -> None:
        self._pending.update(offsets)
        if self._pending and (self._task is None or self._task.done()):
            self._task = asyncio.get_running_loop().create_task(
                self._commit_pending(kafka), name=f"{self._name}-commit"
            )

    def drop(self, tp: TopicPartition) -> None:
        """Forget a pending offset (a partition read again from its start)."""
        self._pending.pop(tp, None)

    async def finish(self) -> None:
        """On the way out, give the last offsets a bounded chance to be committed."""
        task, self._task = self._task, None
        if task is not None:
            try:
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(asyncio.shield(task), 5)
            finally:
                task.cancel()

    async def _commit_pending(self, kafka: AIOKafkaConsumer) -> None:
        while self._pending:
            offsets, self._pending = self._pending, {}
            await self._commit(kafka, offsets)  # logs and counts its own failures

    async def _commit(self, kafka: AIOKafkaConsumer, offsets: dict[TopicPartition, int]) -> None:
        try:
            await asyncio.wait_for(kafka.commit(offsets), self._timeout_s)
        except (CommitFailedError, KafkaError, TimeoutError) as exc:
            # The group rebalanced or the broker is away: these records come back and the
            # ledger absorbs them.
            self.failures += 1
            log.info(
                "consumer %s: commit failed (%s); records will be redelivered", self._name, exc
            )


async def committed_offset(
    kafka: AIOKafkaConsumer, tp: TopicPartition, *, timeout_s: float
) -> int | None:
    """Where a member's reading of `tp` resumes: the group's committed offset, or the
    log's start for a group with none (reads start at the earliest offset). None if the
    broker does not answer in time; the first record read then sets it."""
    try:
        offset = await asyncio.wait_for(kafka.committed(tp), timeout_s)
        if offset is None or offset < 0:
            starts = await asyncio.wait_for(kafka.beginning_offsets([tp]), timeout_s)
            offset = starts.get(tp)
    except (KafkaError, TimeoutError) as exc:
        log.info("where %s resumes is unknown (%s)", tp, exc)
        return None
    return None if offset is None or offset < 0 else int(offset)
