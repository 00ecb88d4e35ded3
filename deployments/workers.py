"""Ray actors for the background workers: outbox relays, Kafka consumers, the media
processor (the jobs about people are in `deployments.jobs`).

They are detached, named actors (`nova-relay-0`, `nova-consumer-<name>-0`,
`nova-media-processor`) in the `nova` namespace, restarted by Ray when their process dies
(`max_restarts=-1`). Their loop starts in the constructor and runs under `supervise`, so it
also restarts when it crashes inside a live process. All the logic lives in
`storage.outbox.relay`, `storage.kafka.runner` and `actors.media.processor`; this module
only adapts it to Ray and exports its counters as Ray metrics.
"""

from __future__ import annotations

import asyncio
import importlib
import logging
import time
from typing import Any

import ray
from ray.util import metrics

from actors.directory import shard_name
from actors.media.processor import MediaProcessor
from actors.remote import ensure_shards, shard_counts
from deployments.settings import Settings
from storage.db import Database
from storage.kafka.consumer import Consumer
from storage.kafka.dead_letters import pending_count
from storage.kafka.runner import ConsumerRunner
from storage.media_store import open_store
from storage.outbox.claims import outbox_lag
from storage.outbox.relay import OutboxRelay
from storage.redis_client import make_redis
from storage.stalls import settle_heap, watch_process
from storage.tasks import LoopHealth, supervise

log = logging.getLogger(__name__)

NAMESPACE = "nova"
_METRICS_INTERVAL_S = 5.0
_AGE_BOUNDARIES_S = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300)


class _Counters:
    """Turns a stats object's running totals into Ray counter increments."""

    def __init__(self, prefix: str, fields: dict[str, str], tag_keys: tuple[str, ...]) -> None:
        self._counters = {
            name: metrics.Counter(f"{prefix}_{name}_total", description=text, tag_keys=tag_keys)
            for name, text in fields.items()
        }
        self._last: dict[str, int] = {}

    def export(self, stats: Any, tags: dict[str, str]) -> None:
        for name, counter in self._counters.items():
            value = int(getattr(stats, name))
            delta = value - self._last.get(name, 0)
            if delta > 0:
                counter.inc(delta, tags=tags)
            self._last[name] = value


# Ray's stubs lack actor options such as max_concurrency, and `.options` on actor classes.
@ray.remote(num_cpus=0, max_restarts=-1, max_concurrency=64)  # type: ignore[call-overload]
class RelayActor:
    def __init__(self, settings: Settings, name: str) -> None:
        self._stalls = watch_process(name, settings)
        self._settings = settings
        self._name = name
        self._relay: OutboxRelay | None = None
        self._db: Database | None = None
        self._health = LoopHealth()
        self._counters = _Counters(
            "nova_relay",
            {
                "published": "Events published to Kafka",
                "resets_detected": "Broker data losses seen",
                "redriven": "Events re-driven after a broker loss",
                "errors": "Relay errors",
            },
            ("relay",),
        )
        self._pending = metrics.Gauge("nova_outbox_pending", description="Unpublished events")
        self._oldest = metrics.Gauge(
            "nova_outbox_lag_seconds", description="Oldest unpublished age"
        )
        self._dead_letters = metrics.Gauge(
            "nova_dead_letters_pending", description="Dead letters not replayed yet"
        )
        self._task = supervise(name, self._run, self._health)
        self._metrics_task = supervise(f"{name}-metrics", self._export_metrics, LoopHealth())

    async def _run(self) -> None:
        db = await Database.connect(self._settings, application_name=self._name)
        self._db = db
        self._relay = OutboxRelay(db, self._settings, name=self._name)
        settle_heap()
        try:
            await self._relay.run()
        finally:
            self._db = None
            await db.close()

    async def _export_metrics(self) -> None:
        while True:
            await asyncio.sleep(_METRICS_INTERVAL_S)
            if self._relay is not None:
                self._counters.export(self._relay.stats, {"relay": self._name})
            if self._db is not None:
                lag = await outbox_lag(self._db)
                self._pending.set(lag["pending"])
                self._oldest.set(lag["oldest_s"])
                self._dead_letters.set(await pending_count(self._db))

    async def status(self) -> dict[str, Any]:
        relay = self._relay.status() if self._relay else {"name": self._name, "state": "starting"}
        return {**relay, "crashes": self._health.crashes, "last_crash": self._health.last_error}


