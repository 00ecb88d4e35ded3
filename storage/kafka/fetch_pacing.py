"""How long a consumer's fetches may wait at the broker: short while records flow, long idle.

Why it changes at all: the embedded broker (tansu 0.6) does not answer a waiting fetch when
records arrive. Measured here with raw fetch requests: a fetch at an offset that has records
came back in 1-3 ms about half the time and after the whole wait otherwise; one past the end
took one to two waits. So on that broker the wait is the latency of every hop, even under
load, while each fetch costs it CPU per partition: a short wait for every idle consumer
group is what saturated a two-core box (eleventh session: 20 ms for every group doubled
Nova's outbox latency). Apache Kafka answers early; there the two waits are equal and
nothing changes (`kafka_fetch_busy_wait_ms` = 0, the default everywhere: on the embedded
stack a 20 ms busy wait cut outbox latency at 300 events/s by a quarter to a third, and
cost the likes shard path about 30% of its throughput, so it is an operator's choice).

A group turns busy on its first records and idle again once `idle_after_s` passes without
any, so a burst after a quiet spell pays the idle wait once.

The same broker also answers *nothing* when finding a fetch's offset takes longer than the
wait: it scans the partition's batches (20-45 ms at the end of 47,000 one-record batches
here), and it cannot delete records (DeleteRecords is unimplemented), so partitions only
grow. A member that stays at the same positions while records wait past them therefore
doubles its waits (`raise_for_slow_broker`, decided by `storage.kafka.runner`), up to a
ceiling, rather than starve.
"""

from __future__ import annotations

import logging

from aiokafka import AIOKafkaConsumer

log = logging.getLogger(__name__)

IDLE_AFTER_S = 1.0


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


__all__ = ["FetchWait", "set_fetch_max_wait"]
