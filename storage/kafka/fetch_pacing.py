"""How long a consumer's fetches may wait at the broker: short while records flow, long idle.

Why it changes at all: the embedded broker (tansu 0.6) does not answer a waiting fetch when
records arrive. Measured here with raw fetch requests: a fetch at an offset that has records
came back in 1-3 ms about half the time and after the whole wait otherwise; one past the end
took one to two waits. So on that broker the wait is the latency of every hop, even under
load, while each fetch costs it CPU per partition: a short wait for every idle consumer
group is what saturated a two-core box (20 ms for every group doubled Nova's outbox
latency in `bench.outbox`). Apache Kafka answers early; there the two waits are equal and
nothing changes (`kafka_fetch_busy_wait_ms` = 0, the default everywhere: on the embedded
stack a 20 ms busy wait cut outbox latency at 300 events/s by a quarter to a third, and
cost the likes shard path about 30% of its throughput, so it is an operator's choice).

A group turns busy on its first records and idle again once `idle_after_s` passes without
any, so a burst after a quiet spell pays the idle wait once.

The same broker also answers *nothing* when finding a fetch's offset takes longer than the
wait: it scans the partition's batches (20-45 ms at the end of 47,000 one-record batches
here), and it cannot delete records (DeleteRecords is unimplemented), so partitions only
grow. A member that stays at the same positions while records wait past them therefore
doubles its waits (`FetchPacer`, which asks the broker every `LAG_CHECK_S`), up to a
ceiling, rather than starve.
"""

from __future__ import annotations

import asyncio
import logging
import time

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.errors import KafkaError

from storage.errors import NovaError
from storage.kafka.clients import end_offsets

log = logging.getLogger(__name__)

IDLE_AFTER_S = 1.0
# How often an idle member may ask the broker whether records wait past its position.
LAG_CHECK_S = 5.0


class FetchWait:
    """Picks the fetch wait after each poll. Pure logic: `set_fetch_max_wait` applies it."""

    def __init__(
        self,
        idle_ms: int,
        busy_ms: int,
        *,
        ceiling_ms: int,
        idle_after_s: float = IDLE_AFTER_S,
    ) -> None:
        if not 0 < busy_ms <= idle_ms <= ceiling_ms:
            raise ValueError(
                f"fetch waits must satisfy 0 < busy ({busy_ms}) <= idle ({idle_ms}) "
                f"<= ceiling ({ceiling_ms}) ms"
            )
        self.idle_ms = idle_ms
        self.busy_ms = busy_ms
        self.ceiling_ms = ceiling_ms
        self._idle_after_s = idle_after_s
        self._last_records: float | None = None
        self.busy = False

    @property
    def current_ms(self) -> int:
        return self.busy_ms if self.busy else self.idle_ms

    def after_poll(self, got_records: bool, now: float) -> int | None:
        """Note a poll's outcome at `now` (monotonic s); return the new wait if it changes."""
        before = self.current_ms
        if got_records:
            self._last_records = now
            self.busy = True
        elif self._last_records is None or now - self._last_records >= self._idle_after_s:
            self.busy = False
        return self._changed(before)

    def raise_for_slow_broker(self) -> int | None:
        """The member got nothing while records waited: the broker needs longer than the
        current wait to find them, so no wait up to twice it is any use. Returns the new
        current wait, or None at the ceiling."""
        before = self.current_ms
        floor = min(self.ceiling_ms, 2 * before)
        self.busy_ms = max(self.busy_ms, floor)
        self.idle_ms = max(self.idle_ms, floor)
        changed = self._changed(before)
        if changed is not None:
            log.warning(
                "the broker returned no records within a %d ms fetch wait though records "
                "were waiting; fetch waits are now %d ms busy, %d ms idle",
                before,
                self.busy_ms,
                self.idle_ms,
            )
        return changed

    def _changed(self, before: int) -> int | None:
        return None if self.current_ms == before else self.current_ms


def set_fetch_max_wait(consumer: AIOKafkaConsumer, wait_ms: int) -> None:
    """Make a started consumer's next fetch requests wait at most `wait_ms`.

    aiokafka (0.14, pinned) has no public setter; its fetcher reads this attribute for every
    fetch request it builds. Checked here so that an upgrade that moves it fails loudly.
    """
    fetcher = getattr(consumer, "_fetcher", None)
    if fetcher is None or not isinstance(getattr(fetcher, "_fetch_max_wait_ms", None), int):
        raise RuntimeError("aiokafka's fetcher lacks _fetch_max_wait_ms: see set_fetch_max_wait")
    fetcher._fetch_max_wait_ms = wait_ms


class FetchPacer:
    """Applies `FetchWait` to one member's Kafka consumer after each of its polls.

    Empty polls while records wait are normal for a moment (they arrived during the fetch),
    so the wait is raised only when two lag checks, `LAG_CHECK_S` apart, find the member at
    the same positions with records past them.
    """

    def __init__(self, wait: FetchWait, *, request_timeout_s: float) -> None:
        self.wait = wait
        self.raises = 0
        self._timeout_s = request_timeout_s
        self._lag_checked = 0.0
        self._stuck_at: dict[TopicPartition, int] | None = None

    def start(self, kafka: AIOKafkaConsumer) -> None:
        """A newly connected consumer fetches with the current wait."""
        set_fetch_max_wait(kafka, self.wait.current_ms)

    async def after_poll(self, kafka: AIOKafkaConsumer, *, got_records: bool) -> None:
        now = time.monotonic()
        wait_ms = self.wait.after_poll(got_records, now)
        if got_records:
            self._stuck_at = None
        elif now - self._lag_checked >= LAG_CHECK_S and self.wait.current_ms < self.wait.ceiling_ms:
            self._lag_checked = now
            behind = await self.positions_behind_end(kafka)
            if behind and behind == self._stuck_at:
                wait_ms = self.wait.raise_for_slow_broker() or wait_ms
                self.raises += 1
            self._stuck_at = behind
        if wait_ms is not None:
            set_fetch_max_wait(kafka, wait_ms)

    async def positions_behind_end(
        self, kafka: AIOKafkaConsumer
    ) -> dict[TopicPartition, int] | None:
        """This member's position in each assigned partition that holds records past it."""
        found = await ends_and_positions(kafka, self._timeout_s)
        if found is None:
            return None  # the next poll meets the outage; nothing to conclude from here
        ends, positions = found
        return {tp: pos for tp, pos in positions.items() if pos < ends[tp]} or None


async def ends_and_positions(
    kafka: AIOKafkaConsumer | None, timeout_s: float
) -> tuple[dict[TopicPartition, int], dict[TopicPartition, int]] | None:
    """End offsets and a member's positions in its assigned partitions; None without an
    assignment or when the broker does not answer in time."""
    if kafka is None:
        return None
    assigned = sorted(kafka.assignment())
    if not assigned:
        return None
    try:
        ends = await end_offsets(kafka, assigned, timeout_s)
        positions = {tp: await asyncio.wait_for(kafka.position(tp), timeout_s) for tp in assigned}
    except (NovaError, KafkaError, OSError, TimeoutError):
        return None
    return ends, positions


__all__ = ["FetchPacer", "FetchWait", "ends_and_positions", "set_fetch_max_wait"]
