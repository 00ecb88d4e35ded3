"""The follow graph: follow, unfollow, connections, follow state, suggestions.

A follow changes two counter rows (the follower's `following`, the followee's
`followers`); both are bumped in the follow's transaction and the new rows are then sent
to their CounterShards. Blocks and follows exclude each other: a block removes follows
both ways (see `Profiles.block`), and nobody can follow across a block.
"""

from __future__ import annotations

import uuid

from actors.counter_client import CounterClient
from gateway.errors import Forbidden
from gateway.services.pages import Page, page_of
from gateway.services.profiles import decode_cursor, page_size
from gateway.services.relations import ViewerRelations
from storage.db import Database
from storage.errors import InvalidInput
from storage.repositories.graph import GraphStore, follow_event

MAX_SUGGESTIONS = 50


class Graph:
    def __init__(self, db: Database, counters: CounterClient, relations: ViewerRelations) -> None:
        self._store = GraphStore(db)
        self._counters = counters
        self._relations = relations

    async def follow(self, follower: uuid.UUID, followee: uuid.UUID) -> bool:
        if follower == followee:
            raise InvalidInput("you cannot follow yourself")
        change = await self._store.follow(
            follower, followee, follow_event("graph.follow.created", follower, followee)
        )
        if change is None:
            raise Forbidden("you cannot follow this user")
        if change.changed:
            await self._relations.follows_changed([follower], change.counters)
        await self._counters.observe(change.counters)
        return True

    async def unfollow(self, follower: uuid.UUID, followee: uuid.UUID) -> bool:
        if follower == followee:
            raise InvalidInput("you cannot unfollow yourself")
        change = await self._store.unfollow(follower, followee)
        if change.changed:
            await self._relations.follows_changed([follower], change.counters)
        await self._counters.observe(change.counters)
        return True

    async def connections(
        self,
        user_id: uuid.UUID,
        direction: str,
        viewer: uuid.UUID | None,
        first: int | None,
        after: str | None,
    ) -> Page:
        """`followers` or `following` of `user_id`, newest first, without anyone blocked
        either way by the viewer."""
        limit = page_size(first)
        since = decode_cursor(after) if after else None
        read = self._store.followers if direction == "followers" else self._store.following
        rows = await read(user_id, viewer, since, limit + 1)
        return page_of(rows, limit)

    async def follow_state(
        self, viewer: uuid.UUID, ids: list[uuid.UUID]
    ) -> dict[uuid.UUID, tuple[bool, bool]]:
        """For each id: (viewer follows them, they follow the viewer), in one query."""
        return await self._store.follow_state(viewer, ids)

    async def suggestions(self, viewer: uuid.UUID, first: int | None) -> list[uuid.UUID]:
        """People followed by people you follow, most such followers first."""
        limit = first if first is not None else 10
        if not 0 <= limit <= MAX_SUGGESTIONS:
            raise InvalidInput(f"first must be between 0 and {MAX_SUGGESTIONS}")
        return await self._store.suggestions(viewer, limit)
