"""Users for resolvers: a per-request DataLoader over a two-level cache.

Lookups go local LRU → Redis (one MGET for the whole batch) → PostgreSQL (one query for
what is left). Every change to a user bumps `users.version`; the writer then stores the
new record in Redis and publishes its id on `nova:users:changed`, and every replica drops
its local copy when the message arrives (within milliseconds).

Two races are closed by versions and generations rather than by luck:
* Redis: a reader that loaded an old row can write it back after the writer's update.
  `_SET_IF_NEWER` only replaces a cached record with a higher version.
* Local: a batch that started before an invalidation could store what it read after it.
  Each id has a generation, bumped by invalidations; a fill only lands if unchanged.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
import uuid
from collections import OrderedDict
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Any

import asyncpg
import redis.asyncio as aioredis
from redis.exceptions import RedisError
from strawberry.dataloader import DataLoader

from storage.db import Database

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

USER_COLUMNS = (
    "id, username, email, display_name, bio, avatar_url, roles, "
    "email_verified_at IS NOT NULL AS email_verified, created_at, version"
)


@dataclass(frozen=True)
class UserRecord:
    id: uuid.UUID
    username: str
    email: str
    display_name: str | None
    bio: str | None
    avatar_url: str | None
    roles: tuple[str, ...]
    email_verified: bool
    created_at: datetime
    version: int

    @classmethod
    def from_row(cls, row: asyncpg.Record) -> UserRecord:
        return cls(
            id=row["id"],
            username=row["username"],
            email=row["email"],
            display_name=row["display_name"],
            bio=row["bio"],
            avatar_url=row["avatar_url"],
            roles=tuple(row["roles"]),
            email_verified=row["email_verified"],
            created_at=row["created_at"],
            version=row["version"],
        )

    def to_json(self) -> str:
        data = asdict(self)
        data["id"] = str(self.id)
        data["created_at"] = self.created_at.isoformat()
        return json.dumps(data)

    @classmethod
    def from_json(cls, raw: bytes | str) -> UserRecord:
        data = json.loads(raw)
        data["id"] = uuid.UUID(data["id"])
        data["created_at"] = datetime.fromisoformat(data["created_at"])
        data["roles"] = tuple(data["roles"])
        return cls(**data)


async def fetch_users(conn: asyncpg.Connection, ids: Sequence[uuid.UUID]) -> list[UserRecord]:
    rows = await conn.fetch(f"SELECT {USER_COLUMNS} FROM users WHERE id = ANY($1)", list(ids))
    return [UserRecord.from_row(row) for row in rows]


@dataclass
class CacheStats:
    local_hits: int = 0
    redis_hits: int = 0
    database_loads: int = 0
    invalidations: int = 0


class UserCache:
    """One per replica. `start()` subscribes to invalidations; `close()` stops that."""

    def __init__(
        self,
        db: Database,
        redis: aioredis.Redis,
        *,
        max_entries: int,
        local_ttl_s: float,
        redis_ttl_s: int,
    ) -> None:
        self._db = db
        self._redis = redis
        self._max_entries = max_entries
        self._local_ttl_s = local_ttl_s
        self._redis_ttl_s = redis_ttl_s
        self._local: OrderedDict[uuid.UUID, tuple[float, UserRecord]] = OrderedDict()
        self._generations: dict[uuid.UUID, int] = {}
        self._set_if_newer = redis.register_script(_SET_IF_NEWER)
        self._listener: asyncio.Task[None] | None = None
        self._subscribed = asyncio.Event()
        self.stats = CacheStats()

    async def start(self) -> None:
        self._listener = asyncio.create_task(self._listen(), name="user-cache-invalidations")
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._subscribed.wait(), 5)

    async def close(self) -> None:
        if self._listener is not None:
            self._listener.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._listener

    def loader(self) -> DataLoader[uuid.UUID, UserRecord | None]:
        """A DataLoader for one request: N `load(id)` calls become one batch."""
        return DataLoader(load_fn=self.load_many)

    async def load_many(self, ids: Sequence[uuid.UUID]) -> list[UserRecord | None]:
        found: dict[uuid.UUID, UserRecord] = {}
        now = time.monotonic()
        missing: list[uuid.UUID] = []
        for user_id in dict.fromkeys(ids):
            entry = self._local.get(user_id)
            if entry is not None and entry[0] > now:
                self._local.move_to_end(user_id)
                found[user_id] = entry[1]
                self.stats.local_hits += 1
            else:
                missing.append(user_id)
        if missing:
            generations = {user_id: self._generations.get(user_id, 0) for user_id in missing}
            loaded = await self._load_remote(missing)
            for user_id, record in loaded.items():
                found[user_id] = record
                if self._generations.get(user_id, 0) == generations[user_id]:
                    self._remember(record, now)
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
            async with self._db.connection() as conn:
                records = await fetch_users(conn, rest)
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

    def _remember(self, record: UserRecord, now: float) -> None:
        self._local[record.id] = (now + self._local_ttl_s, record)
        self._local.move_to_end(record.id)
        while len(self._local) > self._max_entries:
            evicted, _ = self._local.popitem(last=False)
            self._generations.pop(evicted, None)

    def forget(self, user_id: uuid.UUID) -> None:
        """Drop the local copy; later fills that started before this do not land."""
        self._local.pop(user_id, None)
        self._generations[user_id] = self._generations.get(user_id, 0) + 1
        self.stats.invalidations += 1

    async def changed(self, records: Sequence[UserRecord]) -> None:
        """After a committed change: write the new records through and tell every replica."""
        for record in records:
            self.forget(record.id)
        await self._store_remote(records)
        try:
            for record in records:
                await self._redis.publish(CHANNEL, str(record.id))
        except (RedisError, OSError, TimeoutError) as exc:
            # Other replicas serve their copy until its local TTL runs out.
            log.warning("user cache: could not publish invalidations: %s", exc)

    async def _listen(self) -> None:
        """Follow invalidations for as long as the replica lives, reconnecting after errors."""
        delay_s = 0.1
        while True:
            pubsub = self._redis.pubsub(ignore_subscribe_messages=True)
            try:
                await pubsub.subscribe(CHANNEL)
                # While disconnected we may have missed messages: start clean.
                self._local.clear()
                self._subscribed.set()
                delay_s = 0.1
                while True:
                    message: dict[str, Any] | None = await pubsub.get_message(timeout=1.0)
                    if message is not None and message.get("type") == "message":
                        with contextlib.suppress(ValueError):
                            self.forget(uuid.UUID(message["data"].decode()))
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("user cache: invalidation feed lost (%s); reconnecting", exc)
                await asyncio.sleep(delay_s)
                delay_s = min(delay_s * 2, 5.0)
            finally:
                with contextlib.suppress(Exception):
                    await pubsub.aclose()  # type: ignore[no-untyped-call]
