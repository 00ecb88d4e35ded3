"""The Ray side of the shards: actor classes that delegate to the plain shard classes.

Shards are detached named actors (`counter-shard-0`, ...) in the `nova` namespace,
restarted by Ray when their process dies (`max_restarts=-1`); a restarted shard starts
empty and re-activates keys from PostgreSQL as they are used. Calls in flight when a shard
dies fail, and callers retry what is idempotent (see `actors.counter_client`).
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from typing import Any

import ray
from ray.util import metrics

from actors.chat_shard import ChatShard
from actors.counter_shard import CounterShard, LikeResult
from actors.directory import shard_name
from actors.read_channel import Address, ReadServer
from actors.settings import ActorSettings
from actors.timeline_shard import TimelineShard
from storage.db import Database
from storage.errors import NovaError
from storage.redis_client import make_redis
from storage.repositories.chat import Message
from storage.repositories.counters import CounterRow, Kind
from storage.repositories.timelines import Entry, pack_entries, unpack_page_request
from storage.stalls import settle_heap, watch_process
from storage.tasks import LoopHealth, supervise

log = logging.getLogger(__name__)

NAMESPACE = "nova"
COUNTER = "counter"
TIMELINE = "timeline"
CHAT = "chat"
_UPKEEP_INTERVAL_S = 5.0


@ray.remote(num_cpus=0, max_restarts=-1, max_concurrency=1000)  # type: ignore[call-overload]
class CounterShardActor:
    def __init__(self, settings: ActorSettings, index: int) -> None:
        self._settings = settings
        self._name = shard_name(COUNTER, index)
        self._stalls = watch_process(self._name, settings)
        self._tags = {"shard": self._name}
        self._started: asyncio.Task[CounterShard] = asyncio.get_running_loop().create_task(
            self._start()
        )
        self._health = LoopHealth()
        self._upkeep = supervise(f"{self._name}-upkeep", self._maintain, self._health)
        self._queue_depth = metrics.Gauge(
            "nova_counter_shard_queue_depth", "Likes waiting for a commit", tag_keys=("shard",)
        )
        self._active = metrics.Gauge(
            "nova_counter_shard_active_keys", "Counter keys in memory", tag_keys=("shard",)
        )
        self._batch = metrics.Histogram(
            "nova_counter_shard_batch_size",
            "Likes per group commit",
            boundaries=[1, 2, 5, 10, 20, 50, 100, 200, 500, 1000],
            tag_keys=("shard",),
        )

    async def _start(self) -> CounterShard:
        db = await Database.connect(self._settings, application_name=self._name)
        shard = CounterShard(
            db,
            max_batch=self._settings.counter_max_batch,
            idle_ttl_s=self._settings.counter_idle_ttl_s,
            refresh_s=self._settings.counter_refresh_s,
            on_commit=lambda size: self._batch.observe(size, tags=self._tags),
        )
        settle_heap()
        return shard

    async def _shard(self) -> CounterShard:
        if self._started.done() and self._started.exception() is not None:
            # PostgreSQL was down when the shard started: try again now.
            self._started = asyncio.get_running_loop().create_task(self._start())
        return await asyncio.shield(self._started)

    async def like_many(
        self, requests: list[tuple[uuid.UUID, uuid.UUID, bool]]
    ) -> list[LikeResult | NovaError]:
        """Likes from one client tick: all queued at once, answered together; a failure
        is returned in its own slot (Nova errors only; anything else fails the call)."""
        shard = await self._shard()
        outcomes = await asyncio.gather(
            *(shard.like(post, user, liked) for post, user, liked in requests),
            return_exceptions=True,
        )
        self._queue_depth.set(shard.queue_depth, tags=self._tags)
        for outcome in outcomes:
            if isinstance(outcome, BaseException) and not isinstance(outcome, NovaError):
                raise outcome
        return [o for o in outcomes if isinstance(o, LikeResult | NovaError)]

    async def counts(self, kind: Kind, ids: list[uuid.UUID]) -> dict[uuid.UUID, CounterRow]:
        return await (await self._shard()).counts(kind, ids)

    async def observe(self, rows: list[CounterRow]) -> None:
        (await self._shard()).observe(rows)

    async def forget_post(self, post_id: uuid.UUID) -> None:
        (await self._shard()).forget_post(post_id)

    async def status(self) -> dict[str, Any]:
        """Counter keys held and likes waiting for a commit (`nova status`)."""
        if not self._started.done():
            return _starting(self._name, COUNTER)
        shard = await self._shard()
        return {
            "name": self._name,
            "kind": COUNTER,
            "keys": shard.active_keys,
            "queue_depth": shard.queue_depth,
            **vars(shard.stats),
            "upkeep_crashes": self._health.crashes,
        }

    async def _maintain(self) -> None:
        while True:
            await asyncio.sleep(_UPKEEP_INTERVAL_S)
            shard = await self._shard()
            await shard.maintain()
            self._active.set(shard.active_keys, tags=self._tags)
            self._queue_depth.set(shard.queue_depth, tags=self._tags)


@ray.remote(num_cpus=0, max_restarts=-1, max_concurrency=1000)  # type: ignore[call-overload]
class TimelineShardActor:
    def __init__(self, settings: ActorSettings, index: int) -> None:
        self._settings = settings
        self._name = shard_name(TIMELINE, index)
        self._stalls = watch_process(self._name, settings)
        self._tags = {"shard": self._name}
        self._reads = ReadServer(self._read)
        self._started: asyncio.Task[TimelineShard] = asyncio.get_running_loop().create_task(
            self._start()
        )
        self._in_flight = 0
        self._health = LoopHealth()
        self._upkeep = supervise(f"{self._name}-upkeep", self._maintain, self._health)
        self._active = metrics.Gauge(
            "nova_timeline_shard_active_users", "Timelines in memory", tag_keys=("shard",)
        )
        self._entries = metrics.Gauge(
            "nova_timeline_shard_entries", "Timeline entries in memory", tag_keys=("shard",)
        )
        self._queue = metrics.Gauge(
            "nova_timeline_shard_queue_depth", "Calls in progress", tag_keys=("shard",)
        )
        self._loads = metrics.Counter(
            "nova_timeline_loads_total",
            "Timeline activations by source (memory, redis, postgresql)",
            tag_keys=("shard", "source"),
        )
        self._reported = {"memory": 0, "redis": 0, "postgresql": 0}

    async def _start(self) -> TimelineShard:
        settings = self._settings
        db = await Database.connect(settings, application_name=self._name)
        inactive_s = settings.inactive_after_days * 86_400
        shard = TimelineShard(
            db,
            make_redis(settings),
            capacity=settings.timeline_capacity,
            max_followers=settings.fanout_max_followers,
            # Gone a little before fan-out starts skipping the owner (see the module doc).
            redis_ttl_s=max(3_600, inactive_s - 7_200),
            idle_ttl_s=settings.timeline_idle_ttl_s,
        )
        settle_heap()
        if settings.timeline_direct_reads and self._reads.address is None:
            try:
                await self._reads.start(ray.util.get_node_ip_address())  # type: ignore[no-untyped-call]
            except OSError as exc:  # reads then go through Ray calls
                log.warning("%s: no direct read channel: %s", self._name, exc)
        return shard

    async def read_address(self) -> Address | None:
        """Where to read pages without a Ray call (`actors.read_channel`); None: use `page`."""
        await self._shard()
        return self._reads.address

    async def _read(self, request: bytes) -> bytes:
        """A page read on the direct channel: the same as `page`."""
        user_id, before, limit = unpack_page_request(request)
        return await self.page(user_id, before, limit)

    async def _shard(self) -> TimelineShard:
        if self._started.done() and self._started.exception() is not None:
            self._started = asyncio.get_running_loop().create_task(self._start())
        return await asyncio.shield(self._started)

    async def page(self, user_id: uuid.UUID, before: Entry | None, limit: int) -> bytes:
        """The page packed (`storage.repositories.timelines.pack_entries`): pickling a
        ranked feed's 300 entries cost more than the rest of the call."""
        shard = await self._shard()
        self._in_flight += 1
        try:
            return pack_entries(await shard.page(user_id, before, limit))
        finally:
            self._in_flight -= 1

    async def push(self, user_ids: list[uuid.UUID], entry: Entry) -> int:
        shard = await self._shard()
        self._in_flight += 1
        try:
            return await shard.push(user_ids, entry)
        finally:
            self._in_flight -= 1

    async def remove(self, user_ids: list[uuid.UUID], author_ids: frozenset[uuid.UUID]) -> None:
        await (await self._shard()).remove(user_ids, author_ids)

    async def remove_post(
        self, user_ids: list[uuid.UUID], post_id: uuid.UUID, author_id: uuid.UUID
    ) -> None:
        await (await self._shard()).remove_post(user_ids, post_id, author_id)

    async def drop(self, user_ids: list[uuid.UUID]) -> None:
        await (await self._shard()).drop(user_ids)

    async def backfill(self, user_id: uuid.UUID, entries: list[Entry]) -> None:
        await (await self._shard()).backfill(user_id, entries)

    async def status(self) -> dict[str, Any]:
        """Timelines held and page reads and pushes in progress (`nova status`)."""
        if not self._started.done():
            return _starting(self._name, TIMELINE)
        shard = await self._shard()
        return {
            "name": self._name,
            "kind": TIMELINE,
            "keys": shard.active_users,
            "queue_depth": self._in_flight,
            "entries": sum(shard.sizes()),
            **vars(shard.stats),
            "upkeep_crashes": self._health.crashes,
        }

    async def _maintain(self) -> None:
        while True:
            await asyncio.sleep(_UPKEEP_INTERVAL_S)
            shard = await self._shard()
            shard.evict_idle()
            self._active.set(shard.active_users, tags=self._tags)
            self._entries.set(sum(shard.sizes()), tags=self._tags)
            self._queue.set(self._in_flight, tags=self._tags)
            totals = {
                "memory": shard.stats.memory_hits,
                "redis": shard.stats.redis_loads,
                "postgresql": shard.stats.rebuilds,
            }
            for source, total in totals.items():
                if total > self._reported[source]:
                    self._loads.inc(
                        total - self._reported[source], tags={**self._tags, "source": source}
                    )
                    self._reported[source] = total


