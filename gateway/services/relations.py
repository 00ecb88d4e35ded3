"""Per-viewer facts most reads need: who is hidden from the viewer, and whether they follow
anyone above the fan-out threshold. Cached per replica, dropped on change everywhere.

Every page of posts hides those blocked either way, and every home feed read asks for
followed celebrities' posts (not in timelines; `gateway.services.feed`). Both answers change
rarely and are the same on every read in between, so each replica keeps them in memory
(`gateway.services.caches`): a block, unblock, follow or unfollow drops both users' entries
in every replica within milliseconds.

One change is not the viewer's own doing: a followed author crossing the fan-out
threshold, when someone else follows or unfollows them. The follow that makes the count
reach the threshold (either way) drops every viewer's answer in every replica.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence

from gateway.services.caches import Invalidations, LocalCache
from gateway.settings import GatewaySettings
from storage.db import Database
from storage.repositories.counters import CounterRow
from storage.repositories.graph import GraphStore

BLOCKS_CHANNEL = "nova:blocks:changed"
FOLLOWS_CHANNEL = "nova:follows:changed"


class ViewerRelations:
    def __init__(
        self, db: Database, invalidations: Invalidations, settings: GatewaySettings
    ) -> None:
        self._store = GraphStore(db)
        self._invalidations = invalidations
        self._max_followers = settings.fanout_max_followers
        self._hidden: LocalCache[uuid.UUID, frozenset[uuid.UUID]] = invalidations.cache(
            BLOCKS_CHANNEL,
            uuid.UUID,
            max_entries=settings.viewer_cache_size,
            ttl_s=settings.viewer_cache_ttl_s,
        )
        self._celebrities: LocalCache[uuid.UUID, bool] = invalidations.cache(
            FOLLOWS_CHANNEL,
            uuid.UUID,
            max_entries=settings.viewer_cache_size,
            ttl_s=settings.viewer_cache_ttl_s,
        )

    async def hidden(self, viewer: uuid.UUID) -> frozenset[uuid.UUID]:
        """Everyone the viewer blocked or was blocked by: hidden from them everywhere."""
        return await self._hidden.load(viewer, self._fetch_hidden)

    async def follows_celebrities(self, viewer: uuid.UUID) -> bool:
        """Whether the viewer follows an author whose posts are merged at read time."""
        return await self._celebrities.load(viewer, self._fetch_follows_celebrities)

    async def blocks_changed(self, *users: uuid.UUID) -> None:
        """After a committed block or unblock between `users`."""
        await self._invalidations.changed(self._hidden, users)

    async def follows_changed(
        self, followers: Sequence[uuid.UUID], counters: Sequence[CounterRow]
    ) -> None:
        """After `followers` followed or unfollowed someone (committed); `counters` are the
        user counter rows the change left."""
        # From threshold to threshold + 1 or back: whoever follows that author now does or
        # does not follow a celebrity. Rare (and clearing on a near miss costs little).
        crossed = any(
            row.kind == "user"
            and row.counts.get("followers") in (self._max_followers, self._max_followers + 1)
            for row in counters
        )
        if crossed:
            await self._invalidations.changed_all(self._celebrities)
        else:
            await self._invalidations.changed(self._celebrities, followers)

    async def _fetch_hidden(self, viewer: uuid.UUID) -> frozenset[uuid.UUID]:
        return await self._store.hidden(viewer)

    async def _fetch_follows_celebrities(self, viewer: uuid.UUID) -> bool:
        return await self._store.follows_celebrity(viewer, self._max_followers)
