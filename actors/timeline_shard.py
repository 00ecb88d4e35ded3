"""TimelineShard: home timelines held in memory, mirrored to Redis, rebuilt from PostgreSQL.

Each user routed to a shard has, once active, their newest `capacity` entries in memory,
so a feed page is a slice. Every change is written through to the user's Redis sorted set
(`nova:tl:<user>`, score = microseconds since the epoch), so a restarted shard or a user
coming back gets their timeline from Redis in one round trip. When Redis has nothing (a
flush, a first visit, a user who was inactive), the timeline is rebuilt from PostgreSQL.

Redis sets carry a sentinel member at score -inf, so an empty timeline is still "known".
Fan-out writes only to sets that exist: writing one post into a missing set would create
a timeline that looks complete and is not. Sets expire a little before their owner counts
as inactive, so a user that fan-out started skipping has no stale set left to trust.

Plain Python, with Redis, PostgreSQL and the clock injected; `actors.remote` wraps it.
"""

from __future__ import annotations

import asyncio
import bisect
import time
import uuid
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import cast

import redis.asyncio as aioredis

from storage.db import Database
from storage.errors import classify
from storage.repositories.timelines import Entry, rebuild

SENTINEL = "!"
FEED_CHANNEL = "nova:feed:{}"
_KEY = "nova:tl:{}"

# KEYS: timeline keys. ARGV: score, member, capacity, ttl. Only existing sets are written.
_PUSH = """
local written = 0
for _, key in ipairs(KEYS) do
  if redis.call('EXISTS', key) == 1 then
    redis.call('ZADD', key, ARGV[1], ARGV[2])
    redis.call('ZREMRANGEBYRANK', key, 1, -(tonumber(ARGV[3]) + 2))
    redis.call('EXPIRE', key, ARGV[4])
    written = written + 1
  end
end
return written
"""


def timeline_key(user_id: uuid.UUID) -> str:
    return _KEY.format(user_id)


def _score(created_at: datetime) -> int:
    delta = created_at - datetime(1970, 1, 1, tzinfo=UTC)
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


def _member(entry: Entry) -> str:
    return f"{entry.post_id}:{entry.author_id}"