@ray.remote(num_cpus=0, max_restarts=-1, max_concurrency=1000)  # type: ignore[call-overload]
class ChatShardActor:
    def __init__(self, settings: ActorSettings, index: int) -> None:
        self._settings = settings
        self._name = shard_name(CHAT, index)
        self._stalls = watch_process(self._name, settings)
        self._tags = {"shard": self._name}
        self._started: asyncio.Task[ChatShard] = asyncio.get_running_loop().create_task(
            self._start()
        )
        self._health = LoopHealth()
        self._upkeep = supervise(f"{self._name}-upkeep", self._maintain, self._health)
        self._rooms = metrics.Gauge(
            "nova_chat_shard_active_rooms", "Chat rooms in memory", tag_keys=("shard",)
        )
        self._sent = metrics.Counter(
            "nova_chat_messages_total", "Messages committed", tag_keys=("shard",)
        )
        self._reported = 0

    async def _start(self) -> ChatShard:
        db = await Database.connect(self._settings, application_name=self._name)
        shard = ChatShard(db, make_redis(self._settings))
        settle_heap()
        return shard

    async def _shard(self) -> ChatShard:
        if self._started.done() and self._started.exception() is not None:
            self._started = asyncio.get_running_loop().create_task(self._start())
        return await asyncio.shield(self._started)

    async def send(
        self,
        room_id: uuid.UUID,
        sender: uuid.UUID,
        text: str,
        client_message_id: str,
        media_ids: tuple[uuid.UUID, ...] = (),
    ) -> Message:
        shard = await self._shard()
        return await shard.send(room_id, sender, text, client_message_id, media_ids)

    async def delete(
        self, room_id: uuid.UUID, message_id: uuid.UUID, sender: uuid.UUID, moderator: bool = False
    ) -> Message:
        return await (await self._shard()).delete(room_id, message_id, sender, moderator)

    async def after(
        self, room_id: uuid.UUID, user_id: uuid.UUID, after_seq: int, limit: int
    ) -> list[Message]:
        return await (await self._shard()).after(room_id, user_id, after_seq, limit)

    async def history(
        self, room_id: uuid.UUID, user_id: uuid.UUID, before_seq: int | None, limit: int
    ) -> list[Message]:
        return await (await self._shard()).history(room_id, user_id, before_seq, limit)

    async def member_room(self, room_id: uuid.UUID, user_id: uuid.UUID) -> tuple[str, int]:
        return await (await self._shard()).member_room(room_id, user_id)

    async def members(self, room_id: uuid.UUID, user_id: uuid.UUID) -> list[uuid.UUID]:
        return await (await self._shard()).members(room_id, user_id)

    async def add_members(
        self, room_id: uuid.UUID, actor: uuid.UUID, user_ids: list[uuid.UUID]
    ) -> list[uuid.UUID]:
        return await (await self._shard()).add_members(room_id, actor, user_ids)

    async def leave(self, room_id: uuid.UUID, user_id: uuid.UUID) -> None:
        await (await self._shard()).leave(room_id, user_id)

    async def forget_account(self, room_ids: list[uuid.UUID], user_id: uuid.UUID) -> int:
        return (await self._shard()).forget_account(room_ids, user_id)

    async def status(self) -> dict[str, Any]:
        """Rooms held and sends waiting for a group commit (`nova status`)."""
        if not self._started.done():
            return _starting(self._name, CHAT)
        shard = await self._shard()
        return {
            "name": self._name,
            "kind": CHAT,
            "keys": shard.active_rooms,
            "queue_depth": shard.queue_depth,
            **vars(shard.stats),
            "upkeep_crashes": self._health.crashes,
        }

    async def _maintain(self) -> None:
        while True:
            await asyncio.sleep(_UPKEEP_INTERVAL_S)
            shard = await self._shard()
            shard.evict_idle()
            self._rooms.set(shard.active_rooms, tags=self._tags)
            if shard.stats.messages > self._reported:
                self._sent.inc(shard.stats.messages - self._reported, tags=self._tags)
                self._reported = shard.stats.messages


def _starting(name: str, kind: str) -> dict[str, Any]:
    """A shard still connecting to PostgreSQL holds nothing yet."""
    return {"name": name, "kind": kind, "state": "starting"}


def ensure_shards(settings: ActorSettings) -> None:
    """Start every shard that is not running (safe to call again): counter, timeline and
    chat shards, as many of each as the settings say."""
    classes: dict[str, Any] = {
        COUNTER: CounterShardActor,
        TIMELINE: TimelineShardActor,
        CHAT: ChatShardActor,
    }
    for kind, count in shard_counts(settings).items():
        for index in range(count):
            classes[kind].options(
                name=shard_name(kind, index),
                namespace=NAMESPACE,
                lifetime="detached",
                get_if_exists=True,
                # Evenly over the nodes, restarts too (Ray puts a 0-CPU actor on a random node).
                scheduling_strategy="SPREAD",
            ).remote(settings, index)


def shard_counts(settings: ActorSettings) -> dict[str, int]:
    return {
        COUNTER: settings.counter_shards,
        TIMELINE: settings.timeline_shards,
        CHAT: settings.chat_shards,
    }
