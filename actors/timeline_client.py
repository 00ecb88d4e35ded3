"""How the gateway and the fan-out consumer reach timeline shards: users are grouped by
shard, so a fan-out to N followers costs one call per shard, all shards in parallel.

Reads are batched the same way, by time instead of by list: a Ray actor call costs far
more (two processes' task machinery, about 1-2 ms of CPU here) than slicing a timeline in
memory, so while `MAX_READS_IN_FLIGHT` calls to a shard are out, further page reads for
it wait and go together in the next `pages` call. A lone reader waits for nothing.
"""

from __future__ import annotations

import asyncio
import uuid
from collections import defaultdict
from collections.abc import Iterable, Sequence

from actors.directory import shard_of
from actors.remote import TIMELINE
from actors.shard_caller import ShardCaller
from storage.timelines import Entry, unpack_entries

# Calls per shard from one process before reads queue for the next batch: more than one,
# so that a read stuck on a cold timeline (loaded from Redis or rebuilt from PostgreSQL)
# does not hold up every read behind it.
MAX_READS_IN_FLIGHT = 2
MAX_READS_PER_CALL = 64

_Read = tuple[uuid.UUID, Entry | None, int]


class TimelineClient:
    def __init__(self, shards: int, *, timeout_s: float = 5.0, retry_for_s: float = 20.0) -> None:
        self._caller = ShardCaller(TIMELINE, shards, timeout_s=timeout_s, retry_for_s=retry_for_s)
        self._queued: dict[int, list[tuple[_Read, asyncio.Future[bytes]]]] = defaultdict(list)
        self._in_flight: dict[int, int] = defaultdict(int)
        self._senders: set[asyncio.Task[None]] = set()  # referenced until done
        self.batched_reads = 0  # reads that shared a call with another

    def shard_of(self, user_id: uuid.UUID) -> int:
        return shard_of(user_id, self._caller.shards)

    def _by_shard(self, user_ids: Iterable[uuid.UUID]) -> dict[int, list[uuid.UUID]]:
        groups: dict[int, list[uuid.UUID]] = defaultdict(list)
        for user_id in dict.fromkeys(user_ids):
            groups[self.shard_of(user_id)].append(user_id)
        return groups

    async def page(self, user_id: uuid.UUID, before: Entry | None, limit: int) -> list[Entry]:
        index = self.shard_of(user_id)
        future: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()
        self._queued[index].append(((user_id, before, limit), future))
        if self._in_flight[index] < MAX_READS_IN_FLIGHT:
            self._in_flight[index] += 1
            sender = asyncio.get_running_loop().create_task(self._send_reads(index))
            self._senders.add(sender)
            sender.add_done_callback(self._senders.discard)
        return unpack_entries(await future)

    async def _send_reads(self, index: int) -> None:
        """Send what is queued for shard `index`, one batch after another until none is."""
        try:
            while queue := self._queued.pop(index, None):
                batch, rest = queue[:MAX_READS_PER_CALL], queue[MAX_READS_PER_CALL:]
                if rest:
                    self._queued[index] = rest + self._queued.get(index, [])
                if len(batch) > 1:
                    self.batched_reads += len(batch)
                await self._read_batch(index, batch)
        finally:
            self._in_flight[index] -= 1

    async def _read_batch(
        self, index: int, batch: list[tuple[_Read, asyncio.Future[bytes]]]
    ) -> None:
        try:
            pages: list[bytes | None] = await self._caller.call(
                index, "pages", [read for read, _ in batch]
            )
        except AttributeError:
            # Shards are detached and outlive a `nova deploy`: one started by an earlier
            # release has no `pages` until it restarts.
            pages = [None] * len(batch)
        except Exception as exc:
            for _, future in batch:
                if not future.done():
                    future.set_exception(exc)
            return
        except BaseException:  # cancelled: so are the reads waiting for this call
            for _, future in batch:
                future.cancel()
            raise
        for (read, future), page in zip(batch, pages, strict=True):
            if page is None:  # failed in the batch: alone, for its own error
                await self._read_alone(index, read, future)
            elif not future.done():
                future.set_result(page)

    async def _read_alone(self, index: int, read: _Read, future: asyncio.Future[bytes]) -> None:
        try:
            page: bytes = await self._caller.call(index, "page", *read)
        except Exception as exc:
            if not future.done():
                future.set_exception(exc)
        else:
            if not future.done():
                future.set_result(page)

    async def push(self, user_ids: Sequence[uuid.UUID], entry: Entry) -> None:
        await asyncio.gather(
            *(
                self._caller.call(index, "push", group, entry)
                for index, group in self._by_shard(user_ids).items()
            )
        )

    async def remove(
        self,
        user_ids: Sequence[uuid.UUID],
        *,
        post_ids: frozenset[uuid.UUID] = frozenset(),
        author_ids: frozenset[uuid.UUID] = frozenset(),
    ) -> None:
        await asyncio.gather(
            *(
                self._caller.call(index, "remove", group, post_ids, author_ids)
                for index, group in self._by_shard(user_ids).items()
            )
        )

    async def backfill(self, user_id: uuid.UUID, entries: list[Entry]) -> None:
        if entries:
            await self._caller.call(self.shard_of(user_id), "backfill", user_id, entries)
