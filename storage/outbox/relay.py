"""The outbox relay: publishes committed outbox rows to Kafka, in order per key.

How order survives several relays: outbox rows fall into 16 slots by a hash of their key.
A relay publishes a batch inside a transaction that first takes the advisory lock of every
pending slot it can with `pg_try_advisory_xact_lock` (a busy slot is skipped, like `SKIP
LOCKED` at slot level), reads those slots' oldest unpublished rows `FOR UPDATE`, publishes
them and waits for every acknowledgement, then marks them published and commits. One
transaction per batch whatever the number of slots it spans keeps PostgreSQL's share of
each event small. A slot is thus published by one
relay at a time, in id order, and ids follow commit order per key (`storage.outbox.rows`).
Row-level `SKIP LOCKED` is deliberately not used: skipping an earlier row of a key would
publish its successor first.

How broker data loss is survived: `storage.outbox.broker_loss`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import asyncpg
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from storage.db import Database
from storage.errors import NovaError, classify
from storage.event_spans import record_publishes
from storage.kafka.clients import (
    TopicAdmin,
    end_offsets,
    make_consumer,
    make_producer,
    start_within,
    stop_quietly,
)
from storage.kafka.topics import MARKER_TOPIC, registered_topics
from storage.outbox.broker_loss import (
    Acks,
    BrokerFloors,
    BrokerReset,
    current_epoch,
    start_new_epoch,
)
from storage.outbox.claims import (
    claim_batch,
    kafka_message,
    mark_published,
    purge_retained,
)
from storage.outbox.rows import NOTIFY_CHANNEL
from storage.settings import StorageSettings
from storage.tasks import Backoff
from storage.tracing import export_spans, span_export

log = logging.getLogger(__name__)


@dataclass
class RelayStats:
    published: int = 0
    batches: int = 0
    resets_detected: int = 0
    redriven: int = 0
    purged: int = 0
    errors: int = 0
    last_error: str | None = None
    last_publish_ms: float = 0.0
    epoch: int = 0
    partition_mismatches: dict[str, int] = field(default_factory=dict)


class OutboxRelay:
    """Publishes the outbox. Plain class: the Ray actor in `deployments.workers` wraps it."""

    def __init__(self, db: Database, settings: StorageSettings, *, name: str) -> None:
        self._db = db
        self._settings = settings
        self._name = name
        self._producer: AIOKafkaProducer | None = None
        self._probe: AIOKafkaConsumer | None = None
        self._admin = TopicAdmin(settings, client_id=f"{name}-admin")
        self._listener: asyncpg.Connection | None = None
        self._wakeup = asyncio.Event()
        self._floors = BrokerFloors()
        self._topics: dict[str, int] = {}
        self._needs_check = True
        self._last_purge = 0.0
        self.stats = RelayStats()

    # -- lifecycle -------------------------------------------------------------------

    async def run(self) -> None:
        """Publish until cancelled. Outages back off and retry; nothing is dropped.

        The periodic broker check and the retention purge run beside the publish loop
        (`_monitor`), so events never wait behind them. After a failure the check runs
        inline, before anything is published again.
        """
        export_spans(self._settings, service="nova-relay", instance=self._name)
        backoff = Backoff(cap_ms=self._settings.relay_max_backoff_ms)
        monitor = asyncio.get_running_loop().create_task(
            self._monitor(), name=f"{self._name}-monitor"
        )
        try:
            while True:
                try:
                    if monitor.done():
                        monitor.result()  # re-raise whatever ended it: never die silently
                        raise RuntimeError("relay monitor stopped")
                    await self._ensure_connected()
                    if self._needs_check:
                        await self.check_broker()
                    published = await self.drain()
                    backoff.reset()
                    if published == 0:
                        await self._wait_for_work()
                except (NovaError, OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
                    error = classify(exc, "kafka")
                    self.stats.errors += 1
                    self.stats.last_error = str(error)
                    self._needs_check = True
                    if isinstance(exc, BrokerReset):
                        await self._handle_reset(str(exc))
                        continue
                    log.warning("relay %s: %s; retrying", self._name, error)
                    if not error.retriable:
                        await self._drop_clients()
                    await backoff.sleep()
        finally:
            monitor.cancel()
            await asyncio.wait([monitor], timeout=5)
            await self.close()

    async def _monitor(self) -> None:
        """Every broker-check interval: look for broker data loss; now and then: purge."""
        interval_s = self._settings.broker_check_interval_ms / 1000
        while True:
            await asyncio.sleep(interval_s)
            if self._needs_check or self._producer is None or self._probe is None:
                continue  # the publish loop is recovering and checks inline
            try:
                await self.check_broker()
                await self._maybe_purge()
            except BrokerReset as exc:
                await self._handle_reset(str(exc))
            except (NovaError, OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
                # The publish loop meets the same outage and backs off; check inline then.
                self.stats.last_error = f"monitor: {classify(exc, 'kafka')}"
                self._needs_check = True

    async def close(self) -> None:
        await self._drop_clients()
        if self._listener is not None and not self._listener.is_closed():
            await self._listener.close(timeout=2)
        self._listener = None

    async def _drop_clients(self) -> None:
        producer, self._producer = self._producer, None
        probe, self._probe = self._probe, None
        for client in (producer, probe):
            if client is not None:
                await stop_quietly(client)
        await self._admin.close()

    async def _ensure_connected(self) -> None:
        timeout_s = self._settings.kafka_request_timeout_ms / 1000
        if self._listener is None or self._listener.is_closed():
            listener = await self._db.connect_raw()
            await listener.add_listener(NOTIFY_CHANNEL, self._on_notify)
            self._listener = listener
        if self._producer is None:
            producer = make_producer(self._settings, client_id=self._name)
            await start_within(producer, timeout_s)
            self._producer = producer
            self._needs_check = True
        if self._probe is None:
            probe = make_consumer(self._settings, group_id=None, client_id=f"{self._name}-probe")
            await start_within(probe, timeout_s)
            self._probe = probe

    def _on_notify(self, *_: Any) -> None:
        self._wakeup.set()

    async def _wait_for_work(self) -> None:
        timeout_s = self._settings.relay_poll_interval_ms / 1000
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._wakeup.wait(), timeout_s)
        self._wakeup.clear()

    # -- publishing ------------------------------------------------------------------

    async def drain(self) -> int:
        """Publish batches until none has work this relay can take; return the count.

        `relay_slot_concurrency` batches are in flight at once, each holding its own slots.
        """

        async def worker() -> int:
            done = 0
            while published := await self.publish_batch():
                done += published
            return done

        # Let every batch finish (commit or roll back) before reporting a failure.
        results = await asyncio.gather(
            *(worker() for _ in range(self._settings.relay_slot_concurrency)),
            return_exceptions=True,
        )
        failures = [r for r in results if isinstance(r, BaseException)]
        if failures:
            raise next((f for f in failures if isinstance(f, BrokerReset)), failures[0])
        return sum(r for r in results if isinstance(r, int))

    async def publish_batch(self) -> int:
        """Publish the oldest unpublished rows of every pending slot no one else holds.

        One transaction whatever the number of slots: it try-locks each pending slot, reads
        the locked slots' oldest rows `FOR UPDATE`, publishes them, waits for every ack and
        marks them published. Returns 0 when nothing was pending or every slot was busy.
        """
        async with self._db.transaction() as conn:
            rows = await claim_batch(conn, self._settings.relay_batch_size)
            if not rows:
                return 0
            epoch = rows[0]["epoch"]
            if epoch != self._floors.epoch:
                await self._load_epoch(conn, epoch)
            started = time.perf_counter()
            # Only floors known before sending bound this batch's offsets.
            floors_at_send = dict(self._floors.offsets)
            acks = await self._publish(rows, epoch)
            self._floors.check_acks(acks, floors_at_send)
            await mark_published(conn, [row["id"] for row in rows], epoch)
        self._floors.raise_to(acks)
        self.stats.published += len(rows)
        self.stats.batches += 1
        self.stats.last_publish_ms = (time.perf_counter() - started) * 1000
        return len(rows)

    async def _publish(self, rows: Sequence[asyncpg.Record], epoch: int) -> Acks:
        """Send rows in order, wait for every ack; return (lowest, highest) offset per partition."""
        assert self._producer is not None
        timeout_s = 2 * self._settings.kafka_request_timeout_ms / 1000
        futures = []
        sent_ns = time.time_ns()
        try:
            for row in rows:
                futures.append(await asyncio.wait_for(self._send(row, epoch), timeout_s))
            metadata = await asyncio.wait_for(asyncio.gather(*futures), timeout_s)
        except BaseException as exc:
            for future in futures:
                future.cancel()
            if isinstance(exc, asyncio.CancelledError):
                raise
            if not isinstance(exc, Exception):
                raise
            raise classify(exc, "kafka") from exc
        if (export := span_export()) is not None:
            record_publishes(export, rows, metadata, sent_ns)
        bounds: Acks = {}
        for meta in metadata:
            key = (meta.topic, meta.partition)
            low, high = bounds.get(key, (meta.offset, meta.offset))
            bounds[key] = (min(low, meta.offset), max(high, meta.offset))
        return bounds

    async def _send(self, row: asyncpg.Record, epoch: int) -> asyncio.Future[Any]:
        assert self._producer is not None
        topic, value, key, headers = kafka_message(row, epoch)
        future: asyncio.Future[Any] = await self._producer.send(
            topic, value=value, key=key, headers=headers
        )
        return future

    async def _load_epoch(self, conn: asyncpg.Connection, epoch: int) -> None:
        await self._floors.load(conn, epoch)
        self.stats.epoch = epoch

    # -- broker loss -------------------------------------------------------------------

    async def check_broker(self) -> None:
        """Create missing topics and look for signs that the broker lost its log.

        Raises `BrokerReset` when a recorded topic is gone or the epoch's marker is.
        """
        async with self._db.connection() as conn:
            self._topics = await registered_topics(conn)
            await self._floors.persist(conn)
            await self._load_epoch(conn, await current_epoch(conn))
        existing = await self._admin.partitions()
        lost_topics = {t for (t, _) in self._floors.offsets if t not in existing}
        self.stats.partition_mismatches = await self._admin.ensure(self._topics)
        if lost_topics:
            raise BrokerReset(f"topics {sorted(lost_topics)} disappeared from the broker")
        await self._check_marker()
        self._needs_check = False

    async def _check_marker(self) -> None:
        """Compare the marker partition's end offset with its floor; write the marker if new.

        Data partitions cannot be probed this way: brokers differ in what "end offset"
        means for a record batch (tansu: its first offset + 1), and the producer merges
        concurrent sends into one batch. The marker is always a batch of one message, so
        its end offset is exact on every broker. Between probes, acknowledgements below a
        floor catch a lost log on any partition (`_detect_regression`).
        """
        assert self._probe is not None
        assert self._producer is not None
        marker = (MARKER_TOPIC, 0)
        timeout_s = self._settings.kafka_request_timeout_ms / 1000
        floor = self._floors.offsets.get(marker)
        if floor is not None:
            tp = TopicPartition(*marker)
            end = (await end_offsets(self._probe, [tp], timeout_s))[tp]
            if end < floor:
                raise BrokerReset(
                    f"{MARKER_TOPIC} ends at offset {end}, below {floor} acknowledged"
                )
            return
        try:
            meta = await asyncio.wait_for(
                self._producer.send_and_wait(
                    MARKER_TOPIC,
                    value=f'{{"epoch": {self._floors.epoch}, "relay": "{self._name}"}}'.encode(),
                    key=b"marker",
                    partition=0,
                ),
                timeout_s,
            )
        except Exception as exc:
            raise classify(exc, "kafka") from exc
        self._floors.raise_to({marker: (meta.offset, meta.offset)})

    async def _handle_reset(self, reason: str) -> None:
        """Bump the epoch and re-drive retained events, once, whichever relay sees it first."""
        async with self._db.transaction() as conn:
            epoch, redriven = await start_new_epoch(
                conn,
                self._floors.epoch,
                reason,
                unapplied_within_s=self._settings.outbox_retention_s,
            )
            await self._load_epoch(conn, epoch)
        if redriven is None:
            log.info("relay %s: broker reset already handled (epoch %d)", self._name, epoch)
            return
        self.stats.resets_detected += 1
        self.stats.redriven += redriven
        self._needs_check = True
        log.warning(
            "relay %s: broker lost data (%s); epoch %d, re-driving %d events not yet applied",
            self._name,
            reason,
            epoch,
            redriven,
        )
        # Topics must exist with their partition counts before anything is produced again.
        await self._admin.ensure(self._topics)

    # -- retention ---------------------------------------------------------------------

    async def _maybe_purge(self) -> None:
        if time.monotonic() - self._last_purge < self._settings.outbox_purge_interval_s:
            return
        self._last_purge = time.monotonic()
        self.stats.purged += await purge_retained(
            self._db, retention_s=self._settings.outbox_retention_s
        )

    def status(self) -> dict[str, Any]:
        return {"name": self._name, **self.stats.__dict__}


__all__ = ["OutboxRelay", "RelayStats"]
