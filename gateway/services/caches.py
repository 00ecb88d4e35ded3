"""Per-replica caches of hot, rarely-changing records, dropped by Redis pub/sub.

A gateway replica keeps users, posts and each viewer's block list in memory so that most
reads need no round trip for them. Whoever changes one commits first, then drops its own
copy and publishes the key on the cache's channel; every replica drops its copy when the
message arrives (milliseconds later). A TTL bounds what a lost message can cost, and when
the pub/sub connection is lost and restored every cache starts clean, since messages may
have gone by meanwhile.

A fill racing an invalidation must not land: a reader that loaded the old value before a
writer's message arrived would store it after. Each key has a generation, bumped by
`forget`, and the cache an epoch, bumped by `clear`; a fill only lands if both are what
the reader saw before loading.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Hashable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

import redis.asyncio as aioredis
from redis.exceptions import RedisError

log = logging.getLogger(__name__)

# Published instead of a key: drop every entry of the channel's caches.
EVERYTHING = "*"

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


@dataclass
class CacheStats:
    hits: int = 0
    misses: int = 0
    invalidations: int = 0


class LocalCache(Generic[K, V]):
    """An LRU with a TTL and per-key generations. Values are never None (None = miss).

    Build through `Invalidations.cache`, which ties it to its channel.
    """

    def __init__(
        self, channel: str, parse_key: Callable[[str], K], *, max_entries: int, ttl_s: float
    ) -> None:
        self.channel = channel
        self.parse_key = parse_key
        self._max_entries = max_entries
        self._ttl_s = ttl_s
        self._entries: OrderedDict[K, tuple[float, V]] = OrderedDict()
        self._generations: dict[K, int] = {}
        self._epoch = 0
        self.stats = CacheStats()

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, key: K) -> V | None:
        entry = self._entries.get(key)
        if entry is None or entry[0] <= time.monotonic():
            self.stats.misses += 1
            return None
        self._entries.move_to_end(key)
        self.stats.hits += 1
        return entry[1]

    def generation(self, key: K) -> tuple[int, int]:
        """Read before loading `key`; hand to `put` with what was loaded."""
        return self._epoch, self._generations.get(key, 0)

    def put(self, key: K, value: V, generation: tuple[int, int]) -> None:
        """Store unless `key` was invalidated (or the cache cleared) since `generation`."""
        if self.generation(key) != generation:
            return
        self._entries[key] = (time.monotonic() + self._ttl_s, value)
        self._entries.move_to_end(key)
        while len(self._entries) > self._max_entries:
            evicted, _ = self._entries.popitem(last=False)
            self._generations.pop(evicted, None)

    def forget(self, key: K) -> None:
        self._entries.pop(key, None)
        self._generations[key] = self._generations.get(key, 0) + 1
        self.stats.invalidations += 1
        # Keys invalidated while not cached keep a generation too; bound them.
        if len(self._generations) > 2 * self._max_entries:
            self.clear()

    def clear(self) -> None:
        """Drop everything, fills in flight included (even of keys not cached)."""
        self._epoch += 1
        self._entries.clear()
        self._generations.clear()

    async def load(self, key: K, fetch: Callable[[K], Awaitable[V]]) -> V:
        """The cached value, or `fetch(key)` stored for next time."""
        cached = self.get(key)
        if cached is not None:
            return cached
        generation = self.generation(key)
        value = await fetch(key)
        self.put(key, value, generation)
        return value

    async def load_many(
        self, keys: Sequence[K], fetch: Callable[[list[K]], Awaitable[dict[K, V]]]
    ) -> dict[K, V]:
        """Values for `keys` (absent: unknown to `fetch`), one `fetch` for all misses."""
        found: dict[K, V] = {}
        missing: list[K] = []
        for key in dict.fromkeys(keys):
            cached = self.get(key)
            if cached is None:
                missing.append(key)
            else:
                found[key] = cached
        if missing:
            generations = [self.generation(key) for key in missing]
            loaded = await fetch(missing)
            for key, generation in zip(missing, generations, strict=True):
                value = loaded.get(key)
                if value is not None:
                    found[key] = value
                    self.put(key, value, generation)
        return found


class Invalidations:
    """One pub/sub connection per replica carrying every local cache's invalidations.

    `start()` subscribes (and waits up to 5 s for it); `close()` stops listening. A process
    that only writes (the CLI) uses `changed` without starting.
    """

    def __init__(self, redis: aioredis.Redis) -> None:
        self._redis = redis
        self._caches: dict[str, list[LocalCache[Any, Any]]] = {}
        self._listener: asyncio.Task[None] | None = None
        self._subscribed = asyncio.Event()
        self.lost = 0  # times the connection was lost (every cache was cleared)

    def cache(
        self, channel: str, parse_key: Callable[[str], K], *, max_entries: int, ttl_s: float
    ) -> LocalCache[K, V]:
        """A new cache whose keys are dropped on messages on `channel` (call before start)."""
        cache: LocalCache[K, V] = LocalCache(
            channel, parse_key, max_entries=max_entries, ttl_s=ttl_s
        )
        self._caches.setdefault(channel, []).append(cache)
        return cache

    async def changed(self, cache: LocalCache[K, Any], keys: Iterable[K]) -> None:
        """After a committed change: drop the local copies, then tell every replica."""
        keys = list(keys)
        for key in keys:
            cache.forget(key)
        await self._publish(cache.channel, [str(key) for key in keys])

    async def changed_all(self, cache: LocalCache[Any, Any]) -> None:
        """After a committed change that affects every entry: every replica drops them."""
        cache.clear()
        await self._publish(cache.channel, [EVERYTHING])

    async def _publish(self, channel: str, messages: list[str]) -> None:
        try:
            for message in messages:
                await self._redis.publish(channel, message)
        except (RedisError, OSError, TimeoutError) as exc:
            # Other replicas serve their copy until its TTL runs out.
            log.warning("could not publish invalidations on %s: %s", channel, exc)

    async def start(self) -> None:
        if not self._caches or self._listener is not None:
            return
        self._listener = asyncio.create_task(self._listen(), name="cache-invalidations")
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._subscribed.wait(), 5)

    async def close(self) -> None:
        if self._listener is not None:
            self._listener.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._listener

    def _clear_all(self) -> None:
        for caches in self._caches.values():
            for cache in caches:
                cache.clear()

    def _deliver(self, channel: bytes, data: bytes) -> None:
        for cache in self._caches.get(channel.decode(), ()):
            if data == EVERYTHING.encode():
                cache.clear()
                continue
            with contextlib.suppress(ValueError):
                cache.forget(cache.parse_key(data.decode()))

    async def _listen(self) -> None:
        """Follow invalidations for as long as the replica lives, reconnecting after errors."""
        delay_s = 0.1
        while True:
            pubsub = self._redis.pubsub(ignore_subscribe_messages=True)
            try:
                await pubsub.subscribe(*self._caches)
                # While disconnected we may have missed messages: start clean.
                self._clear_all()
                self._subscribed.set()
                delay_s = 0.1
                while True:
                    message: dict[str, Any] | None = await pubsub.get_message(timeout=1.0)
                    if message is not None and message.get("type") == "message":
                        self._deliver(message["channel"], message["data"])
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                self.lost += 1
                self._clear_all()
                log.warning("cache invalidation feed lost (%s); reconnecting", exc)
                await asyncio.sleep(delay_s)
                delay_s = min(delay_s * 2, 5.0)
            finally:
                with contextlib.suppress(Exception):
                    await pubsub.aclose()  # type: ignore[no-untyped-call]