@ray.remote(num_cpus=0, max_restarts=-1, max_concurrency=64)  # type: ignore[call-overload]
class ConsumerActor:
    """Hosts one member of one consumer group; `consumer` is `"module:Class"`."""

    def __init__(self, settings: Settings, consumer: str, member: str) -> None:
        self._stalls = watch_process(member, settings)
        self._settings = settings
        self._consumer_path = consumer
        self._member = member
        self._runner: ConsumerRunner | None = None
        self._health = LoopHealth()
        self._counters = _Counters(
            "nova_consumer",
            {
                "applied": "Events applied",
                "duplicates": "Redeliveries absorbed by the ledger",
                "dead_lettered": "Events sent to dlq.all",
                "retries": "Failed attempts retried",
                "gap_rereads": "Fetches repeated because a partition's offsets jumped",
                "gaps_accepted": "Offset gaps still there after every re-read",
            },
            ("consumer",),
        )
        # How stale this consumer's effects are: the time from each event to its commit
        # here, and the records still waiting for this member at the broker.
        self._ages = metrics.Histogram(
            "nova_consumer_event_age_seconds",
            description="From an event's occurred_at to its commit by the consumer",
            boundaries=list(_AGE_BOUNDARIES_S),
            tag_keys=("consumer",),
        )
        self._behind = metrics.Gauge(
            "nova_consumer_records_behind",
            description="Records waiting past this member's positions at the broker",
            tag_keys=("consumer", "member"),
        )
        self._records_behind: int | None = None
        self._task = supervise(member, self._run, self._health)
        self._metrics_task = supervise(f"{member}-metrics", self._export_metrics, LoopHealth())

    async def _run(self) -> None:
        db = await Database.connect(self._settings, application_name=self._member)
        try:
            settle_heap()
            consumer = load_consumer(self._consumer_path, self._settings)
            self._runner = ConsumerRunner(consumer, db, member=self._member)
            await self._runner.run()
        finally:
            await db.close()

    async def _export_metrics(self) -> None:
        while True:
            await asyncio.sleep(_METRICS_INTERVAL_S)
            runner = self._runner
            if runner is None:
                continue
            tags = {"consumer": runner.name}
            self._counters.export(runner.stats, tags)
            for age_s in runner.take_ages():
                self._ages.observe(age_s, tags=tags)
            behind = await runner.records_behind()
            self._records_behind = behind
            if behind is not None:
                self._behind.set(behind, tags={**tags, "member": self._member})

    async def status(self) -> dict[str, Any]:
        runner = (
            self._runner.status() if self._runner else {"member": self._member, "state": "starting"}
        )
        return {
            **runner,
            "records_behind": self._records_behind,  # as of the last metrics export
            "crashes": self._health.crashes,
            "last_crash": self._health.last_error,
        }


def load_consumer(path: str, settings: Settings) -> Consumer[Any]:
    """The consumer at `"module:Class"`, built with the settings it runs with."""
    module_name, _, class_name = path.partition(":")
    cls = getattr(importlib.import_module(module_name), class_name)
    if not (isinstance(cls, type) and issubclass(cls, Consumer)):
        raise TypeError(f"{path} is not a storage.kafka.consumer.Consumer subclass")
    consumer: Consumer[Any] = cls(settings)
    return consumer


MEDIA_PROCESSOR = "nova-media-processor"


@ray.remote(num_cpus=0, max_restarts=-1)  # type: ignore[call-overload]
class MediaProcessorActor:
    """`actors.media.processor.MediaProcessor` in a detached actor; its media tasks are
    Ray tasks of their own (one CPU each), so this actor only waits on them."""

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._processor: MediaProcessor | None = None
        self._health = LoopHealth()
        self._task = supervise(MEDIA_PROCESSOR, self._run, self._health)

    async def _run(self) -> None:
        db = await Database.connect(self._settings, application_name=MEDIA_PROCESSOR)
        redis = make_redis(self._settings)
        try:
            self._processor = MediaProcessor(db, redis, self._settings)
            await self._processor.run()
        finally:
            await redis.aclose()
            await db.close()

    async def status(self) -> dict[str, Any]:
        counts = self._processor.status() if self._processor else {"state": "starting"}
        return {
            "name": MEDIA_PROCESSOR,
            **counts,
            "crashes": self._health.crashes,
            "last_crash": self._health.last_error,
        }


