"""Helpers for social-loop tests: many signed-in users at once, and common operations.

Registering through the API hashes a password with Argon2id (deliberately slow); tests that
need hundreds of users insert them directly, with a real session row, and sign real access
tokens with the deployment's key ring, so the gateway authenticates them like any other.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, cast

from actors.timeline_shard import timeline_key
from deployments.settings import Settings
from gateway.auth.tokens import KeyRing
from storage.db import Database
from storage.secrets import Sealer
from tests.conftest import wait_until
from tests.support.graphql import Reply, post, unique_name


@dataclass(frozen=True)
class Member:
    id: str
    username: str
    token: str

    @property
    def uuid(self) -> uuid.UUID:
        return uuid.UUID(self.id)


async def make_members(
    db: Database,
    settings: Settings,
    count: int,
    *,
    prefix: str = "m",
    roles: tuple[str, ...] = ("user",),
) -> list[Member]:
    ring = KeyRing(db, Sealer.from_settings(settings), settings)
    await ring.load()
    ids = [uuid.uuid4() for _ in range(count)]
    sessions = [uuid.uuid4() for _ in range(count)]
    names = [unique_name(prefix) for _ in range(count)]
    expires = datetime.now(UTC) + timedelta(days=1)
    async with db.transaction() as conn:
        await conn.executemany(
            "INSERT INTO users (id, username, email, password_hash, roles)"
            " VALUES ($1, $2, $3, 'not-a-login', $4)",
            [(i, n, f"{n}@example.com", list(roles)) for i, n in zip(ids, names, strict=True)],
        )
        await conn.executemany(
            "INSERT INTO auth_sessions (id, user_id, expires_at) VALUES ($1, $2, $3)",
            [(s, i, expires) for s, i in zip(sessions, ids, strict=True)],
        )
    return [
        Member(str(i), n, ring.issue(i, roles, s).token)
        for i, n, s in zip(ids, names, sessions, strict=True)
    ]


async def call(http_url: str, member: Member | None, query: str, **variables: Any) -> Reply:
    return await post(http_url, query, variables, token=member.token if member else None)


CREATE_POST = """
mutation($text: String!, $key: String) {
  createPost(input: {text: $text, idempotencyKey: $key}) {
    id text tags mentions createdAt editedAt likeCount commentCount shareCount viewerHasLiked
    author { id username }
  }
}
"""

POST = """
query($id: ID!) {
  post(id: $id) {
    id text likeCount commentCount shareCount viewerHasLiked
    author { id } sharedPost { id }
  }
}
"""

LIKE = "mutation($id: ID!) { likePost(postId: $id) { id likeCount viewerHasLiked } }"
UNLIKE = "mutation($id: ID!) { unlikePost(postId: $id) { id likeCount viewerHasLiked } }"
FOLLOW = "mutation($id: ID!) { follow(userId: $id) }"
UNFOLLOW = "mutation($id: ID!) { unfollow(userId: $id) }"
BLOCK = "mutation($id: ID!) { blockUser(userId: $id) }"
USER_COUNTS = """
query($id: ID!) {
  user(id: $id) { id followerCount followingCount viewerFollows followsViewer }
}
"""


async def create_post(http_url: str, member: Member, text: str) -> dict[str, Any]:
    created: dict[str, Any] = (await call(http_url, member, CREATE_POST, text=text)).ok()[
        "createPost"
    ]
    return created


FANOUT_WAIT_S = 60
FEED_IDS = "query { feed(first: 50) { edges { node { id } } } }"


async def feed_ids(http_url: str, member: Member) -> list[str]:
    """The ids of the newest 50 posts of `member`'s home feed."""
    edges = (await call(http_url, member, FEED_IDS)).ok()["feed"]["edges"]
    return [edge["node"]["id"] for edge in edges]


async def fanout_dead_letters(db: Database, post_ids: list[str]) -> list[Any]:
    """Dead letters of the fan-out consumer that carry one of these posts."""
    rows: list[Any] = await db.fetch(
        "SELECT event_id, topic, error FROM dead_letters"
        " WHERE consumer = 'timeline-fanout' AND event->'payload'->>'post_id' = ANY($1::text[])",
        post_ids,
    )
    return rows


async def timeline_post_ids(redis: Any, user: uuid.UUID) -> set[str]:
    """The posts in `user`'s home timeline as Redis holds it."""
    members = cast(list[bytes], await redis.zrange(timeline_key(user), 0, -1))
    return {m.decode().partition(":")[0] for m in members}


async def all_fanned_out(
    http_url: str, db: Database, redis: Any, follower: Member, acknowledged: list[str]
) -> None:
    """Every acknowledged post reaches the follower's timeline in Redis and their feed,
    and none of them was dead-lettered on the way."""

    async def in_redis() -> bool:
        return set(acknowledged) <= await timeline_post_ids(redis, uuid.UUID(follower.id))

    try:
        await wait_until(in_redis, timeout_s=FANOUT_WAIT_S, message="the posts in Redis")
    finally:
        letters = await fanout_dead_letters(db, acknowledged)
        assert not letters, f"dead-lettered: {[dict(r) for r in letters]}"
    assert set(acknowledged) <= set(await feed_ids(http_url, follower))
