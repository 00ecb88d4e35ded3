"""Follow-graph rows shared by the gateway and workers: block checks, unfollows, events."""

from __future__ import annotations

import uuid

import asyncpg

from storage.events import Event
from storage.outbox.rows import add_event
from storage.repositories.counters import CounterRow, bump


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
