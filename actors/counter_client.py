"""How the gateway and workers talk to counter shards: routing, batching, timeouts, retries.

Reads for many keys are grouped by shard, so a page of posts costs at most one call per
shard. Likes issued in the same event-loop tick (concurrent requests in one gateway
replica) travel to their shard in one call, so the Ray round trip is paid per batch, not
per like; the shard then group-commits them. Every call is bounded by a timeout.

A shard that died is restarted by Ray within seconds; likes and reads are idempotent, so
they are retried until `retry_for_s` runs out, and an acknowledged like is never lost (it
was committed before the answer).
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections import defaultdict
from collections.abc import Iterable, Sequence
from typing import Any

from actors.counter_shard import LikeResult
from actors.directory import shard_of
from actors.remote import COUNTER
from actors.shard_caller import ShardCaller
from storage.repositories.counters import CounterRow, Kind

log = logging.getLogger(__name__)

LikeRequest = tuple[uuid.UUID, uuid.UUID, bool]  # post, user, liked


class CounterClient:
    def __init__(self, shards: int, *, timeout_s: float = 5.0, retry_for_s: float = 20.0) -> None:
        self._shards = shards
        self._shards_caller = ShardCaller(
            COUNTER, shards, timeout_s=timeout_s, retry_for_s=retry_for_s
        )
        self._likes: dict[int, list[tuple[LikeRequest, asyncio.Future[LikeResult]]]] = {}

    def shard_of(self, entity_id: uuid.UUID) -> int:
        return shard_of(entity_id, self._shards)

    async def like(self, post_id: uuid.UUID, user_id: uuid.UUID, liked: bool) -> LikeResult:
        """Like or unlike; answered once the like is durable."""
        loop = asyncio.get_running_loop()
        index = self.shard_of(post_id)
        future: asyncio.Future[LikeResult] = loop.create_future()
        waiting = self._likes.setdefault(index, [])
        waiting.append(((post_id, user_id, liked), future))
        if len(waiting) == 1:  # the first of this tick schedules the send
            loop.call_soon(lambda: loop.create_task(self._send_likes(index)))
        return await future

    async def _send_likes(self, index: int) -> None:
        batch = self._likes.pop(index, [])
        live = [(request, future) for request, future in batch if not future.done()]
        if not live:
            return
        try:
            results = await self._call(index, "like_many", [request for request, _ in live])
        except BaseException as exc:
            for _, future in live:
                if not future.done():
                    future.set_exception(exc)
            if not isinstance(exc, Exception):
                raise
            return
        for (_, future), result in zip(live, results, strict=True):
            if future.done():
                continue
            if isinstance(result, BaseException):
                future.set_exception(result)
            else:
                future.set_result(result)

    async def counts(self, kind: Kind, ids: Sequence[uuid.UUID]) -> dict[uuid.UUID, CounterRow]:
        """Rows for `ids`, one call per shard involved, all shards in parallel."""
        by_shard: dict[int, list[uuid.UUID]] = defaultdict(list)
        for entity_id in dict.fromkeys(ids):
            by_shard[self.shard_of(entity_id)].append(entity_id)
        replies = await asyncio.gather(
            *(self._call(index, "counts", kind, group) for index, group in by_shard.items())
        )
        merged: dict[uuid.UUID, CounterRow] = {}
        for reply in replies:
            merged.update(reply)
        return merged

    async def observe(self, rows: Iterable[CounterRow]) -> None:
        """Tell owners about rows written elsewhere. Best effort: a shard that misses one
        re-reads its keys within `NOVA_COUNTER_REFRESH_S`, so failures are only logged."""
        by_shard: dict[int, list[CounterRow]] = defaultdict(list)
        for row in rows:
            by_shard[self.shard_of(row.entity_id)].append(row)
        results = await asyncio.gather(
            *(self._call(index, "observe", group) for index, group in by_shard.items()),
            return_exceptions=True,
        )
        for result in results:
            if isinstance(result, Exception):
                log.warning("counter update not delivered (the shard will refresh): %s", result)

    async def forget_post(self, post_id: uuid.UUID) -> None:
        await self._call(self.shard_of(post_id), "forget_post", post_id)

    async def _call(self, index: int, method: str, *args: Any) -> Any:
        return await self._shards_caller.call(index, method, *args)

    @property
    def calls(self) -> int:
        """Shard calls made; tests bound it per request."""
        return self._shards_caller.calls
