"""Users for resolvers: a per-request DataLoader over a two-level cache.

Lookups go local LRU → Redis (one MGET for the whole batch) → PostgreSQL (one query for
what is left). Every change to a user bumps `users.version`; the writer then stores the
new record in Redis and publishes its id on `nova:users:changed`, and every replica drops
its local copy when the message arrives (within milliseconds; `gateway.services.caches`).

Two races are closed by versions and generations rather than by luck:
* Redis: a reader that loaded an old row can write it back after the writer's update.
  `_SET_IF_NEWER` only replaces a cached record with a higher version.
* Local: a batch that started before an invalidation could store what it read after it
  (`gateway.services.caches.LocalCache` generations).
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import redis.asyncio as aioredis
from redis.exceptions import RedisError
from strawberry.dataloader import DataLoader

from gateway.services.caches import Invalidations, LocalCache
from storage.db import Database
from storage.repositories.users import UserRecord, UserStore

log = logging.getLogger(__name__)

CHANNEL = "nova:users:changed"
_KEY = "nova:user:{}"

# KEYS[1] = user key; ARGV = record JSON, version, ttl seconds.
_SET_IF_NEWER = """
local current = redis.call('GET', KEYS[1])
if current then
  local ok, decoded = pcall(cjson.decode, current)
  if ok and tonumber(decoded['version']) >= tonumber(ARGV[2]) then
    return 0
  end
end
redis.call('SET', KEYS[1], ARGV[1], 'EX', ARGV[3])
return 1
"""


@dataclass
class RemoteStats:
    redis_hits: int = 0
    database_loads: int = 0


class UserCache:
    """One per replica; its local layer is dropped through the replica's `Invalidations`."""

    def __init__(
        self,
        db: Database,
        redis: aioredis.Redis,
        invalidations: Invalidations,
        *,
        max_entries: int,
        local_ttl_s: float,
        redis_ttl_s: int,
    ) -> None:
        self._user_store = UserStore(db)
        self._redis = redis
        self._invalidations = invalidations
        self.local: LocalCache[uuid.UUID, UserRecord] = invalidations.cache(
            CHANNEL, uuid.UUID, max_entries=max_entries, ttl_s=local_ttl_s
        )
        self._redis_ttl_s = redis_ttl_s
        self._set_if_newer = redis.register_script(_SET_IF_NEWER)
        self.stats = RemoteStats()

    def loader(self) -> DataLoader[uuid.UUID, UserRecord | None]:
        """A DataLoader for one request: N `load(id)` calls become one batch."""
        return DataLoader(load_fn=self.load_many)

    async def load_many(self, ids: Sequence[uuid.UUID]) -> list[UserRecord | None]:
        found = await self.local.load_many(ids, self._load_remote)
        return [found.get(user_id) for user_id in ids]

    async def _load_remote(self, ids: list[uuid.UUID]) -> dict[uuid.UUID, UserRecord]:
        found: dict[uuid.UUID, UserRecord] = {}
        try:
            cached = await self._redis.mget([_KEY.format(user_id) for user_id in ids])
        except (RedisError, OSError, TimeoutError) as exc:
            log.warning("user cache: Redis unavailable, reading PostgreSQL: %s", exc)
            cached = [None] * len(ids)
        for user_id, raw in zip(ids, cached, strict=True):
            if raw is not None:
                found[user_id] = UserRecord.from_json(raw)
                self.stats.redis_hits += 1
        rest = [user_id for user_id in ids if user_id not in found]
        if rest:
            records = await self._user_store.fetch(rest)
            self.stats.database_loads += len(records)
            for record in records:
                found[record.id] = record
            await self._store_remote(records)
        return found

    async def _store_remote(self, records: Iterable[UserRecord]) -> None:
        try:
            for record in records:
                await self._set_if_newer(
                    keys=[_KEY.format(record.id)],
                    args=[record.to_json(), record.version, self._redis_ttl_s],
                )
        except (RedisError, OSError, TimeoutError) as exc:
            log.warning("user cache: could not fill Redis: %s", exc)

    async def changed(self, records: Sequence[UserRecord]) -> None:
        """After a committed change: write the new records through and tell every replica."""
        await self._store_remote(records)
        await self._invalidations.changed(self.local, [record.id for record in records])