def ensure_media_processor(settings: Settings) -> Any:
    """Start the media processor if it is not running (safe to call again), once the media
    store has its bucket or directory."""
    store = open_store(
        settings.media_store,
        access_key=settings.media_s3_access_key,
        secret_key=settings.media_s3_secret_key,
    )
    try:
        store.ensure_bucket()
    finally:
        store.close()
    return MediaProcessorActor.options(  # type: ignore[attr-defined]
        name=MEDIA_PROCESSOR, namespace=NAMESPACE, lifetime="detached", get_if_exists=True
    ).remote(settings)


def relay_name(index: int) -> str:
    return f"nova-relay-{index}"


def consumer_member_name(consumer: str, index: int) -> str:
    return f"nova-consumer-{consumer.rpartition(':')[2].lower()}-{index}"


def stop_worker(name: str, *, timeout_s: float = 30) -> None:
    """Kill a named worker and wait until its name is free (a new one may then start)."""
    try:
        handle = ray.get_actor(name, namespace=NAMESPACE)
    except ValueError:
        return
    ray.kill(handle, no_restart=True)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            ray.get_actor(name, namespace=NAMESPACE)
        except ValueError:
            return
        time.sleep(0.1)
    raise RuntimeError(f"worker {name} did not stop within {timeout_s:.0f}s")


def replace_relays(settings: Settings) -> list[Any]:
    """Restart the relays on the code being deployed. Nothing is lost meanwhile: events
    wait in the outbox, and a batch cut off mid-way is published again and deduplicated."""
    for i in range(settings.relay_count):
        stop_worker(relay_name(i))
    # Relays beyond a lowered NOVA_RELAY_COUNT stop too.
    for i in range(settings.relay_count, 16):
        stop_worker(relay_name(i))
    return ensure_relays(settings)


def replace_shards(settings: Settings, *, start_timeout_s: float = 60) -> None:
    """Restart the running shards on the code being deployed, one at a time: each new
    shard runs before the next one stops; shards beyond a lowered count stop, and missing
    ones start. Callers retry a shard that is gone (`actors.shard_caller`), but a call that
    reaches a shard still starting waits only its call timeout (5 s): stopped and started
    all at once, beside the deploy's new Serve replicas, the shards took longer than that
    to start on 2 cores, and likes answered UNAVAILABLE while `nova deploy` ran."""
    counts = shard_counts(settings)
    names = [shard_name(kind, i) for kind, count in counts.items() for i in range(count)]
    for name in [n for n in names if _exists(n)]:
        stop_worker(name)
        ensure_shards(settings)  # starts the one just stopped (and any missing)
        shard: Any = ray.get_actor(name, namespace=NAMESPACE)
        ray.get(shard.__ray_ready__.remote(), timeout=start_timeout_s)  # its constructor ran
    for kind, count in counts.items():
        for index in range(count, 16):
            stop_worker(shard_name(kind, index))
    ensure_shards(settings)


def _exists(name: str) -> bool:
    try:
        ray.get_actor(name, namespace=NAMESPACE)
    except ValueError:
        return False
    return True


def ensure_relays(settings: Settings) -> list[Any]:
    """Start the relays if they are not running (safe to call again)."""
    return [
        RelayActor.options(  # type: ignore[attr-defined]
            name=relay_name(i), namespace=NAMESPACE, lifetime="detached", get_if_exists=True
        ).remote(settings, relay_name(i))
        for i in range(settings.relay_count)
    ]


def ensure_consumer(settings: Settings, consumer: str, *, members: int = 1) -> list[Any]:
    """Start `members` members of a consumer group (`"module:Class"`), if not running."""
    return [
        ConsumerActor.options(  # type: ignore[attr-defined]
            name=consumer_member_name(consumer, i),
            namespace=NAMESPACE,
            lifetime="detached",
            get_if_exists=True,
        ).remote(settings, consumer, consumer_member_name(consumer, i))
        for i in range(members)
    ]
