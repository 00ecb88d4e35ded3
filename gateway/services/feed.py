"""The home feed: a slice of the viewer's timeline merged with followed celebrities' posts,
and the live `feedUpdated` stream.

Reads: the viewer's TimelineShard returns the page from memory; authors above the fan-out
threshold are not in timelines, so their posts older than the cursor are read from
PostgreSQL (one indexed query) and merged, for viewers who follow one (a per-replica
cached answer, `gateway.services.relations`). Cursors are `(created_at, post_id)` keysets:
paging while new posts arrive yields no duplicates and no gaps.

Live updates: timeline shards publish each new entry's post id on `nova:feed:<user>`;
each replica's `gateway.transport.hub.PubSubHub` hands them to that user's WebSocket subscribers.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from datetime import datetime

from actors.timeline_client import TimelineClient
from gateway.services.profiles import decode_cursor, encode_cursor, page_size
from gateway.services.relations import ViewerRelations
from gateway.settings import GatewaySettings
from storage.db import Database
from storage.repositories.timelines import Entry, TimelineStore

_NIL = uuid.UUID(int=0)
_TOUCH_EVERY_S = 3_600.0


class Feed:
    def __init__(
        self,
        db: Database,
        timelines: TimelineClient,
        relations: ViewerRelations,
        settings: GatewaySettings,
    ) -> None:
        self._store = TimelineStore(db)
        self._timelines = timelines
        self._relations = relations
        self._settings = settings
        self._touched: dict[uuid.UUID, float] = {}

    async def page(
        self, viewer: uuid.UUID, first: int | None, after: str | None, *, pull: bool = False
    ) -> tuple[list[tuple[str, uuid.UUID]], bool]:
        limit = page_size(first)
        before = decode_cursor(after) if after else None
        if pull:
            pulled = await self._store.pull_page(viewer, before=before, limit=limit + 1)
            items = [(encode_cursor(e.created_at, e.post_id), e.post_id) for e in pulled]
            return items[:limit], len(pulled) > limit
        # The smallest author id sorts before every real entry at the same instant and post.
        marker = Entry(before[0], before[1], _NIL) if before else None
        timeline, celebrities = await asyncio.gather(
            self._timelines.page(viewer, marker, limit + 1),
            self._celebrities(viewer, before, limit + 1),
        )
        merged = {e.post_id: e for e in (*timeline, *celebrities)}
        ordered = sorted(merged.values(), key=lambda e: (e.created_at, e.post_id), reverse=True)
        await self._touch(viewer)
        items = [(encode_cursor(e.created_at, e.post_id), e.post_id) for e in ordered[:limit]]
        return items, len(ordered) > limit

    async def candidates(self, viewer: uuid.UUID, limit: int) -> list[Entry]:
        """The newest `limit` entries of the viewer's feed: in-network ranking candidates."""
        timeline, celebrities = await asyncio.gather(
            self._timelines.page(viewer, None, limit),
            self._celebrities(viewer, None, limit),
        )
        await self._touch(viewer)
        merged = {e.post_id: e for e in (*timeline, *celebrities)}
        ordered = sorted(merged.values(), key=lambda e: (e.created_at, e.post_id), reverse=True)
        return ordered[:limit]

    async def _celebrities(
        self, viewer: uuid.UUID, before: tuple[datetime, uuid.UUID] | None, limit: int
    ) -> list[Entry]:
        # Most viewers follow no one above the threshold: a cached answer skips the query.
        if not await self._relations.follows_celebrities(viewer):
            return []
        return await self._store.celebrity_posts(
            viewer, max_followers=self._settings.fanout_max_followers, before=before, limit=limit
        )

    async def _touch(self, viewer: uuid.UUID) -> None:
        """Mark the viewer active (fan-out skips inactive users), at most hourly."""
        now = time.monotonic()
        if now - self._touched.get(viewer, -_TOUCH_EVERY_S) < _TOUCH_EVERY_S:
            return
        self._touched[viewer] = now
        if len(self._touched) > 100_000:
            self._touched.clear()
        await self._store.touch(viewer)