def _from_redis(member: bytes, score: float) -> Entry:
    post, _, author = member.decode().partition(":")
    micros = int(score)
    when = datetime.fromtimestamp(micros // 1_000_000, UTC).replace(microsecond=micros % 1_000_000)
    return Entry(when, uuid.UUID(post), uuid.UUID(author))


@dataclass
class TimelineStats:
    memory_hits: int = 0
    redis_loads: int = 0
    rebuilds: int = 0
    pushes: int = 0
    evictions: int = 0


class _Timeline:
    """Entries sorted oldest first (so `bisect` works); the newest are at the end."""

    def __init__(self, entries: Iterable[Entry], capacity: int, now: float) -> None:
        self.entries = sorted(set(entries))[-capacity:]
        self.ids = {e.post_id for e in self.entries}
        self.used_at = now

    def add(self, entry: Entry, capacity: int) -> bool:
        if entry.post_id in self.ids:
            return False
        bisect.insort(self.entries, entry)
        self.ids.add(entry.post_id)
        while len(self.entries) > capacity:
            self.ids.discard(self.entries.pop(0).post_id)
        return True

    def remove(self, keep: Callable[[Entry], bool]) -> list[Entry]:
        gone = [e for e in self.entries if not keep(e)]
        if gone:
            self.entries = [e for e in self.entries if keep(e)]
            self.ids = {e.post_id for e in self.entries}
        return gone

    def page(self, before: Entry | None, limit: int) -> list[Entry]:
        """Up to `limit` entries older than `before`, newest first."""
        end = len(self.entries) if before is None else bisect.bisect_left(self.entries, before)
        return list(reversed(self.entries[max(0, end - limit) : end]))


class TimelineShard:
    def __init__(
        self,
        db: Database,
        redis: aioredis.Redis,
        *,
        capacity: int = 800,
        max_followers: int = 10_000,
        redis_ttl_s: int = 29 * 86_400,
        idle_ttl_s: float = 600.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._db = db
        self._redis = redis
        self._capacity = capacity
        self._max_followers = max_followers
        self._redis_ttl_s = redis_ttl_s
        self._idle_ttl_s = idle_ttl_s
        self._clock = clock
        self._timelines: dict[uuid.UUID, _Timeline] = {}
        self._activating: dict[uuid.UUID, asyncio.Future[_Timeline]] = {}
        self._push_script = redis.register_script(_PUSH)
        self.stats = TimelineStats()

    @property
    def active_users(self) -> int:
        return len(self._timelines)

    def sizes(self) -> list[int]:
        return [len(t.entries) for t in self._timelines.values()]

    # -- reads -------------------------------------------------------------------------

    async def page(self, user_id: uuid.UUID, before: Entry | None, limit: int) -> list[Entry]:
        """The user's newest entries older than `before`, newest first."""
        timeline = await self._activate(user_id)
        timeline.used_at = self._clock()
        return timeline.page(before, limit)

    async def _activate(self, user_id: uuid.UUID) -> _Timeline:
        timeline = self._timelines.get(user_id)
        if timeline is not None:
            self.stats.memory_hits += 1
            return timeline
        pending = self._activating.get(user_id)
        if pending is not None:
            return await asyncio.shield(pending)
        future: asyncio.Future[_Timeline] = asyncio.get_running_loop().create_future()
        self._activating[user_id] = future
        try:
            timeline = _Timeline(await self._load(user_id), self._capacity, self._clock())
            self._timelines[user_id] = timeline
            future.set_result(timeline)
            return timeline
        except BaseException as exc:
            future.set_exception(exc)
            future.exception()  # retrieved: callers that awaited it raise it themselves
            raise
        finally:
            del self._activating[user_id]

    async def _load(self, user_id: uuid.UUID) -> list[Entry]:
        key = timeline_key(user_id)
        try:
            raw = cast(
                list[tuple[bytes, float]],
                await self._redis.zrevrangebyscore(key, "+inf", "(-inf", withscores=True),
            )
            exists = bool(raw) or bool(await self._redis.exists(key))
        except Exception as exc:
            raise classify(exc, "redis") from exc
        if exists:
            self.stats.redis_loads += 1
            return [_from_redis(member, score) for member, score in raw]
        async with self._db.connection() as conn:
            entries = await rebuild(
                conn, user_id, capacity=self._capacity, max_followers=self._max_followers
            )
        self.stats.rebuilds += 1
        await self._store(user_id, entries)
        return entries

    async def _store(self, user_id: uuid.UUID, entries: Sequence[Entry]) -> None:
        key = timeline_key(user_id)
        mapping: dict[str, float] = {SENTINEL: float("-inf")}
        mapping.update({_member(e): _score(e.created_at) for e in entries})
        try:
            async with self._redis.pipeline(transaction=True) as pipe:
                pipe.delete(key)
                pipe.zadd(key, mapping)
                pipe.expire(key, self._redis_ttl_s)
                await pipe.execute()
        except Exception as exc:
            raise classify(exc, "redis") from exc

    # -- writes ------------------------------------------------------------------------

    async def push(self, user_ids: Sequence[uuid.UUID], entry: Entry) -> int:
        """Add a new post to each user's timeline and announce it on their feed channel;
        returns how many of the timelines were in memory."""
        return await self._add(user_ids, [entry], publish=True)

    async def _add(
        self, user_ids: Sequence[uuid.UUID], entries: Sequence[Entry], *, publish: bool
    ) -> int:
        await self._await_activations(user_ids)
        in_memory = 0
        for user_id in user_ids:
            timeline = self._timelines.get(user_id)
            if timeline is not None:
                for entry in entries:
                    timeline.add(entry, self._capacity)
                in_memory += 1
        keys = [timeline_key(u) for u in user_ids]
        try:
            async with self._redis.pipeline(transaction=False) as pipe:
                for entry in entries:
                    await self._push_script(
                        keys=keys,
                        args=[
                            _score(entry.created_at),
                            _member(entry),
                            self._capacity,
                            self._redis_ttl_s,
                        ],
                        client=pipe,
                    )
                    if publish:
                        for user_id in user_ids:
                            pipe.publish(FEED_CHANNEL.format(user_id), str(entry.post_id))
                await pipe.execute()
        except Exception as exc:
            raise classify(exc, "redis") from exc
        self.stats.pushes += len(user_ids) * len(entries)
        return in_memory

    async def _await_activations(self, user_ids: Sequence[uuid.UUID]) -> None:
        """A user being activated now is changed after the activation's snapshot."""
        waiting = [self._activating[u] for u in user_ids if u in self._activating]
        if waiting:
            await asyncio.gather(*(asyncio.shield(w) for w in waiting), return_exceptions=True)

    async def remove(self, user_ids: Sequence[uuid.UUID], author_ids: frozenset[uuid.UUID]) -> None:
        """Drop entries by these authors from each user's timeline."""

        def keep(entry: Entry) -> bool:
            return entry.author_id not in author_ids

        await self._await_activations(user_ids)
        members: dict[uuid.UUID, list[str]] = {}
        for user_id in user_ids:
            timeline = self._timelines.get(user_id)
            if timeline is not None:
                members[user_id] = [_member(e) for e in timeline.remove(keep)]
        cold = [u for u in user_ids if u not in self._timelines]
        try:
            if cold:
                # Users not in memory: read their sets to find the members to drop.
                async with self._redis.pipeline(transaction=False) as pipe:
                    for user_id in cold:
                        pipe.zrange(timeline_key(user_id), 0, -1)
                    for user_id, raw in zip(cold, await pipe.execute(), strict=True):
                        members[user_id] = [
                            m.decode()
                            for m in raw
                            if m != SENTINEL.encode() and not keep(_from_redis(m, 0))
                        ]
            async with self._redis.pipeline(transaction=False) as pipe:
                for user_id, gone in members.items():
                    if gone:
                        pipe.zrem(timeline_key(user_id), *gone)
                await pipe.execute()
        except Exception as exc:
            raise classify(exc, "redis") from exc

    async def remove_post(
        self, user_ids: Sequence[uuid.UUID], post_id: uuid.UUID, author_id: uuid.UUID
    ) -> None:
        """Drop one post from each user's timeline. Its member is known (`post:author`),
        so no timeline is read to find it: a deleted or removed post leaves the timelines
        of a large audience as fast as it entered them."""
        await self._await_activations(user_ids)
        for user_id in user_ids:
            timeline = self._timelines.get(user_id)
            if timeline is not None:
                timeline.remove(lambda entry: entry.post_id != post_id)
        member = f"{post_id}:{author_id}"
        try:
            async with self._redis.pipeline(transaction=False) as pipe:
                for user_id in user_ids:
                    pipe.zrem(timeline_key(user_id), member)
                await pipe.execute()
        except Exception as exc:
            raise classify(exc, "redis") from exc

    async def drop(self, user_ids: Sequence[uuid.UUID]) -> None:
        """Delete these users' timelines, in memory and in Redis (their accounts are gone)."""
        await self._await_activations(user_ids)
        for user_id in user_ids:
            self._timelines.pop(user_id, None)
        try:
            await self._redis.delete(*(timeline_key(u) for u in user_ids))
        except Exception as exc:
            raise classify(exc, "redis") from exc

    async def backfill(self, user_id: uuid.UUID, entries: Sequence[Entry]) -> None:
        """Add older posts to one timeline (a new follow brings the followee's) in one
        round trip; they are not new, so the feed channel is not told."""
        if entries:
            await self._add([user_id], entries, publish=False)

    # -- upkeep ------------------------------------------------------------------------

    def evict_idle(self) -> int:
        now = self._clock()
        idle = [u for u, t in self._timelines.items() if now - t.used_at > self._idle_ttl_s]
        for user_id in idle:
            del self._timelines[user_id]
        self.stats.evictions += len(idle)
        return len(idle)
