"""Find and delete every trace of some strings in Redis: key names, string values, and the
members, fields and values of sets, sorted sets, hashes and lists.

The erasure's last pass (`actors.erasure`): consumers remove what they own as events
arrive, but keys owned by no consumer (rate limits, ranked-feed sessions, leases) or made
by an event applied after the erasure would otherwise outlive the account until their TTL.
One pass walks the keyspace once with SCAN, a page at a time, so it costs the server what
a `redis-cli --scan` costs, for any number of accounts at once.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import redis.asyncio as aioredis

PAGE = 1_000
SMALL = 1_000  # collections up to this size are read whole; larger ones are scanned


@dataclass
class ScrubResult:
    keys_seen: int = 0
    keys_deleted: int = 0
    items_removed: int = 0


class Needles:
    """What names an account: its ids (as text, without case, and as the 16 raw bytes some
    records pack), and words (a username, an email) that count only where they stand
    alone: as a `:`-separated part of a key name, or quoted (JSON) in a string value. A
    short username inside a hex id or a longer word is someone else's data."""

    def __init__(self, ids: Iterable[uuid.UUID], words: Iterable[str] = ()) -> None:
        self._ids = [str(i).encode() for i in ids]
        self._raw = [i.bytes for i in ids]
        self._words = [w.lower().encode() for w in words if w]

    def __bool__(self) -> bool:
        return bool(self._ids or self._words)

    def in_member(self, value: bytes | str | float | None) -> bool:
        """Whether a set, sorted-set or list member, or a hash field, names the account."""
        data = _bytes(value)
        if data is None:
            return False
        if any(r in data for r in self._raw):
            return True
        lowered = data.lower()
        return any(i in lowered for i in self._ids)

    def in_key(self, key: bytes | str) -> bool:
        data = _bytes(key) or b""
        parts = set(data.lower().split(b":"))
        return self.in_member(data) or any(w in parts for w in self._words)

    def in_value(self, value: bytes | str | float | None) -> bool:
        data = _bytes(value)
        if data is None:
            return False
        lowered = data.lower()
        return self.in_member(data) or any(b'"' + w + b'"' in lowered for w in self._words)


def _bytes(value: bytes | str | float | None) -> bytes | None:
    if value is None or isinstance(value, float | int):
        return None
    return value.encode() if isinstance(value, str) else value


async def scrub(redis: aioredis.Redis, needles: Needles, *, match: str = "*") -> ScrubResult:
    """Delete keys whose name or string value holds a needle, and remove the members,
    fields and list items that hold one from the others."""
    result = ScrubResult()
    if not needles:
        return result
    cursor = 0
    while True:
        cursor, keys = await redis.scan(cursor, match=match, count=PAGE)
        await _scrub_page(redis, needles, keys, result)
        if cursor == 0:
            return result


async def _scrub_page(
    redis: aioredis.Redis, needles: Needles, keys: Sequence[bytes | str], result: ScrubResult
) -> None:
    result.keys_seen += len(keys)
    named: list[bytes | str] = []
    rest: list[bytes | str] = []
    for key in keys:
        (named if needles.in_key(key) else rest).append(key)
    if named:
        result.keys_deleted += await redis.delete(*named)
    if not rest:
        return
    async with redis.pipeline(transaction=False) as pipe:
        for key in rest:
            pipe.type(key)
        types = [t.decode() if isinstance(t, bytes) else str(t) for t in await pipe.execute()]
    by_type: dict[str, list[bytes | str]] = {}
    for key, kind in zip(rest, types, strict=True):
        by_type.setdefault(kind, []).append(key)
    await _strings(redis, needles, by_type.get("string", []), result)
    for key in by_type.get("hash", []):
        await _hash(redis, needles, key, result)
    for key in by_type.get("set", []):
        await _set(redis, needles, key, result)
    for key in by_type.get("zset", []):
        await _zset(redis, needles, key, result)
    for key in by_type.get("list", []):
        await _list(redis, needles, key, result)


async def _strings(
    redis: aioredis.Redis, needles: Needles, keys: list[bytes | str], result: ScrubResult
) -> None:
    if not keys:
        return
    values = await redis.mget(keys)
    doomed = [k for k, v in zip(keys, values, strict=True) if needles.in_value(v)]
    if doomed:
        result.keys_deleted += await redis.delete(*doomed)


async def _hash(
    redis: aioredis.Redis, needles: Needles, key: bytes | str, result: ScrubResult
) -> None:
    fields = [
        field
        async for field, value in redis.hscan_iter(key, count=SMALL)
        if needles.in_member(field) or needles.in_value(value)
    ]
    if fields:
        result.items_removed += await redis.hdel(key, *fields)


async def _set(
    redis: aioredis.Redis, needles: Needles, key: bytes | str, result: ScrubResult
) -> None:
    members = [m async for m in redis.sscan_iter(key, count=SMALL) if needles.in_member(m)]
    if members:
        result.items_removed += await redis.srem(key, *members)


async def _zset(
    redis: aioredis.Redis, needles: Needles, key: bytes | str, result: ScrubResult
) -> None:
    members = [m async for m, _ in redis.zscan_iter(key, count=SMALL) if needles.in_member(m)]
    if members:
        result.items_removed += await redis.zrem(key, *members)


async def _list(
    redis: aioredis.Redis, needles: Needles, key: bytes | str, result: ScrubResult
) -> None:
    items = [i for i in await redis.lrange(key, 0, -1) if needles.in_member(i)]
    for item in set(items):
        result.items_removed += await redis.lrem(key, 0, item)  # type: ignore[arg-type]
