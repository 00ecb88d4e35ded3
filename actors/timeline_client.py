"""How the gateway and the fan-out consumer reach timeline shards: users are grouped by
shard, so a fan-out to N followers costs one call per shard, all shards in parallel."""

from __future__ import annotations

import asyncio
import uuid
from collections import defaultdict
from collections.abc import Iterable, Sequence

from actors.directory import shard_of
from actors.remote import TIMELINE
from actors.shard_caller import ShardCaller
from storage.timelines import Entry, unpack_entries


class TimelineClient:
    def __init__(self, shards: int, *, timeout_s: float = 5.0, retry_for_s: float = 20.0) -> None:
        self._caller = ShardCaller(TIMELINE, shards, timeout_s=timeout_s, retry_for_s=retry_for_s)

    def shard_of(self, user_id: uuid.UUID) -> int:
        return shard_of(user_id, self._caller.shards)

    def _by_shard(self, user_ids: Iterable[uuid.UUID]) -> dict[int, list[uuid.UUID]]:
        groups: dict[int, list[uuid.UUID]] = defaultdict(list)
        for user_id in dict.fromkeys(user_ids):
            groups[self.shard_of(user_id)].append(user_id)
        return groups

    async def page(self, user_id: uuid.UUID, before: Entry | None, limit: int) -> list[Entry]:
        page: bytes | list[Entry] = await self._caller.call(
            self.shard_of(user_id), "page", user_id, before, limit
        )
        # Shards are detached and outlive a `nova deploy`: one started by an earlier release
        # answers with a list until it restarts.
        return unpack_entries(page) if isinstance(page, bytes) else page

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
