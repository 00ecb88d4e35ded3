"""What must hold after a node is lost under load: every acknowledged write is in
PostgreSQL exactly once, rooms' sequences have no gap, and derived state converges (counts
served equal to the likes' rows, feeds holding their followees' posts, every consumer
caught up, nothing dead-lettered)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Any

from actors.consumers import PRODUCTION_CONSUMERS
from storage.db import Database
from tests.chaos.load import Acknowledged, MixedLoad
from tests.support.social import POST, Member, call

FEED_PAGE = """
query($after: String) {
  feed(first: 50, after: $after) { edges { node { id } } pageInfo { hasNextPage endCursor } }
}
"""


async def stored_exactly_once(db: Database, acked: Acknowledged) -> dict[str, list[str]]:
    """Acknowledged writes missing from PostgreSQL, or stored twice, by kind."""
    posts = await db.fetch(
        "SELECT text, array_agg(id::text) AS ids FROM posts WHERE text = ANY($1::text[])"
        " GROUP BY text",
        list(acked.posts),
    )
    found_posts = {r["text"]: r["ids"] for r in posts}
    messages = await db.fetch(
        "SELECT client_message_id, array_agg(id::text) AS ids FROM chat_messages"
        " WHERE client_message_id = ANY($1::text[]) GROUP BY client_message_id",
        list(acked.messages),
    )
    found_messages = {r["client_message_id"]: r["ids"] for r in messages}
    likes = await db.fetch(
        "SELECT user_id::text, post_id::text FROM likes WHERE post_id = ANY($1::uuid[])",
        list(acked.post_authors),
    )
    follows = await db.fetch(
        "SELECT follower_id::text, followee_id::text FROM follows"
        " WHERE follower_id = ANY($1::uuid[])",
        sorted({pair[0] for pair in acked.follows}),
    )
    return {
        "posts_lost": [t for t, i in acked.posts.items() if found_posts.get(t) != [i]],
        "posts_duplicated": [t for t, ids in found_posts.items() if len(ids) > 1],
        "messages_lost": [c for c, i in acked.messages.items() if found_messages.get(c) != [i]],
        "messages_duplicated": [c for c, ids in found_messages.items() if len(ids) > 1],
        "likes_lost": sorted(map(str, acked.likes - {(r[0], r[1]) for r in likes})),
        "follows_lost": sorted(map(str, acked.follows - {(r[0], r[1]) for r in follows})),
    }


async def sequence_gaps(db: Database, rooms: list[str]) -> list[str]:
    """Rooms whose messages' sequence numbers are not 1, 2, ... without a gap."""
    rows = await db.fetch(
        "SELECT room_id::text, count(*) AS n, max(seq) AS last FROM chat_messages"
        " WHERE room_id = ANY($1::uuid[]) GROUP BY room_id",
        rooms,
    )
    return [r["room_id"] for r in rows if r["n"] != r["last"]]


async def counts_served(http_url: str, db: Database, load: MixedLoad) -> bool:
    """Every acknowledged post's like count, as the gateway serves it (from its counter
    shard, wherever that now runs), equals its rows in `likes`."""
    acked = load.acknowledged
    rows = await db.fetch(
        "SELECT p.id::text, (SELECT count(*) FROM likes l WHERE l.post_id = p.id) AS n"
        " FROM posts p WHERE p.id = ANY($1::uuid[])",
        list(acked.post_authors),
    )
    reader = load.members[0]
    for row in rows:
        served = (await call(http_url, reader, POST, id=row["id"])).ok()["post"]
        if served["likeCount"] != row["n"]:
            return False
    return True


async def _feed(http_url: str, member: Member) -> set[str]:
    ids: set[str] = set()
    after = None
    for _ in range(40):
        page = (await call(http_url, member, FEED_PAGE, after=after)).ok()["feed"]
        ids |= {edge["node"]["id"] for edge in page["edges"]}
        if not page["pageInfo"]["hasNextPage"]:
            break
        after = page["pageInfo"]["endCursor"]
    return ids


async def feeds_hold_their_posts(http_url: str, load: MixedLoad) -> bool:
    """Each member's feed holds every acknowledged post of someone they followed, made
    after the follow was acknowledged."""
    acked = load.acknowledged
    for member in load.members:
        wanted = {
            post_id
            for post_id, author in acked.post_authors.items()
            if (member.id, author) in acked.follows
            and acked.post_times[post_id] > acked.follow_times[(member.id, author)]
        }
        if not wanted <= await _feed(http_url, member):
            return False
    return True


async def consumers_caught_up(db: Database, since: datetime) -> bool:
    """Every production consumer applied every event of its topics committed since."""
    import importlib

    for path in PRODUCTION_CONSUMERS:
        module, _, name = path.partition(":")
        consumer = getattr(importlib.import_module(module), name)
        missing = await db.fetchval(
            "SELECT count(*) FROM outbox o WHERE o.topic = ANY($2::text[]) AND o.created_at > $3"
            " AND NOT EXISTS (SELECT 1 FROM processed_events p"
            "  WHERE p.consumer = $1 AND p.event_id = o.event_id)",
            consumer.name,
            list(consumer.topics),
            since,
        )
        if missing:
            return False
    return True


async def dead_letters_since(db: Database, since: datetime) -> int:
    count: int = await db.fetchval("SELECT count(*) FROM dead_letters WHERE failed_at > $1", since)
    return count


async def seconds_until(
    predicate: Callable[[], Awaitable[Any]], *, timeout_s: float, interval_s: float = 0.5
) -> float | None:
    """Seconds until `predicate` holds, polled; None if it did not within `timeout_s`."""
    started = time.monotonic()
    while time.monotonic() - started < timeout_s:
        if await predicate():
            return round(time.monotonic() - started, 2)
        await asyncio.sleep(interval_s)
    return None
