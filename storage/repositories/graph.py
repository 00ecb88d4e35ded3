"""The follow graph: follows and the blocks that exclude them, as the gateway and workers
read and change them.

A follow changes two counter rows (the follower's `following`, the followee's
`followers`); both are bumped in the follow's transaction, with its outbox event, and
returned for the caller to hand to the CounterShards once committed. The module-level
functions run inside someone else's transaction (a block, a chat shard, a consumer).
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass

import asyncpg

from storage.db import Database
from storage.errors import NotFound
from storage.events import Event
from storage.outbox.rows import add_event
from storage.repositories.counters import CounterRow, bump
from storage.repositories.keysets import Bound, Keyed, bound_args
from storage.rows import from_rows


@dataclass(frozen=True)
class Change:
    """What a follow, unfollow or block did: whether anything changed (it was not already
    so), and the counter rows it left."""

    changed: bool
    counters: list[CounterRow]


async def user_exists(conn: asyncpg.Connection, user_id: uuid.UUID) -> bool:
    found: bool = await conn.fetchval("SELECT EXISTS (SELECT 1 FROM users WHERE id = $1)", user_id)
    return found


async def blocked_either_way(conn: asyncpg.Connection, a: uuid.UUID, b: uuid.UUID) -> bool:
    found: bool = await conn.fetchval(
        """
        SELECT EXISTS (SELECT 1 FROM blocks WHERE (blocker_id = $1 AND blocked_id = $2)
                                             OR (blocker_id = $2 AND blocked_id = $1))
        """,
        a,
        b,
    )
    return found


async def unfollow_both_ways(
    conn: asyncpg.Connection, a: uuid.UUID, b: uuid.UUID
) -> list[CounterRow]:
    """Remove follows between `a` and `b` in the caller's transaction (a block does this)."""
    gone = await conn.fetch(
        """
        DELETE FROM follows WHERE (follower_id = $1 AND followee_id = $2)
                               OR (follower_id = $2 AND followee_id = $1)
        RETURNING follower_id, followee_id
        """,
        a,
        b,
    )
    return await record_unfollows(conn, [(r["follower_id"], r["followee_id"]) for r in gone])


async def record_unfollows(
    conn: asyncpg.Connection, pairs: list[tuple[uuid.UUID, uuid.UUID]]
) -> list[CounterRow]:
    deltas: dict[uuid.UUID, dict[str, int]] = {}
    for follower, followee in pairs:
        deltas.setdefault(follower, {}).setdefault("following", 0)
        deltas[follower]["following"] -= 1
        deltas.setdefault(followee, {}).setdefault("followers", 0)
        deltas[followee]["followers"] -= 1
        await add_event(conn, follow_event("graph.follow.deleted", follower, followee))
    return await bump(conn, "user", deltas)


def follow_event(kind: str, follower: uuid.UUID, followee: uuid.UUID) -> Event:
    return Event(kind, str(follower), {"follower_id": str(follower), "followee_id": str(followee)})


# A page of connections: `mine` is the listed user's side of the follow, `other` the
# listed people's. $5 is the viewer: anyone blocked either way by them is left out.
_CONNECTIONS = """
SELECT f.{other} AS id, f.created_at FROM follows f
WHERE f.{mine} = $1
  AND ($2::timestamptz IS NULL OR (f.created_at, f.{other}) < ($2, $3::uuid))
  AND NOT EXISTS (
      SELECT 1 FROM blocks b
      WHERE (b.blocker_id = f.{other} AND b.blocked_id = $5)
         OR (b.blocker_id = $5 AND b.blocked_id = f.{other}))
ORDER BY f.created_at DESC, f.{other} DESC LIMIT $4
"""
_FOLLOWERS = _CONNECTIONS.format(mine="followee_id", other="follower_id")
_FOLLOWING = _CONNECTIONS.format(mine="follower_id", other="followee_id")


class GraphStore:
    def __init__(self, db: Database) -> None:
        self._db = db

    async def follow(self, follower: uuid.UUID, followee: uuid.UUID, event: Event) -> Change | None:
        """Add the follow with its counters and `event` unless it exists. None: the two
        are blocked either way (nothing written); an unknown followee raises `NotFound`."""
        rows: list[CounterRow] = []
        async with self._db.transaction() as conn:
            if not await user_exists(conn, followee):
                raise NotFound("no such user")
            if await blocked_either_way(conn, follower, followee):
                return None
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
                await add_event(conn, event)
        return Change(bool(inserted), rows)

    async def unfollow(self, follower: uuid.UUID, followee: uuid.UUID) -> Change:
        """Remove the follow, if any, with its counters and `graph.follow.deleted` event."""
        async with self._db.transaction() as conn:
            gone = await conn.fetchval(
                "DELETE FROM follows WHERE follower_id = $1 AND followee_id = $2 RETURNING true",
                follower,
                followee,
            )
            rows = await record_unfollows(conn, [(follower, followee)]) if gone else []
        return Change(bool(gone), rows)

    async def followers(
        self, user_id: uuid.UUID, viewer: uuid.UUID | None, after: Bound | None, limit: int
    ) -> list[Keyed]:
        """Who follows `user_id`, newest follow first, none blocked either way by `viewer`."""
        return await self._connections(_FOLLOWERS, user_id, viewer, after, limit)

    async def following(
        self, user_id: uuid.UUID, viewer: uuid.UUID | None, after: Bound | None, limit: int
    ) -> list[Keyed]:
        """Whom `user_id` follows, newest follow first, none blocked either way by `viewer`."""
        return await self._connections(_FOLLOWING, user_id, viewer, after, limit)

    async def _connections(
        self,
        query: str,
        user_id: uuid.UUID,
        viewer: uuid.UUID | None,
        after: Bound | None,
        limit: int,
    ) -> list[Keyed]:
        created_at, other = bound_args(after)
        async with self._db.connection() as conn:
            rows = await conn.fetch(query, user_id, created_at, other, limit, viewer)
        return from_rows(Keyed, rows)

    async def follow_state(
        self, viewer: uuid.UUID, ids: Sequence[uuid.UUID]
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
                list(ids),
            )
        return {r["id"]: (r["viewer_follows"], r["follows_viewer"]) for r in rows}

    async def suggestions(self, viewer: uuid.UUID, limit: int) -> list[uuid.UUID]:
        """People followed by people the viewer follows, most such followers first; not
        the viewer, not followed yet, not blocked either way."""
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

    async def hidden(self, viewer: uuid.UUID) -> frozenset[uuid.UUID]:
        """Everyone the viewer blocked or was blocked by."""
        async with self._db.connection() as conn:
            rows = await conn.fetch(
                """
                SELECT blocked_id AS id FROM blocks WHERE blocker_id = $1
                UNION SELECT blocker_id FROM blocks WHERE blocked_id = $1
                """,
                viewer,
            )
        return frozenset(row["id"] for row in rows)

    async def follows_celebrity(self, viewer: uuid.UUID, max_followers: int) -> bool:
        """Whether the viewer follows anyone with more than `max_followers` followers."""
        async with self._db.connection() as conn:
            found: bool = await conn.fetchval(
                """
                SELECT EXISTS (
                    SELECT 1 FROM follows f
                    JOIN user_counters c ON c.user_id = f.followee_id AND c.followers > $2
                    WHERE f.follower_id = $1)
                """,
                viewer,
                max_followers,
            )
        return found
