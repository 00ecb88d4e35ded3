"""Kafka consumers that apply each event once in effect, whatever Kafka redelivers.

A consumer subclasses `Consumer` and implements `apply(event, conn)`. `ConsumerRunner`
calls it inside a PostgreSQL transaction that first records `(consumer, event_id)` in the
`processed_events` ledger; a redelivered event finds its id there and is skipped. Offsets
are committed to Kafka only after the transaction commits, so a crash in between costs a
redelivery, never a loss.

Effects outside PostgreSQL (Redis, say) use `storage.kafka.ledger.RedisLedger.apply_many_once`
inside `apply_many`: the Redis effects and their own ledger keys are written atomically,
so a redelivery after a failed PostgreSQL commit finds the Redis ledger keys and does not
apply twice.

Errors: retriable ones (an outage) are retried with backoff for as long as it lasts —
an event is never dead-lettered because a dependency was down. Anything else is retried
`consumer_poison_attempts` times and then dead-lettered: a row in `dead_letters` plus a
message on `dlq.all` (through the outbox), and the consumer moves on.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import logging
import time
from abc import ABC, abstractmethod
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import asyncpg
from aiokafka import AIOKafkaConsumer, ConsumerRebalanceListener, ConsumerRecord, TopicPartition
from aiokafka.errors import CommitFailedError, KafkaError

from storage.db import Database
from storage.errors import NovaError, classify
from storage.events import HEADER_EPOCH, HEADER_REPLAY_FOR, Event, header
from storage.kafka.clients import end_offsets, make_consumer
from storage.kafka.fetch_pacing import FetchWait, set_fetch_max_wait
from storage.kafka.offset_gaps import OffsetGaps
from storage.kafka.topics import DLQ_TOPIC
from storage.outbox.rows import add_event
from storage.settings import Settings
from storage.tasks import Backoff
from storage.tracing import reset_traceparent, set_traceparent

log = logging.getLogger(__name__)

# How often an idle member may ask the broker whether records wait past its position.
LAG_CHECK_S = 5.0
# Applied events' ages kept for the metrics exporter between two of its visits.
AGES_KEPT = 10_000


class Consumer(ABC):
    """One consumer group. `name` is the group id and the ledger's key; keep it stable."""

    name: ClassVar[str]
    topics: ClassVar[tuple[str, ...]]

    async def start(self, settings: Settings) -> None:  # noqa: B027 - optional hook
        """Open what `apply` needs (clients, caches). Called once before consuming."""

    async def stop(self) -> None:  # noqa: B027 - optional hook
        """Release what `start` opened."""

    @abstractmethod
    async def apply(self, event: Event, conn: asyncpg.Connection) -> None:
        """Apply `event` inside the ledger's transaction. Raise to retry or dead-letter."""

    async def apply_many(self, events: Sequence[Event], conn: asyncpg.Connection) -> None:
        """Apply a batch in order inside the ledger's transaction. Override to write a
        batch at once (COPY, say); the default calls `apply` per event, under its trace."""
        for event in events:
            token = set_traceparent(event.traceparent)
            try:
                await self.apply(event, conn)
            finally:
                reset_traceparent(token)

    async def after_commit(self, events: Sequence[Event]) -> None:  # noqa: B027 - optional hook
        """Called once `events` are durably applied, before their offsets are committed:
        the place for effects that must follow a committed change (pushing to live
        subscribers, say). A crash here means redelivery, which the ledger absorbs, so
        these effects must tolerate running again; errors are logged, not retried."""


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
    """Drives one `Consumer` as a member of its group. The Ray actor wraps this."""

    def __init__(
        self, consumer: Consumer, db: Database, settings: Settings, *, member: str
    ) -> None:
        self._consumer = consumer
        self._db = db
        self._settings = settings
        self._member = member
        self._kafka: AIOKafkaConsumer | None = None
        # The broker epoch last seen per partition: a higher one means the broker lost its
        # log and the relay re-drove it, so the partition is read again from its start.
        self._epochs: dict[TopicPartition, int] = {}
        # Offsets are committed in the background, one request at a time, newest winning:
        # the next fetch need not wait for the broker. A commit lost in a crash only means
        # a redelivery, which the ledger absorbs.
        self._uncommitted: dict[TopicPartition, int] = {}
        self._committer: asyncio.Task[None] | None = None
        self._gaps: OffsetGaps[TopicPartition] = OffsetGaps(settings.consumer_gap_rereads)
        idle_ms = settings.kafka_fetch_max_wait_ms
        self._fetch_wait = FetchWait(
            idle_ms,
            settings.kafka_fetch_busy_wait,
            ceiling_ms=max(idle_ms, settings.kafka_request_timeout_ms // 2),
        )
        self._lag_checked = 0.0
        self._stuck_at: dict[TopicPartition, int] | None = None
        # Seconds from each applied event's `occurred_at` to its commit here, for the
        # hosting actor to export (`take_ages`); the oldest go first if nobody takes them.
        self._ages: deque[float] = deque(maxlen=AGES_KEPT)
        self.stats = ConsumerStats()

    @property
    def name(self) -> str:
        return self._consumer.name

    async def run(self) -> None:
        await self._consumer.start(self._settings)
        try:
            await self._connect()
            assert self._kafka is not None
            while True:
                # A fetch may take up to two waits on the embedded broker (`fetch_wait`).
                batches = await self._kafka.getmany(
                    timeout_ms=max(500, 2 * self._fetch_wait.current_ms + 100),
                    max_records=self._settings.consumer_batch_size,
                )
                await self._pace_fetches(got_records=bool(batches))
                if batches:
                    # Partitions are independent; within one, order is kept.
                    nexts = await asyncio.gather(
                        *(self._process_partition(tp, records) for tp, records in batches.items())
                    )
                    self._schedule_commit(
                        {tp: n for tp, n in zip(batches, nexts, strict=True) if n is not None}
                    )
        finally:
            try:
                await self._finish_commits()
            finally:
                await self._disconnect()
                await self._consumer.stop()

    async def _pace_fetches(self, *, got_records: bool) -> None:
        """Adjust the fetch wait to this poll's outcome (`storage.kafka.fetch_pacing`).

        Empty polls while records wait are normal for a moment (they arrived during the
        fetch), so the wait is raised only when two lag checks, `LAG_CHECK_S` apart, find
        the member at the same positions with records past them.
        """
        assert self._kafka is not None
        now = time.monotonic()
        wait_ms = self._fetch_wait.after_poll(got_records, now)
        if got_records:
            self._stuck_at = None
        elif (
            now - self._lag_checked >= LAG_CHECK_S
            and self._fetch_wait.current_ms < self._fetch_wait.ceiling_ms
        ):
            self._lag_checked = now
            behind = await self._positions_behind_end()
            if behind and behind == self._stuck_at:
                wait_ms = self._fetch_wait.raise_for_slow_broker() or wait_ms
                self.stats.fetch_wait_raises += 1
            self._stuck_at = behind
        if wait_ms is not None:
            set_fetch_max_wait(self._kafka, wait_ms)

    async def _positions_behind_end(self) -> dict[TopicPartition, int] | None:
        """This member's position in each assigned partition that holds records past it."""
        found = await self._ends_and_positions()
        if found is None:
            return None  # the next poll meets the outage; nothing to conclude from here
        ends, positions = found
        return {tp: pos for tp, pos in positions.items() if pos < ends[tp]} or None

    async def _ends_and_positions(
        self,
    ) -> tuple[dict[TopicPartition, int], dict[TopicPartition, int]] | None:
        """End offsets and this member's positions in its assigned partitions."""
        kafka = self._kafka
        if kafka is None:
            return None
        assigned = sorted(kafka.assignment())
        if not assigned:
            return None
        timeout_s = self._settings.kafka_request_timeout_ms / 1000
        try:
            ends = await end_offsets(kafka, assigned, timeout_s)
            positions = {
                tp: await asyncio.wait_for(kafka.position(tp), timeout_s) for tp in assigned
            }
        except (NovaError, KafkaError, OSError, TimeoutError):
            return None
        return ends, positions

    async def _connect(self) -> None:
        backoff = Backoff(cap_ms=self._settings.consumer_max_backoff_ms)
        while True:
            kafka = make_consumer(
                self._settings, group_id=self._consumer.name, client_id=self._member
            )
            kafka.subscribe(self._consumer.topics, listener=_ForgetOnRebalance(self._gaps))
            try:
                await asyncio.wait_for(
                    kafka.start(), self._settings.kafka_request_timeout_ms / 1000
                )
            except (KafkaError, OSError, TimeoutError) as exc:
                self.stats.last_error = f"connect: {classify(exc, 'kafka')}"
                log.warning("consumer %s: %s; retrying", self.name, self.stats.last_error)
                await _stop_quietly(kafka)
                await backoff.sleep()
                continue
            set_fetch_max_wait(kafka, self._fetch_wait.current_ms)
            self._kafka = kafka
            return

    async def _disconnect(self) -> None:
        kafka, self._kafka = self._kafka, None
        if kafka is not None:
            await _stop_quietly(kafka)

    async def _process_partition(
        self, tp: TopicPartition, records: Sequence[ConsumerRecord]
    ) -> int | None:
        """Apply a partition's records in order; return the offset to commit, if any."""
        assert self._kafka is not None
        if not self._gaps.knows(tp):
            self._gaps.expect(tp, await self._committed(tp))
        accepted: list[ConsumerRecord] = []
        for record in records:
            if not self._gaps.admit(tp, record.offset):
                expected = self._gaps.expected(tp)
                assert expected is not None
                log.info(
                    "consumer %s: %s[%d] jumped from offset %d to %d; reading it again",
                    self.name,
                    tp.topic,
                    tp.partition,
                    expected,
                    record.offset,
                )
                self._kafka.seek(tp, expected)
                break
            if self._epoch_advanced(tp, record):
                self.stats.rewinds += 1
                log.warning(
                    "consumer %s: %s[%d] has a new broker epoch at offset %d; "
                    "reading it from the start",
                    self.name,
                    tp.topic,
                    tp.partition,
                    record.offset,
                )
                self._uncommitted.pop(tp, None)  # an old-log offset must not land now
                self._gaps.forget([tp])
                await self._kafka.seek_to_beginning(tp)
                break
            accepted.append(record)
        self.stats.gap_rereads = self._gaps.reread_count
        self.stats.gaps_accepted = self._gaps.accepted_count
        if not accepted:
            return None
        await self._process_batch(tp, accepted)
        return int(accepted[-1].offset) + 1

    async def _process_batch(self, tp: TopicPartition, records: list[ConsumerRecord]) -> None:
        """One transaction for the whole batch; on a non-retriable failure, one at a time
        so that only the event at fault is dead-lettered."""
        events: list[Event] = []
        for record in records:
            replay_for = header(record.headers, HEADER_REPLAY_FOR)
            if replay_for is not None and replay_for != self.name:
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
        async with self._db.transaction() as conn:
            fresh = set(
                await conn.fetchval(
                    """
                    WITH recorded AS (
                        INSERT INTO processed_events (consumer, event_id)
                        SELECT $1, unnest($2::uuid[])
                        ON CONFLICT DO NOTHING RETURNING event_id
                    )
                    SELECT coalesce(array_agg(event_id), '{}') FROM recorded
                    """,
                    self.name,
                    [event.event_id for event in events],
                )
            )
            done: list[Event] = []
            for event in events:
                if event.event_id in fresh:
                    fresh.discard(event.event_id)  # a batch may hold the same event twice
                    done.append(event)
            await self._consumer.apply_many(done, conn)
        self.stats.applied += len(done)
        self.stats.duplicates += len(events) - len(done)
        self._note_ages(done)
        await self._after_commit(done)
        return len(done)

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
        found = await self._ends_and_positions()
        if found is None:
            return None
        ends, positions = found
        return sum(max(0, ends[tp] - pos) for tp, pos in positions.items())

    async def _after_commit(self, events: list[Event]) -> None:
        if not events:
            return
        try:
            await self._consumer.after_commit(events)
        except Exception:
            log.exception("consumer %s: after_commit failed (events stay applied)", self.name)

    async def _committed(self, tp: TopicPartition) -> int | None:
        """Where this member's reading of `tp` resumed: the group's committed offset, or
        the log's start for a group with none (reads start at the earliest offset). None
        if the broker does not answer in time; the first record read then sets it."""
        assert self._kafka is not None
        timeout_s = self._settings.kafka_request_timeout_ms / 1000
        try:
            offset = await asyncio.wait_for(self._kafka.committed(tp), timeout_s)
            if offset is None or offset < 0:
                starts = await asyncio.wait_for(self._kafka.beginning_offsets([tp]), timeout_s)
                offset = starts.get(tp)
        except (KafkaError, TimeoutError) as exc:
            log.info("consumer %s: where %s resumed is unknown (%s)", self.name, tp, exc)
            return None
        return None if offset is None or offset < 0 else int(offset)

    def _epoch_advanced(self, tp: TopicPartition, record: ConsumerRecord) -> bool:
        raw = header(record.headers, HEADER_EPOCH)
        epoch = int(raw) if raw and raw.isdigit() else 0
        known = self._epochs.get(tp)
        if known is None or epoch > known:
            self._epochs[tp] = epoch
        return known is not None and epoch > known and record.offset > 0

    def _schedule_commit(self, offsets: dict[TopicPartition, int]) -> None:
        self._uncommitted.update(offsets)
        if self._uncommitted and (self._committer is None or self._committer.done()):
            self._committer = asyncio.get_running_loop().create_task(
                self._commit_pending(), name=f"{self._member}-commit"
            )

    async def _commit_pending(self) -> None:
        while self._uncommitted:
            offsets, self._uncommitted = self._uncommitted, {}
            await self._commit(offsets)  # logs and counts its own failures

    async def _finish_commits(self) -> None:
        """On the way out, give the last offsets a bounded chance to be committed."""
        committer, self._committer = self._committer, None
        if committer is not None:
            try:
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(asyncio.shield(committer), 5)
            finally:
                committer.cancel()

    async def _commit(self, offsets: dict[TopicPartition, int]) -> None:
        assert self._kafka is not None
        if not offsets:
            return
        try:
            await asyncio.wait_for(
                self._kafka.commit(offsets),
                self._settings.kafka_request_timeout_ms / 1000,
            )
        except (CommitFailedError, KafkaError, TimeoutError) as exc:
            # The group rebalanced or the broker is away: these records come back and the
            # ledger absorbs them.
            self.stats.commit_failures += 1
            log.info("consumer %s: commit failed (%s); records will be redelivered", self.name, exc)

    async def _process(self, tp: TopicPartition, record: ConsumerRecord) -> None:
        replay_for = header(record.headers, HEADER_REPLAY_FOR)
        if replay_for is not None and replay_for != self.name:
            return
        try:
            event = Event.decode(record.value)
        except Exception as exc:
            await self._dead_letter(tp, record, None, exc, attempts=1)
            return
        await self._apply_with_retries(tp, record, event)

    async def _apply_with_retries(
        self, tp: TopicPartition, record: ConsumerRecord, event: Event
    ) -> None:
        backoff = Backoff(cap_ms=self._settings.consumer_max_backoff_ms)
        failures = 0
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
                        await self._dead_letter(tp, record, event, exc, attempts=failures)
                        return
                log.warning(
                    "consumer %s: %s (attempt %d)", self.name, self.stats.last_error, failures
                )
                await backoff.sleep()

    async def apply_once(self, event: Event) -> bool:
        """Apply `event` unless this consumer's ledger has it; True if applied now."""
        token = set_traceparent(event.traceparent)
        try:
            async with self._db.transaction() as conn:
                fresh = await conn.fetchval(
                    """
                    INSERT INTO processed_events (consumer, event_id) VALUES ($1, $2)
                    ON CONFLICT DO NOTHING RETURNING true
                    """,
                    self.name,
                    event.event_id,
                )
                if not fresh:
                    self.stats.duplicates += 1
                    return False
                await self._consumer.apply(event, conn)
        finally:
            reset_traceparent(token)
        self.stats.applied += 1
        self._note_ages([event])
        await self._after_commit([event])
        return True

    async def _dead_letter(
        self,
        tp: TopicPartition,
        record: ConsumerRecord,
        event: Event | None,
        exc: BaseException,
        *,
        attempts: int,
    ) -> None:
        error = f"{type(exc).__name__}: {exc}"[:2000]
        log.error(
            "consumer %s: dead-lettering %s[%d]@%d: %s",
            self.name,
            tp.topic,
            tp.partition,
            record.offset,
            error,
        )
        backoff = Backoff(cap_ms=self._settings.consumer_max_backoff_ms)
        while True:
            try:
                await self._write_dead_letter(tp, record, event, error, attempts)
                break
            except asyncio.CancelledError:
                raise
            except Exception as write_exc:
                if not classify(write_exc).retriable:
                    raise
                await backoff.sleep()
        self.stats.dead_lettered += 1

    async def _write_dead_letter(
        self,
        tp: TopicPartition,
        record: ConsumerRecord,
        event: Event | None,
        error: str,
        attempts: int,
    ) -> None:
        key = record.key.decode("utf-8", "replace") if record.key else None
        async with self._db.transaction() as conn:
            dead_letter_id = await conn.fetchval(
                """
                INSERT INTO dead_letters (consumer, topic, partition, kafka_offset, event_id,
                                          event, raw_value, error, attempts)
                VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)
                ON CONFLICT (consumer, event_id)
                    WHERE replayed_at IS NULL AND event_id IS NOT NULL DO NOTHING
                RETURNING id
                """,
                self.name,
                tp.topic,
                tp.partition,
                record.offset,
                event.event_id if event else None,
                event.to_dict() if event else None,
                None if event else record.value,
                error,
                attempts,
            )
            if dead_letter_id is None:
                return  # already dead-lettered and not yet replayed
            payload: dict[str, Any] = {
                "dead_letter_id": dead_letter_id,
                "consumer": self.name,
                "original_topic": tp.topic,
                "original_partition": tp.partition,
                "original_offset": record.offset,
                "error": error,
                "event": event.to_dict() if event else None,
                "raw_value_b64": None
                if event or record.value is None
                else base64.b64encode(record.value).decode(),
            }
            await add_event(
                conn,
                Event(
                    type="dlq.event",
                    aggregate_id=key or (event.aggregate_id if event else "unknown"),
                    payload=payload,
                ),
                topic=DLQ_TOPIC,
            )

    def status(self) -> dict[str, Any]:
        assignment = sorted(
            f"{tp.topic}[{tp.partition}]"
            for tp in (self._kafka.assignment() if self._kafka else ())
        )
        return {
            "consumer": self.name,
            "member": self._member,
            "assignment": assignment,
            "fetch_wait_ms": self._fetch_wait.current_ms,
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


async def _stop_quietly(kafka: AIOKafkaConsumer) -> None:
    try:
        await asyncio.wait_for(kafka.stop(), 10)
    except Exception:
        log.debug("stopping consumer failed", exc_info=True)
