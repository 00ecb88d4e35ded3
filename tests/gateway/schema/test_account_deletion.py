"""Account deletion end to end, as clients see it: `deleteMyAccount` needs the password and
signs every session out; signing in within the grace period cancels it; once it has passed,
the erasure leaves no trace of the account in any table or Redis key except the audit log's
one tombstone, while the others' posts, counts, rooms and feeds stay right."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from deployments.settings import Settings
from deployments.stack import Stack
from storage.db import Database
from tests.conftest import wait_until
from tests.support.chat import room_of, send
from tests.support.graphql import post, unique_name
from tests.support.mailbox import wait_for_mail
from tests.support.media import uploaded_image
from tests.support.social import (
    FANOUT_WAIT_S,
    FOLLOW,
    LIKE,
    Member,
    call,
    create_post,
    feed_ids,
    make_members,
    timeline_post_ids,
)

pytestmark = pytest.mark.stack

PASSWORD = "Erase-me-correct-horse-42"
REGISTER = """
mutation($email: String!, $username: String!, $password: String!) {
  register(input: {email: $email, username: $username, password: $password}) {
    accessToken user { id username }
  }
}
"""
LOGIN = """
mutation($login: String!, $password: String!) {
  login(input: {login: $login, password: $password}) { accessToken deletionCancelled }
}
"""
DELETE = "mutation($p: String!) { deleteMyAccount(password: $p) { requestedAt eraseAfter } }"
ME = "query { me { id } }"
COUNTS = """
query($id: ID!) { post(id: $id) { likeCount commentCount shareCount } }
"""
USER_COUNTS = "query($id: ID!) { user(id: $id) { followerCount followingCount } }"
COMMENT = "mutation($id: ID!, $text: String!) { createComment(postId: $id, text: $text) { id } }"
SHARE = 'mutation($id: ID!) { sharePost(postId: $id, text: "look") { id } }'
CREATE_WITH_MEDIA = """
mutation($text: String!, $media: [ID!]) {
  createPost(input: {text: $text, mediaIds: $media}) { id }
}
"""
TRACK = "mutation($id: ID!) { trackEvents(events: [{kind: IMPRESSION, postId: $id}]) }"
REPORT = """
mutation($id: ID!) { report(input: {targetType: POST, targetId: $id, reason: SPAM}) { id } }
"""
PREFERENCES = """
mutation {
  updateNotificationPreferences(input: {kinds: [{kind: LIKE, inApp: true, email: false}]}) {
    emailDigest
  }
}
"""
SEARCH = "query($q: String!) { searchUsers(query: $q) { id } }"
HISTORY = """
query($room: ID!) {
  messages(roomId: $room, last: 20) { edges { node { text senderDeleted sender { id } } } }
}
"""


async def register(http_url: str, prefix: str) -> tuple[Member, str]:
    """A member with a password, through `register`; returns it and its email."""
    username = unique_name(prefix)
    email = f"{username}@example.org"
    reply = await post(
        http_url, REGISTER, {"email": email, "username": username, "password": PASSWORD}
    )
    data = reply.ok()["register"]
    return Member(data["user"]["id"], username, data["accessToken"]), email


async def login(http_url: str, username: str) -> Any:
    return await post(http_url, LOGIN, {"login": username, "password": PASSWORD})


async def test_deletion_needs_the_password_signs_out_and_a_sign_in_cancels_it(
    http_url: str, db: Database, stack: Stack
) -> None:
    ada, email = await register(http_url, "del")
    wrong = await call(http_url, ada, DELETE, p="not the password")
    assert wrong.codes == ["BAD_USER_INPUT"]
    (await call(http_url, ada, ME)).ok()
    async with db.connection() as conn:
        assert await conn.fetchval("SELECT erase_after FROM users WHERE id = $1", ada.uuid) is None

    scheduled = (await call(http_url, ada, DELETE, p=PASSWORD)).ok()["deleteMyAccount"]
    erase_after = datetime.fromisoformat(scheduled["eraseAfter"])
    expected = datetime.now(UTC) + timedelta(days=14)
    assert abs((erase_after - expected).total_seconds()) < 120
    assert (await call(http_url, ada, ME)).codes == ["UNAUTHENTICATED"]
    async with db.connection() as conn:
        live = await conn.fetchval(
            "SELECT count(*) FROM auth_sessions WHERE user_id = $1 AND revoked_at IS NULL",
            ada.uuid,
        )
    assert live == 0
    notice = await wait_for_mail(
        stack.layout.mail_dir, to=email, subject_contains="will be deleted", timeout_s=60
    )
    assert erase_after.strftime("%Y-%m-%d %H:%M UTC") in notice.get_content()
    assert "http" not in notice.get_content()

    first = (await login(http_url, ada.username)).ok()["login"]
    assert first["deletionCancelled"] is True
    async with db.connection() as conn:
        assert await conn.fetchval("SELECT erase_after FROM users WHERE id = $1", ada.uuid) is None
    again = (await login(http_url, ada.username)).ok()["login"]
    assert again["deletionCancelled"] is False
    await wait_for_mail(
        stack.layout.mail_dir, to=email, subject_contains="will not be deleted", timeout_s=60
    )
    me = Member(ada.id, ada.username, first["accessToken"])
    assert (await call(http_url, me, ME)).ok()["me"]["id"] == ada.id


async def _rows_naming(db: Database, needles: list[str]) -> dict[str, int]:
    """Every table whose rows, as text, hold one of `needles`: table → row count."""
    found: dict[str, int] = {}
    async with db.connection() as conn:
        tables = await conn.fetch(
            """
            SELECT quote_ident(table_schema) || '.' || quote_ident(table_name) AS name
            FROM information_schema.tables
            WHERE table_type = 'BASE TABLE'
              AND table_schema NOT IN ('pg_catalog', 'information_schema')
            """
        )
        for table in tables:
            count = await conn.fetchval(
                f"SELECT count(*) FROM {table['name']} t "  # names from the catalogue
                "WHERE t::text ILIKE ANY (SELECT '%' || n || '%' FROM unnest($1::text[]) n)",
                needles,
            )
            if count:
                found[table["name"]] = count
    return found


async def _redis_naming(redis: Any, user_id: uuid.UUID, words: list[str]) -> list[str]:
    """Every Redis key whose name or content holds the id (as text or raw bytes) or a word."""
    needles = [str(user_id).encode(), *(w.lower().encode() for w in words)]

    def holds(data: Any) -> bool:
        if not isinstance(data, bytes):
            return False
        return user_id.bytes in data or any(n in data.lower() for n in needles)

    found = []
    async for key in redis.scan_iter(count=1000):
        kind = (await redis.type(key)).decode()
        if kind == "string":
            items = [await redis.get(key)]
        elif kind == "hash":
            items = [x for pair in (await redis.hgetall(key)).items() for x in pair]
        elif kind == "set":
            items = list(await redis.smembers(key))
        elif kind == "zset":
            items = await redis.zrange(key, 0, -1)
        elif kind == "list":
            items = await redis.lrange(key, 0, -1)
        else:
            items = []
        if holds(key) or any(holds(item) for item in items):
            found.append(key.decode(errors="replace"))
    return found


async def test_erasure_leaves_only_a_tombstone_and_corrects_the_rest(
    http_url: str, db: Database, deployed: Settings, redis: Any
) -> None:
    ada, email = await register(http_url, "erase")
    bob, cat = await make_members(db, deployed, 2, prefix="era")
    # Ada's footprint: follows both ways, a post with a picture that followers got in
    # their timelines, likes, a comment and a share on Bob's post, messages, an impression,
    # preferences, a report, notifications, a feed read.
    (await call(http_url, ada, FOLLOW, id=bob.id)).ok()
    (await call(http_url, bob, FOLLOW, id=ada.id)).ok()
    (await call(http_url, cat, FOLLOW, id=ada.id)).ok()
    for reader in (bob, cat):  # timelines exist once read; fan-out then reaches them
        await feed_ids(http_url, reader)
    picture = await uploaded_image(http_url, ada, 64, 48)
    mine = (await call(http_url, ada, CREATE_WITH_MEDIA, text="ada's post", media=[picture])).ok()[
        "createPost"
    ]
    theirs = await create_post(http_url, bob, "bob's post")
    (await call(http_url, ada, LIKE, id=theirs["id"])).ok()
    (await call(http_url, ada, COMMENT, id=theirs["id"], text="nice one")).ok()
    (await call(http_url, ada, SHARE, id=theirs["id"])).ok()
    (await call(http_url, bob, LIKE, id=mine["id"])).ok()
    (await call(http_url, bob, COMMENT, id=mine["id"], text="bob replies")).ok()
    (await call(http_url, ada, TRACK, id=theirs["id"])).ok()
    (await call(http_url, ada, PREFERENCES)).ok()
    (await call(http_url, ada, REPORT, id=theirs["id"])).ok()
    room = await room_of(http_url, ada, bob, cat, name="erasure room")
    (await send(http_url, ada, room, "hello from a soon deleted account")).ok()
    (await send(http_url, bob, room, "hello back")).ok()
    await feed_ids(http_url, ada)

    async def fanned_out() -> bool:
        timelines = [await timeline_post_ids(redis, follower.uuid) for follower in (bob, cat)]
        return all(mine["id"] in timeline for timeline in timelines)

    await wait_until(fanned_out, timeout_s=FANOUT_WAIT_S, message="Ada's post fanned out")
    before = (await call(http_url, bob, COUNTS, id=theirs["id"])).ok()["post"]
    assert before == {"likeCount": 1, "commentCount": 1, "shareCount": 1}

    async def impression_stored() -> bool:
        async with db.connection() as conn:
            found = await conn.fetchval(
                "SELECT count(*) FROM analytics_events WHERE user_id = $1", ada.uuid
            )
        return bool(found)

    await wait_until(impression_stored, timeout_s=60, message="Ada's impression stored")
    # The checks below find the account where it is, before it is erased.
    needles = [ada.id, email, ada.username]
    assert {"public.users", "public.posts", "public.analytics_events"} <= set(
        await _rows_naming(db, needles)
    )
    assert await _redis_naming(redis, ada.uuid, [email, ada.username])

    (await call(http_url, ada, DELETE, p=PASSWORD)).ok()
    async with db.transaction() as conn:  # the grace period, passed
        await conn.execute(
            "UPDATE users SET erase_after = now() - interval '1 second' WHERE id = $1", ada.uuid
        )

    async def scrubbed() -> bool:
        async with db.connection() as conn:
            gone = await conn.fetchval(
                "SELECT NOT EXISTS (SELECT 1 FROM users WHERE id = $1)", ada.uuid
            )
            waiting = await conn.fetchval(
                "SELECT count(*) FROM account_erasures WHERE user_id = $1", ada.uuid
            )
        return bool(gone and waiting == 0)

    try:
        await wait_until(scrubbed, timeout_s=90, message="the account erased and scrubbed")
    except AssertionError:
        async with db.connection() as conn:
            pending = await conn.fetch("SELECT attempts, last_error FROM account_erasures")
            user = await conn.fetchrow("SELECT erase_after FROM users WHERE id = $1", ada.uuid)
        raise AssertionError(f"not erased and scrubbed: {user=}, {pending=}") from None

    assert await _rows_naming(db, needles) == {"public.audit_log": 1}
    async with db.connection() as conn:
        tombstone = await conn.fetchrow("SELECT * FROM audit_log WHERE target_id = $1", ada.uuid)
    assert tombstone["action"] == "ERASE"
    assert tombstone["actor_id"] is None
    assert await _redis_naming(redis, ada.uuid, [email, ada.username]) == []

    # What the others see: counts corrected, Ada's post out of their feeds, her message
    # kept as from a deleted account, and nobody to find or sign in as.
    after = (await call(http_url, bob, COUNTS, id=theirs["id"])).ok()["post"]
    assert after == {"likeCount": 0, "commentCount": 0, "shareCount": 0}
    counts = (await call(http_url, bob, USER_COUNTS, id=bob.id)).ok()["user"]
    assert counts == {"followerCount": 0, "followingCount": 0}
    assert mine["id"] not in await feed_ids(http_url, bob)
    assert mine["id"] not in await feed_ids(http_url, cat)
    history = (await call(http_url, bob, HISTORY, room=room)).ok()["messages"]
    messages = [edge["node"] for edge in history["edges"]]
    erased = [m for m in messages if m["text"] == "hello from a soon deleted account"]
    assert erased
    assert erased[0]["sender"] is None
    assert erased[0]["senderDeleted"] is True
    assert any(m["text"] == "hello back" and m["sender"]["id"] == bob.id for m in messages)
    assert (await call(http_url, bob, SEARCH, q=ada.username)).ok()["searchUsers"] == []
    assert (await login(http_url, ada.username)).codes == ["UNAUTHENTICATED"]
