"""Drives one consumer group member: fetch, apply each event once, commit, repeat.

`ConsumerRunner` applies a `storage.kafka.consumer.Consumer`'s batches inside a PostgreSQL
transaction that first records their ids in the ledger (`storage.kafka.ledger`); offsets are
committed only after that commit, so a crash costs a redelivery, never a loss. Around the
loop: fetch waits (`storage.kafka.fetch_pacing`), offset gaps and broker epochs
(`storage.kafka.offset_gaps`), dead letters (`storage.kafka.dead_letters`).

Errors: retriable ones (an outage) are retried with backoff for as long as it lasts —
an event is never dead-lettered because a dependency was down. Anything else is retried
`consumer_poison_attempts` times and then dead-lettered, and the consumer moves on.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from aiokafka import AIOKafkaConsumer, ConsumerRebalanceListener, ConsumerRecord, TopicPartition
from aiokafka.errors import KafkaError

from storage.db import Database
from storage.errors import classify
from storage.event_spans import record_applied
from storage.events import HEADER_REPLAY_FOR, Event, header
from storage.kafka.clients import make_consumer, stop_quietly
from storage.kafka.commits import BackgroundCommits, committed_offset
from storage.kafka.consumer import Consumer
from storage.kafka.dead_letters import DeadLetterWriter
from storage.kafka.fetch_pacing import FetchPacer, FetchWait, ends_and_positions
from storage.kafka.groups import ANNOUNCE_EVERY_S, announce_group
from storage.kafka.ledger import record_new, record_one
from storage.kafka.offset_gaps import Continuity, OffsetGaps, Reread, Rewind
from storage.settings import StorageSettings
from storage.tasks import Backoff
from storage.tracing import export_spans, reset_traceparent, set_traceparent, span_export

log = logging.getLogger(__name__)

# Applied events' ages kept for the metrics exporter between two of its visits.
AGES_KEPT = 10_000


@dataclass
class ConsumerStats:
    applied: int = 0
    duplicates: int = 0
    dead_lettered: int = 0
    retries: int = 0
    rewinds: int = 0
    commit_failures: int = 0
    # Fetches repeated because a partition's offsets jumped (`storage.kafka.offset_gaps`), and
    # gaps still there after every re-read, taken as real.
    gap_rereads: int = 0
    gaps_accepted: int = 0
    # Times the fetch wait was doubled because the broker found no records in time.
    fetch_wait_raises: int = 0
    last_error: str | None = None


class ConsumerRunner:
    """Drives one `Consumer` as a member of its group, with the consumer's settings. The
    Ray actor in `deployments.workers` wraps this."""

    def __init__(self, consumer: Consumer[Any], db: Database, *, member: str) -> None:
        settings: StorageSettings = consumer.settings
        self._consumer = consumer
        self._db = db
        self._settings = settings
        self._member = member
        self._kafka: AIOKafkaConsumer | None = None
        self._commits = BackgroundCommits(member, timeout_s=self._request_timeout_s)
        self._continuity = Continuity(settings.consumer_gap_rereads)
        idle_ms = settings.kafka_fetch_max_wait_ms
        self._pacer = FetchPacer(
            FetchWait(
                idle_ms,
                settings.kafka_fetch_busy_wait,
                ceiling_ms=max(idle_ms, settings.kafka_request_timeout_ms // 2),
            ),
            request_timeout_s=self._request_timeout_s,
        )
        self._dead_letters = DeadLetterWriter(
            db, consumer.name, max_backoff_ms=settings.consumer_max_backoff_ms
        )
        # Seconds from each applied event's `occurred_at` to its commit here, for the
        # hosting actor to export (`take_ages`); the oldest go first if nobody takes them.
        self._ages: deque[float] = deque(maxlen=AGES_KEPT)
        self.stats = ConsumerStats()

    @property
    def name(self) -> str:
        return self._consumer.name

    @property
    def _request_timeout_s(self) -> float:
        return self._settings.kafka_request_timeout_ms / 1000

    async def run(self) -> None:
        export_spans(self._settings, service=f"nova-consumer-{self.name}", instance=self._member)
        await self._consumer.start()
        try:
            await self._connect()
            assert self._kafka is not None
            announced: float | None = None
            while True:
                announced = await self._announce(announced)
                # A fetch may take up to two waits on the embedded broker (`fetch_pacing`).
                batches = await self._kafka.getmany(
                    timeout_ms=max(500, 2 * self._pacer.wait.current_ms + 100),
                    max_records=self._settings.consumer_batch_size,
                )
                await self._pacer.after_poll(self._kafka, got_records=bool(batches))
                self.stats.fetch_wait_raises = self._pacer.raises
                if batches:
                    # Partitions are independent; within one, order is kept.
                    nexts = await asyncio.gather(
                        *(self._process_partition(tp, records) for tp, records in batches.items())
                    )
                    self._commits.schedule(
                        self._kafka,
                        {tp: n for tp, n in zip(batches, nexts, strict=True) if n is not None},
                    )
                    self.stats.commit_failures = self._commits.failures
        finally:
            try:
                await self._commits.finish()
            finally:
                await self._disconnect()
                await self._consumer.stop()

    async def _announce(self, last: float | None) -> float | None:
        """Tell the relays this group is alive and what it reads (`storage.kafka.groups`),
        when it joins and every `ANNOUNCE_EVERY_S`; when it was last done. A failure is
        logged and tried again on the next poll: consuming does not wait for it."""
        now = time.monotonic()
        if last is not None and now - last < ANNOUNCE_EVERY_S:
            return last
        try:
            await asyncio.wait_for(
                announce_group(self._db, self.name, self._consumer.topics),
                self._request_timeout_s,
            )
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.warning("consumer %s: could not announce the group: %s", self.name, classify(exc))
            return last
        return now

    async def _connect(self) -> None:
        backoff = Backoff(cap_ms=self._settings.consumer_max_backoff_ms)
        while True:
            kafka = make_consumer(
                self._settings, group_id=self._consumer.name, client_id=self._member
            )
            listener = _ForgetOnRebalance(self._continuity.gaps)
            kafka.subscribe(self._consumer.topics, listener=listener)
            try:
                await asyncio.wait_for(kafka.start(), self._request_timeout_s)
            except (KafkaError, OSError, TimeoutError) as exc:
                self.stats.last_error = f"connect: {classify(exc, 'kafka')}"
                log.warning("consumer %s: %s; retrying", self.name, self.stats.last_error)
                await stop_quietly(kafka, timeout_s=10)
                await backoff.sleep()
                continue
            self._pacer.start(kafka)
            self._kafka = kafka
            return

    async def _disconnect(self) -> None:
        kafka, self._kafka = self._kafka, None
        if kafka is not None:
            await stop_quietly(kafka, timeout_s=10)

    # -- applying ----------------------------------------------------------------------

    async def _process_partition(
        self, tp: TopicPartition, records: Sequence[ConsumerRecord]
    ) -> int | None:
        """Apply a partition's records in order; return the offset to commit, if any."""
        assert self._kafka is not None
        gaps = self._continuity.gaps
        if not gaps.knows(tp):
            resumed = await committed_offset(self._kafka, tp, timeout_s=self._request_timeout_s)
            gaps.expect(tp, resumed)
        accepted, then = self._continuity.screen(tp, records)
        if isinstance(then, Reread):
            log.info(
                "consumer %s: %s[%d] jumped from offset %d to %d; reading it again",
                self.name,
                tp.topic,
                tp.partition,
                then.offset,
                then.skipped_to,
            )
            self._kafka.seek(tp, then.offset)
        elif isinstance(then, Rewind):
            self.stats.rewinds += 1
            log.warning(
                "consumer %s: %s[%d] has a new broker epoch at offset %d; "
                "reading it from the start",
                self.name,
                tp.topic,
                tp.partition,
                then.offset,
            )
            self._commits.drop(tp)  # an old-log offset must not land now
            await self._kafka.seek_to_beginning(tp)
        self.stats.gap_rereads = gaps.reread_count
        self.stats.gaps_accepted = gaps.accepted_count
        if not accepted:
            return None
        await self._process_batch(tp, accepted)
        return int(accepted[-1].offset) + 1

    async def _process_batch(self, tp: TopicPartition, records: list[ConsumerRecord]) -> None:
        """One transaction for the whole batch; on a non-retriable failure, one at a time
        so that only the event at fault is dead-lettered."""
        events: list[Event] = []
        for record in records:
            if not self._addressed_to_us(record):
                continue
            try:
                events.append(Event.decode(record.value))
            except Exception:
                break  # decode failures are dead-lettered by the one-at-a-time path
        else:
            if await self._apply_batch_with_retries(events):
                return
        for record in records:
            await self._process(tp, record)

    def _addressed_to_us(self, record: ConsumerRecord) -> bool:
        """A replayed dead letter is for the consumer that failed it alone."""
        replay_for = header(record.headers, HEADER_REPLAY_FOR)
        return replay_for is None or replay_for == self.name

    async def _apply_batch_with_retries(self, events: list[Event]) -> bool:
        """True once the batch is applied; False if it failed for a non-retriable reason."""
        backoff = Backoff(cap_ms=self._settings.consumer_max_backoff_ms)
        while True:
            try:
                await self.apply_batch(events)
                return True
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                error = classify(exc)
                if not error.retriable:
                    return False
                self.stats.retries += 1
                self.stats.last_error = f"batch: {error}"
                log.warning("consumer %s: %s; retrying the batch", self.name, error)
                await backoff.sleep()

    async def apply_batch(self, events: Sequence[Event]) -> int:
        """Apply the events this consumer's ledger lacks, in order, in one transaction."""
        if not events:
            return 0
        started_ns = time.time_ns()
        async with self._db.transaction() as conn:
            fresh = await record_new(conn, self.name, [event.event_id for event in events])
            done: list[Event] = []
            for event in events:
                if event.event_id in fresh:
                    fresh.discard(event.event_id)  # a batch may hold the same event twice
                    done.append(event)
            await self._consumer.apply_many(done, conn)
        self.stats.applied += len(done)
        self.stats.duplicates += len(events) - len(done)
        if (export := span_export()) is not None:
            record_applied(export, self.name, done, started_ns)
        self._note_ages(done)
        await self._after_commit(done)
        return len(done)

    async def _process(self, tp: TopicPartition, record: ConsumerRecord) -> None:
        if not self._addressed_to_us(record):
            return
        try:
            event = Event.decode(record.value)
        except Exception as exc:
            await self._dead_letters.write(tp, record, None, exc, attempts=1)
            self.stats.dead_lettered += 1
            return
        await self._apply_with_retries(tp, record, event)

    async def _apply_with_retries(
        self, tp: TopicPartition, record: ConsumerRecord, event: Event
    ) -> None:
        backoff = Backoff(cap_ms=self._settings.consumer_max_backoff_ms)
        failures = 0
        started_ns = time.time_ns()
        while True:
            try:
                await self.apply_once(event)
                return
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                error = classify(exc)
                self.stats.retries += 1
                self.stats.last_error = f"{event.event_id}: {error}"
                if not error.retriable:
                    failures += 1
                    if failures >= self._settings.consumer_poison_attempts:
                        await self._dead_letters.write(tp, record, event, exc, attempts=failures)
                        if (export := span_export()) is not None:
                            failure = f"dead-lettered: {error}"
                            record_applied(export, self.name, [event], started_ns, failure=failure)
                        self.stats.dead_lettered += 1
                        return
                log.warning(
                    "consumer %s: %s (attempt %d)", self.name, self.stats.last_error, failures
                )
                await backoff.sleep()

    async def apply_once(self, event: Event) -> bool:
        """Apply `event` unless this consumer's ledger has it; True if applied now."""
        token = set_traceparent(event.traceparent)
        started_ns = time.time_ns()
        try:
            async with self._db.transaction() as conn:
                if not await record_one(conn, self.name, event.event_id):
                    self.stats.duplicates += 1
                    return False
                await self._consumer.apply(event, conn)
        finally:
            reset_traceparent(token)
        self.stats.applied += 1
        if (export := span_export()) is not None:
            record_applied(export, self.name, [event], started_ns)
        self._note_ages([event])
        await self._after_commit([event])
        return True

    async def _after_commit(self, events: list[Event]) -> None:
        if not events:
            return
        try:
            await self._consumer.after_commit(events)
        except Exception:
            log.exception("consumer %s: after_commit failed (events stay applied)", self.name)

    # -- staleness ---------------------------------------------------------------------

    def _note_ages(self, events: Sequence[Event]) -> None:
        now = time.time()
        self._ages.extend(max(0.0, now - event.occurred_at.timestamp()) for event in events)

    def take_ages(self) -> list[float]:
        """The ages (s, occurred → applied) of the events applied since the last call."""
        ages = list(self._ages)
        self._ages.clear()
        return ages

    async def records_behind(self) -> int | None:
        """How many records wait past this member's positions (its share of the group's
        lag); None when it has no assignment or the broker does not answer in time."""
        found = await ends_and_positions(self._kafka, self._request_timeout_s)
        if found is None:
            return None
        ends, positions = found
        return sum(max(0, ends[tp] - pos) for tp, pos in positions.items())

    def status(self) -> dict[str, Any]:
        self.stats.commit_failures = self._commits.failures
        self.stats.fetch_wait_raises = self._pacer.raises
        assignment = sorted(
            f"{tp.topic}[{tp.partition}]"
            for tp in (self._kafka.assignment() if self._kafka else ())
        )
        return {
            "consumer": self.name,
            "member": self._member,
            "assignment": assignment,
            "fetch_wait_ms": self._pacer.wait.current_ms,
            **self.stats.__dict__,
        }


class _ForgetOnRebalance(ConsumerRebalanceListener):  # type: ignore[misc]
    """Partitions that change hands are read from their committed offset again: their
    expected offsets are looked up afresh, not carried over."""

    def __init__(self, gaps: OffsetGaps[TopicPartition]) -> None:
        self._gaps = gaps

    def on_partitions_revoked(self, revoked: set[TopicPartition]) -> None:
        self._gaps.forget(revoked)

    def on_partitions_assigned(self, assigned: set[TopicPartition]) -> None:
        self._gaps.forget(assigned)
