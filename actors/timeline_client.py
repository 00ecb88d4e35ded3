"""How the gateway and the fan-out consumer reach timeline shards: users are grouped by
shard, so a fan-out to N followers costs one call per shard, all shards in parallel.

Page reads, the gateway's hot path, go over each shard's direct read channel
(`actors.read_channel`) when it has one: a Ray actor call cost more CPU than the rest of
a home-feed read. If the channel cannot be had (disabled, a shard from an earlier
release) or breaks, the read goes through a Ray call, and a new channel is tried after
`RECONNECT_AFTER_S`. Writes always go through Ray.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections import defaultdict
from collections.abc import Iterable, Sequence

from actors.directory import shard_name, shard_of
from actors.read_channel import Address, ChannelError, ReadClient, RemoteError
from actors.remote import TIMELINE
from actors.shard_caller import ShardCaller
from storage.errors import NovaError, Unavailable
from storage.repositories.timelines import Entry, pack_page_request, unpack_entries

log = logging.getLogger(__name__)

RECONNECT_AFTER_S = 1.0


class TimelineClient:
    def __init__(
        self,
        shards: int,
        *,
        timeout_s: float = 5.0,
        retry_for_s: float = 20.0,
        direct_reads: bool = True,
    ) -> None:
        self._caller = ShardCaller(TIMELINE, shards, timeout_s=timeout_s, retry_for_s=retry_for_s)
        self._timeout_s = timeout_s
        self._direct_reads = direct_reads
        self._channels: dict[int, ReadClient] = {}
        self._connecting: dict[int, asyncio.Task[ReadClient | None]] = {}
        self._no_channel_until: dict[int, float] = {}
        self.direct_reads = 0  # page reads answered over a direct channel
        self.ray_reads = 0  # page reads that went through a Ray call

    @property
    def calls(self) -> int:
        """Ray calls made to shards (reads over a direct channel are not calls)."""
        return self._caller.calls

    def shard_of(self, user_id: uuid.UUID) -> int:
        return shard_of(user_id, self._caller.shards)

    def _by_shard(self, user_ids: Iterable[uuid.UUID]) -> dict[int, list[uuid.UUID]]:
        groups: dict[int, list[uuid.UUID]] = defaultdict(list)
        for user_id in dict.fromkeys(user_ids):
            groups[self.shard_of(user_id)].append(user_id)
        return groups

    async def page(self, user_id: uuid.UUID, before: Entry | None, limit: int) -> list[Entry]:
        index = self.shard_of(user_id)
        channel = await self._channel(index) if self._direct_reads else None
        if channel is not None:
            try:
                page = await channel.call(
                    pack_page_request(user_id, before, limit), self._timeout_s
                )
            except ChannelError as exc:  # this read goes through Ray; later ones reconnect
                log.warning("timeline reads: %s", exc)
                self._channels.pop(index, None)
            except RemoteError as exc:
                if exc.retriable:
                    raise Unavailable(shard_name(TIMELINE, index), str(exc)) from None
                raise NovaError(f"{shard_name(TIMELINE, index)}: {exc}") from None
            except TimeoutError:
                raise Unavailable(shard_name(TIMELINE, index), "timed out") from None
            else:
                self.direct_reads += 1
                return unpack_entries(page)
        self.ray_reads += 1
        return unpack_entries(await self._caller.call(index, "page", user_id, before, limit))

    async def _channel(self, index: int) -> ReadClient | None:
        channel = self._channels.get(index)
        if channel is not None and not channel.broken:
            return channel
        loop = asyncio.get_running_loop()
        if loop.time() < self._no_channel_until.get(index, 0.0):
            return None
        connecting = self._connecting.get(index)
        if connecting is None:  # one attempt at a time, shared by the reads that wait
            connecting = loop.create_task(self._connect(index))
            self._connecting[index] = connecting
        return await asyncio.shield(connecting)

    async def _connect(self, index: int) -> ReadClient | None:
        try:
            address: Address | None = await self._caller.call(index, "read_address")
            if address is None:
                raise ChannelError("the shard serves no direct reads")
            channel = ReadClient(address)
            await channel.connect(self._timeout_s)
        except (ChannelError, AttributeError) as exc:
            # AttributeError: a shard started by an earlier release (shards are detached
            # and outlive a `nova deploy`) has no `read_address` until it restarts.
            log.info("%s: page reads through Ray calls: %s", shard_name(TIMELINE, index), exc)
            self._no_channel_until[index] = asyncio.get_running_loop().time() + RECONNECT_AFTER_S
            return None
        else:
            self._channels[index] = channel
            return channel
        finally:
            del self._connecting[index]

    async def close(self) -> None:
        """Close the direct read channels."""
        for task in self._connecting.values():
            task.cancel()
        channels, self._channels = self._channels, {}
        for channel in channels.values():
            await channel.close()

    async def push(self, user_ids: Sequence[uuid.UUID], entry: Entry) -> None:
        await asyncio.gather(
            *(
                self._caller.call(index, "push", group, entry)
                for index, group in self._by_shard(user_ids).items()
            )
        )

    async def remove(self, user_ids: Sequence[uuid.UUID], author_ids: frozenset[uuid.UUID]) -> None:
        """These authors' posts out of these users' timelines (an unfollow, a block)."""
        await asyncio.gather(
            *(
                self._caller.call(index, "remove", group, author_ids)
                for index, group in self._by_shard(user_ids).items()
            )
        )

    async def remove_post(
        self, user_ids: Sequence[uuid.UUID], post_id: uuid.UUID, author_id: uuid.UUID
    ) -> None:
        """One post out of these users' timelines (its author names its entry)."""
        await asyncio.gather(
            *(
                self._caller.call(index, "remove_post", group, post_id, author_id)
                for index, group in self._by_shard(user_ids).items()
            )
        )

    async def drop(self, user_ids: Sequence[uuid.UUID]) -> None:
        """Delete these users' timelines (erased accounts)."""
        await asyncio.gather(
            *(
                self._caller.call(index, "drop", group)
                for index, group in self._by_shard(user_ids).items()
            )
        )

    async def backfill(self, user_id: uuid.UUID, entries: list[Entry]) -> None:
        if entries:
            await self._caller.call(self.shard_of(user_id), "backfill", user_id, entries)
