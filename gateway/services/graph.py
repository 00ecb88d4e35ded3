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
from storage.errors import InvalidInput, NotFound
from storage.outbox.rows import add_event
from storage.repositories.counters import CounterRow, bump
from storage.repositories.graph import blocked_either_way, follow_event, record_unfollows

MAX_SUGGESTIONS = 50


class Graph:
    def __init__(self, db: Database, counters: CounterClient, relations: ViewerRelations) -> None:
        self._db = db
        self._counters = counters
        self._relations = relations

    async def follow(self, follower: uuid.UUID, followee: uuid.UUID) -> bool:
        if follower == followee:
            raise InvalidInput("you cannot follow yourself")
        rows: list[CounterRow] = []
        async with self._db.transaction() as conn:
            if not await conn.fetchval(
                "SELECT EXISTS (SELECT 1 FROM users WHERE id = $1)", followee
            ):
                raise NotFound("no such user")
            if await blocked_either_way(conn, follower, followee):
                raise Forbidden("you cannot follow this user")
            inserted = await conn.fetchval(
                """
                INSERT INTO follows (follower_id, followee_id) VALUES ($1, $2)
                ON CONFLICT DO NOTHING RETURNING true
                """,
                follower,
                followee,
            )
            if inserted:
                rows = await bump(
                    conn, "user", {follower: {"following": 1}, followee: {"followers": 1}}
                )
                await add_event(conn, follow_event("graph.follow.created", follower, followee))
        if inserted:
            await self._relations.follows_changed([follower], rows)
        await self._counters.observe(rows)
        return True

    async def unfollow(self, follower: uuid.UUID, followee: uuid.UUID) -> bool:
        if follower == followee:
            raise InvalidInput("you cannot unfollow yourself")
        async with self._db.transaction() as conn:
            gone = await conn.fetchval(
                "DELETE FROM follows WHERE follower_id = $1 AND followee_id = $2 RETURNING true",
                follower,
                followee,
            )
            rows = await record_unfollows(conn, [(follower, followee)]) if gone else []
        if gone:
            await self._relations.follows_changed([follower], rows)
        await self._counters.observe(rows)
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
        mine, other = (
            ("followee_id", "follower_id")
            if direction == "followers"
            else ("follower_id", "followee_id")
        )
        async with self._db.connection() as conn:
            rows = await conn.fetch(
                f"""
                SELECT f.{other} AS id, f.created_at FROM follows f
                WHERE f.{mine} = $1
                  AND ($2::timestamptz IS NULL OR (f.created_at, f.{other}) < ($2, $3::uuid))
                  AND NOT EXISTS (
                      SELECT 1 FROM blocks b
                      WHERE (b.blocker_id = f.{other} AND b.blocked_id = $5)
                         OR (b.blocker_id = $5 AND b.blocked_id = f.{other}))
                ORDER BY f.created_at DESC, f.{other} DESC LIMIT $4
                """,
                user_id,
                since[0] if since else None,
                since[1] if since else None,
                limit + 1,
                viewer,
            )
        return page_of(rows, limit, "id")

    async def follow_state(
        self, viewer: uuid.UUID, ids: list[uuid.UUID]
    ) -> dict[uuid.UUID, tuple[bool, bool]]:
        """For each id: (viewer follows them, they follow the viewer), in one query."""
        async with self._db.connection() as conn:
            rows = await conn.fetch(
                """
                SELECT u.id,
                       EXISTS (SELECT 1 FROM follows WHERE follower_id = $1 AND followee_id = u.id)
                           AS viewer_follows,
                       EXISTS (SELECT 1 FROM follows WHERE follower_id = u.id AND followee_id = $1)
                           AS follows_viewer
                FROM unnest($2::uuid[]) AS u(id)
                """,
                viewer,
                ids,
            )
        return {r["id"]: (r["viewer_follows"], r["follows_viewer"]) for r in rows}

    async def suggestions(self, viewer: uuid.UUID, first: int | None) -> list[uuid.UUID]:
        """People followed by people you follow, most such followers first."""
        limit = first if first is not None else 10
        if not 0 <= limit <= MAX_SUGGESTIONS:
            raise InvalidInput(f"first must be between 0 and {MAX_SUGGESTIONS}")
        async with self._db.connection() as conn:
            rows = await conn.fetch(
                """
                SELECT f2.followee_id AS id, count(*) AS through, max(f2.created_at) AS latest
                FROM follows f1
                JOIN follows f2 ON f2.follower_id = f1.followee_id
                WHERE f1.follower_id = $1
                  AND f2.followee_id <> $1
                  AND NOT EXISTS (SELECT 1 FROM follows mine
                                  WHERE mine.follower_id = $1 AND mine.followee_id = f2.followee_id)
                  AND NOT EXISTS (SELECT 1 FROM blocks b
                                  WHERE (b.blocker_id = $1 AND b.blocked_id = f2.followee_id)
                                     OR (b.blocker_id = f2.followee_id AND b.blocked_id = $1))
                GROUP BY f2.followee_id
                ORDER BY through DESC, latest DESC, f2.followee_id
                LIMIT $2
                """,
                viewer,
                limit,
            )
        return [row["id"] for row in rows]
