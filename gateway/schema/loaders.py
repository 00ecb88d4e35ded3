"""Per-request DataLoaders for the social loop: one round trip per kind of data per tick.

A page of 20 posts with authors, counts and `viewerHasLiked` costs one posts query, one
users lookup, one viewer-likes query and one call per counter shard involved, whatever
the page size. Loaders live for one request (or one WebSocket operation), so they never
serve another viewer's data or stale data for long.
"""

from __future__ import annotations

import asyncio
import uuid
from typing import TYPE_CHECKING

from strawberry.dataloader import DataLoader

from storage.repositories.chat_rooms import RoomRecord
from storage.repositories.counters import CounterRow
from storage.repositories.media import MediaRecord
from storage.repositories.posts import PostRecord

if TYPE_CHECKING:
    from gateway.runtime import GatewayRuntime


class Loaders:
    def __init__(self, runtime: GatewayRuntime, viewer: uuid.UUID | None) -> None:
        self._runtime = runtime
        self._viewer = viewer
        self._blocked: asyncio.Future[frozenset[uuid.UUID]] | None = None
        self.posts: DataLoader[uuid.UUID, PostRecord | None] = DataLoader(self._posts)
        self.post_counts: DataLoader[uuid.UUID, CounterRow] = DataLoader(self._post_counts)
        self.user_counts: DataLoader[uuid.UUID, CounterRow] = DataLoader(self._user_counts)
        self.viewer_likes: DataLoader[uuid.UUID, bool] = DataLoader(self._viewer_likes)
        self.follow_state: DataLoader[uuid.UUID, tuple[bool, bool]] = DataLoader(self._follow_state)
        self.rooms: DataLoader[uuid.UUID, RoomRecord | None] = DataLoader(self._rooms)
        self.media: DataLoader[uuid.UUID, MediaRecord | None] = DataLoader(runtime.media.get_many)

    async def blocked(self) -> frozenset[uuid.UUID]:
        """Everyone hidden from the viewer (blocked either way); looked up once per
        request, shared by every caller, even concurrent ones (a resolver can start it
        early). The replica's cache answers most requests (`gateway.services.relations`)."""
        if self._viewer is None:
            return frozenset()
        if self._blocked is None:
            self._blocked = asyncio.ensure_future(self._runtime.relations.hidden(self._viewer))
        return await asyncio.shield(self._blocked)

    async def _posts(self, ids: list[uuid.UUID]) -> list[PostRecord | None]:
        return await self._runtime.posts.fetch_many(ids)

    async def _post_counts(self, ids: list[uuid.UUID]) -> list[CounterRow]:
        rows = await self._runtime.counters.counts("post", ids)
        return [rows[i] for i in ids]

    async def _user_counts(self, ids: list[uuid.UUID]) -> list[CounterRow]:
        rows = await self._runtime.counters.counts("user", ids)
        return [rows[i] for i in ids]

    async def _viewer_likes(self, ids: list[uuid.UUID]) -> list[bool]:
        if self._viewer is None:
            return [False] * len(ids)
        liked = await self._runtime.posts.viewer_likes(self._viewer, ids)
        return [i in liked for i in ids]

    async def _rooms(self, ids: list[uuid.UUID]) -> list[RoomRecord | None]:
        """Chat rooms the viewer is a member of; None for the others."""
        if self._viewer is None:
            return [None] * len(ids)
        rooms = await self._runtime.chat.rooms_by_id(ids, self._viewer)
        return [rooms.get(i) for i in ids]

    async def _follow_state(self, ids: list[uuid.UUID]) -> list[tuple[bool, bool]]:
        if self._viewer is None:
            return [(False, False)] * len(ids)
        state = await self._runtime.graph.follow_state(self._viewer, ids)
        return [state.get(i, (False, False)) for i in ids]
