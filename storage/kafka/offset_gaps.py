"""Per-partition offset continuity for consumers: a gap is read again before it is believed.

Why: the embedded broker (tansu 0.6) can answer a fetch with a record batch appended by
one producer while an earlier batch, appended at the same time by another producer, is
not visible yet. The consumer's position then moves past the earlier batch and it never
sees those records, although the broker acknowledged them and serves them to a later
read. Measured: 4 producers on one partition, a reader fetching every 5 ms, 2 gaps of 3
records in about 17,000; `bench.outbox` lost one event of 10,000 that way with a 20 ms
fetch wait.

Nova's topics have contiguous offsets (no transactional producer, no compaction), so a
record whose offset is past the one expected means records not yet visible: the consumer
seeks back to the expected offset and fetches again. If the same gap is still there after
`rereads` fetches, it is taken as real (a compacted topic or transaction markers on
Apache Kafka) and the consumer goes on, counting it.

`Continuity` adds the other reason to read a partition again: a record from a newer
broker epoch (the broker lost its log and the relay re-drove it; `storage.outbox.relay`)
means the partition is read from its start.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Generic, TypeVar

from aiokafka import ConsumerRecord, TopicPartition

from storage.events import HEADER_EPOCH, header

log = logging.getLogger(__name__)

Partition = TypeVar("Partition")


@dataclass
class OffsetGaps(Generic[Partition]):
    """The next offset expected per partition, and how often each open gap was re-read."""

    rereads: int
    reread_count: int = 0
    accepted_count: int = 0
    _next: dict[Partition, int] = field(default_factory=dict)
    _tries: dict[Partition, tuple[int, int]] = field(default_factory=dict)

    def knows(self, partition: Partition) -> bool:
        return partition in self._next

    def expect(self, partition: Partition, offset: int | None) -> None:
        """Start tracking: `offset` is where reading resumes (the committed offset), or
        None when unknown (a new group), in which case the first record sets it."""
        self._tries.pop(partition, None)
        if offset is None:
            self._next.pop(partition, None)
        else:
            self._next[partition] = offset

    def forget(self, partitions: Iterable[Partition]) -> None:
        """Stop tracking (revoked, reassigned or rewound partitions)."""
        for partition in partitions:
            self._next.pop(partition, None)
            self._tries.pop(partition, None)

    def expected(self, partition: Partition) -> int | None:
        return self._next.get(partition)

    def admit(self, partition: Partition, offset: int) -> bool:
        """True to process the record at `offset`; False to read again from `expected`.

        A record at or before the expected offset is a normal read or a re-read (the
        ledger absorbs repeats); one past it is a gap, refused until it has been re-read
        `rereads` times.
        """
        expected = self._next.get(partition)
        if expected is not None and offset > expected:
            gap_at, tries = self._tries.get(partition, (expected, 0))
            if gap_at != expected:
                tries = 0
            if tries < self.rereads:
                self._tries[partition] = (expected, tries + 1)
                self.reread_count += 1
                return False
            self.accepted_count += 1
            log.warning(
                "offsets %d to %d of %s still missing after %d re-reads; taken as a real gap",
                expected,
                offset - 1,
                partition,
                tries,
            )
        self._tries.pop(partition, None)
        self._next[partition] = offset + 1
        return True


@dataclass(frozen=True)
class Reread:
    """Offsets jumped: seek back to `offset` and fetch again."""

    offset: int
    skipped_to: int


@dataclass(frozen=True)
class Rewind:
    """The broker epoch advanced at `offset`: read the partition from its start."""

    offset: int


class Continuity:
    """Decides which records of a fetch a consumer may apply, per partition: none past an
    unexplained gap, none from a newer broker epoch than the partition was read in."""

    def __init__(self, rereads: int) -> None:
        self.gaps: OffsetGaps[TopicPartition] = OffsetGaps(rereads)
        # The broker epoch last seen per partition.
        self._epochs: dict[TopicPartition, int] = {}

    def screen(
        self, tp: TopicPartition, records: Sequence[ConsumerRecord]
    ) -> tuple[list[ConsumerRecord], Reread | Rewind | None]:
        """The leading records to apply, and what to do about the rest, if anything."""
        accepted: list[ConsumerRecord] = []
        for record in records:
            if not self.gaps.admit(tp, record.offset):
                expected = self.gaps.expected(tp)
                assert expected is not None
                return accepted, Reread(expected, record.offset)
            if self._epoch_advanced(tp, record):
                self.gaps.forget([tp])
                return accepted, Rewind(record.offset)
            accepted.append(record)
        return accepted, None

    def _epoch_advanced(self, tp: TopicPartition, record: ConsumerRecord) -> bool:
        raw = header(record.headers, HEADER_EPOCH)
        epoch = int(raw) if raw and raw.isdigit() else 0
        known = self._epochs.get(tp)
        if known is None or epoch > known:
            self._epochs[tp] = epoch
        return known is not None and epoch > known and record.offset > 0


__all__ = ["Continuity", "OffsetGaps", "Reread", "Rewind"]
