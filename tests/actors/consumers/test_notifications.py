"""Notifications end to end: follows, likes, comments, shares and mentions reach the right
inbox once, never your own acts or across a block; paging, unread counts, marking read;
and `notificationAdded` over graphql-transport-ws.

Notifications are written by a consumer (outbox → Kafka → `notifications`), so tests wait
for the consumer's ledger to hold an event rather than sleeping."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from gql import Client, gql
from gql.transport.websockets import WebsocketsTransport

from actors.consumers.notifications import NotificationConsumer
from deployments.settings import Settings
from storage.db import Database
from storage.errors import PoisonEvent
from storage.events import Event
from storage.presence import online_users
from storage.redis_client import make_redis
from tests.conftest import wait_until
from tests.support.chat import ADDED, operation, room_of, send, subscribed
from tests.support.social import (
    BLOCK,
    FOLLOW,
    LIKE,
    UNLIKE,
    Member,
    call,
    create_post,
    make_members,
)

pytestmark = pytest.mark.stack

WAIT_S = 30
INBOX = """
query($first: Int, $after: String) {
  notifications(first: $first, after: $after) {
    edges { cursor node { id kind read actorCount createdAt actor { id } post { id } } }
    pageInfo { hasNextPage endCursor }
  }
  unreadNotificationCount
}
"""
MARK = "mutation($upTo: ID) { markNotificationsRead(upTo: $upTo) }"
COMMENT = 'mutation($id: ID!) { createComment(postId: $id, text: "nice") { id } }'
SHARE = "mutation($id: ID!) { sharePost(postId: $id) { id } }"
LIVE = "subscription { notificationAdded { kind read actor { id username } post { id } } }"


async def inbox(http_url: str, member: Member, first: int = 50) -> dict[str, Any]:
    data: dict[str, Any] = (await call(http_url, member, INBOX, first=first)).ok()
    return data


async def consumed(db: Database, event_type: str, **payload: str) -> None:
    """Wait until the notifications consumer has applied the outbox event matching
    `payload`: what it would notify is then in the inbox."""

    async def done() -> bool:
        async with db.connection() as conn:
            found: bool = await conn.fetchval(
                """
                SELECT EXISTS (
                    SELECT 1 FROM outbox o JOIN processed_events p
                      ON p.event_id = o.event_id AND p.consumer = 'notifications'
                    WHERE o.type = $1 AND o.payload @> $2::jsonb)
                """,
                event_type,
                payload,
            )
        return found

    await wait_until(done, timeout_s=WAIT_S, message=f"notifications applied {event_type}")


async def test_each_act_notifies_the_person_it_concerns_once(
    http_url: str, db: Database, settings: Settings
) -> None:
    author, fan, stranger = await make_members(db, settings, 3)
    post = await create_post(http_url, author, "notice me")
    (await call(http_url, fan, FOLLOW, id=author.id)).ok()
    (await call(http_url, fan, LIKE, id=post["id"])).ok()
    (await call(http_url, fan, COMMENT, id=post["id"])).ok()
    (await call(http_url, fan, SHARE, id=post["id"])).ok()
    mention = await create_post(http_url, fan, f"look at this, @{author.username.upper()}")
    (await call(http_url, author, LIKE, id=post["id"])).ok()  # your own act: nothing
    await consumed(db, "content.post.created", post_id=mention["id"])
    await consumed(db, "social.like.created", post_id=post["id"], user_id=author.id)

    # Unlike and like again: the first like notified, the second does not.
    (await call(http_url, fan, UNLIKE, id=post["id"])).ok()
    (await call(http_url, fan, LIKE, id=post["id"])).ok()
    async with db.connection() as conn:
        likes = await conn.fetchval(
            "SELECT count(*) FROM outbox WHERE type = 'social.like.created' AND payload @> $1",
            {"post_id": post["id"], "user_id": fan.id},
        )
    assert likes == 2

    async def all_consumed() -> bool:
        async with db.connection() as conn:
            pending: int = await conn.fetchval(
                """
                SELECT count(*) FROM outbox o
                WHERE o.type = 'social.like.created' AND o.payload @> $1
                  AND NOT EXISTS (SELECT 1 FROM processed_events p
                                  WHERE p.event_id = o.event_id AND p.consumer = 'notifications')
                """,
                {"post_id": post["id"], "user_id": fan.id},
            )
        return pending == 0

    await wait_until(all_consumed, timeout_s=WAIT_S, message="both likes applied")

    data = await inbox(http_url, author)
    nodes = [edge["node"] for edge in data["notifications"]["edges"]]
    assert sorted(n["kind"] for n in nodes) == ["COMMENT", "FOLLOW", "LIKE", "MENTION", "SHARE"]
    assert all(n["actor"] == {"id": fan.id} and not n["read"] for n in nodes)
    assert all(n["actorCount"] == 1 for n in nodes)  # the re-like counted no one twice
    by_kind = {n["kind"]: n for n in nodes}
    assert by_kind["FOLLOW"]["post"] is None
    assert by_kind["LIKE"]["post"] == by_kind["COMMENT"]["post"] == {"id": post["id"]}
    assert by_kind["SHARE"]["post"] == {"id": post["id"]}
    assert by_kind["MENTION"]["post"] == {"id": mention["id"]}
    stamps = [n["createdAt"] for n in nodes]
    assert stamps == sorted(stamps, reverse=True)  # newest first
    assert data["unreadNotificationCount"] == 5
    assert (await inbox(http_url, fan))["notifications"]["edges"] == []
    assert (await inbox(http_url, stranger))["unreadNotificationCount"] == 0

    # Paging: two, two, one; no repeats, no gaps.
    seen: list[str] = []
    after = None
    for expected_more in (True, True, False):
        page = (await call(http_url, author, INBOX, first=2, after=after)).ok()["notifications"]
        seen += [edge["node"]["id"] for edge in page["edges"]]
        assert page["pageInfo"]["hasNextPage"] is expected_more
        after = page["pageInfo"]["endCursor"]
    assert seen == [n["id"] for n in nodes]


async def test_likes_of_a_post_fold_into_one_unread_notification(
    http_url: str, db: Database, settings: Settings
) -> None:
    author, *fans = await make_members(db, settings, 4)
    post = await create_post(http_url, author, "like me")
    for fan in fans:
        (await call(http_url, fan, LIKE, id=post["id"])).ok()
        await consumed(db, "social.like.created", post_id=post["id"], user_id=fan.id)
    [folded] = [e["node"] for e in (await inbox(http_url, author))["notifications"]["edges"]]
    assert (folded["kind"], folded["actorCount"], folded["actor"]) == (
        "LIKE",
        3,
        {"id": fans[-1].id},
    )
    assert (await inbox(http_url, author))["unreadNotificationCount"] == 1

    # Once read, the next new liker starts a new notification; a returning one does not.
    (await call(http_url, author, MARK)).ok()
    (await call(http_url, fans[0], UNLIKE, id=post["id"])).ok()
    (await call(http_url, fans[0], LIKE, id=post["id"])).ok()
    late = (await make_members(db, settings, 1))[0]
    (await call(http_url, late, LIKE, id=post["id"])).ok()
    await consumed(db, "social.like.created", post_id=post["id"], user_id=late.id)
    nodes = [e["node"] for e in (await inbox(http_url, author))["notifications"]["edges"]]
    assert [(n["kind"], n["actorCount"], n["actor"]["id"], n["read"]) for n in nodes] == [
        ("LIKE", 1, late.id, False),
        ("LIKE", 3, fans[-1].id, True),
    ]


async def test_marking_read_up_to_a_notification_and_then_all(
    http_url: str, db: Database, settings: Settings
) -> None:
    author, *fans = await make_members(db, settings, 4)
    for fan in fans:
        (await call(http_url, fan, FOLLOW, id=author.id)).ok()
        await consumed(db, "graph.follow.created", follower_id=fan.id, followee_id=author.id)
    nodes = [e["node"] for e in (await inbox(http_url, author))["notifications"]["edges"]]
    assert len(nodes) == 3

    assert (await call(http_url, author, MARK, upTo=nodes[1]["id"])).ok() == {
        "markNotificationsRead": 2
    }
    after = await inbox(http_url, author)
    assert [e["node"]["read"] for e in after["notifications"]["edges"]] == [False, True, True]
    assert after["unreadNotificationCount"] == 1
    assert (await call(http_url, author, MARK)).ok() == {"markNotificationsRead": 1}
    assert (await call(http_url, author, MARK)).ok() == {"markNotificationsRead": 0}
    assert (await inbox(http_url, author))["unreadNotificationCount"] == 0

    # Someone else's notification, an unknown one, a malformed id, nobody signed in.
    assert (await call(http_url, fans[0], MARK, upTo=nodes[0]["id"])).codes == ["NOT_FOUND"]
    assert (await call(http_url, author, MARK, upTo=str(uuid.uuid4()))).codes == ["NOT_FOUND"]
    assert (await call(http_url, author, MARK, upTo="nope")).codes == ["BAD_USER_INPUT"]
    assert (await call(http_url, None, INBOX)).codes == ["UNAUTHENTICATED"]
    assert (await call(http_url, author, INBOX, first=-1)).codes == ["BAD_USER_INPUT"]


async def test_a_block_stops_notifications_both_ways(
    http_url: str, db: Database, settings: Settings
) -> None:
    author, blocked, blocker = await make_members(db, settings, 3)
    (await call(http_url, author, BLOCK, id=blocked.id)).ok()
    (await call(http_url, blocker, BLOCK, id=author.id)).ok()
    for other in (blocked, blocker):
        post = await create_post(http_url, other, f"hey @{author.username}")
        await consumed(db, "content.post.created", post_id=post["id"])
    friend = (await make_members(db, settings, 1))[0]
    fine = await create_post(http_url, friend, f"hey @{author.username} and @nobody_at_all_x")
    await consumed(db, "content.post.created", post_id=fine["id"])
    nodes = [e["node"] for e in (await inbox(http_url, author))["notifications"]["edges"]]
    assert [(n["kind"], n["actor"]["id"]) for n in nodes] == [("MENTION", friend.id)]


async def test_notification_added_arrives_live(
    http_url: str, db: Database, settings: Settings
) -> None:
    author, fan = await make_members(db, settings, 2)
    transport = WebsocketsTransport(
        url=http_url.replace("http://", "ws://") + "/graphql",
        subprotocols=[WebsocketsTransport.GRAPHQLWS_SUBPROTOCOL],
        init_payload={"authorization": f"Bearer {author.token}"},
    )
    async with Client(transport=transport) as session:
        pushes = session.subscribe(
            gql(
                "subscription { notificationAdded { kind read actor { id username } post { id } } }"
            )
        )
        first = asyncio.ensure_future(anext(pushes))
        await asyncio.sleep(0.5)  # the subscription is registered on its replica
        (await call(http_url, fan, FOLLOW, id=author.id)).ok()
        pushed = await asyncio.wait_for(first, WAIT_S)
        await pushes.aclose()
    assert pushed["notificationAdded"] == {
        "kind": "FOLLOW",
        "read": False,
        "actor": {"id": fan.id, "username": fan.username},
        "post": None,
    }


async def test_old_acts_notify_no_one_and_a_notification_is_dated_by_its_act(
    db: Database, settings: Settings
) -> None:
    """What a consumer group starting on a week of retained log (the upgrade that adds
    it) must do: notify only for recent acts, at their own time, without pushing live."""
    author, old_fan, recent_fan = await make_members(db, settings, 3)
    now = datetime.now(UTC)

    def follow(fan: Member, days_ago: float) -> Event:
        return Event(
            "graph.follow.created",
            fan.id,
            {"follower_id": fan.id, "followee_id": author.id},
            occurred_at=now - timedelta(days=days_ago),
        )

    consumer = NotificationConsumer(settings)
    await consumer.start()
    redis = make_redis(settings)
    pubsub = redis.pubsub(ignore_subscribe_messages=True)
    await pubsub.subscribe(f"nova:notify:{author.id}")
    try:
        events = [follow(old_fan, 8), follow(recent_fan, 2)]
        async with db.transaction() as conn:
            await consumer.apply_many(events, conn)
        await consumer.after_commit(events)
        assert await pubsub.get_message(timeout=1.0) is None  # two days old: not live
    finally:
        await pubsub.aclose()  # type: ignore[no-untyped-call]  # redis-py leaves it untyped
        await redis.aclose()
        await consumer.stop()
    async with db.connection() as conn:
        rows = await conn.fetch(
            "SELECT actor_id, created_at FROM notifications WHERE user_id = $1", author.uuid
        )
    assert [(r["actor_id"], r["created_at"]) for r in rows] == [
        (recent_fan.uuid, events[1].occurred_at)
    ]


ROOM_INBOX = """
query {
  notifications(first: 20) {
    edges { node { kind read messageCount actor { id } post { id } room { id name } } }
  }
  unreadNotificationCount
}
"""


async def messages_in(http_url: str, member: Member) -> tuple[list[dict[str, Any]], int]:
    data = (await call(http_url, member, ROOM_INBOX)).ok()
    nodes = [e["node"] for e in data["notifications"]["edges"] if e["node"]["kind"] == "MESSAGE"]
    return nodes, data["unreadNotificationCount"]


async def test_chat_messages_notify_members_away_from_the_room_until_they_read_it(
    http_url: str, db: Database, settings: Settings
) -> None:

    sender, away, watching = await make_members(db, settings, 3)
    room = await room_of(http_url, sender, away, watching, name="weekend")
    async with subscribed(http_url, watching) as session:
        stream = session.subscribe(operation(ADDED, room=room, after=None))
        first = asyncio.ensure_future(anext(stream))
        redis = make_redis(settings)

        async def watcher_online() -> bool:
            return watching.uuid in await online_users(redis, uuid.UUID(room))

        try:
            await wait_until(watcher_online, timeout_s=WAIT_S, message="watcher online")
        finally:
            await redis.aclose()
        sent = [(await send(http_url, sender, room, f"hi {i}")).ok() for i in range(2)]
        await asyncio.wait_for(first, WAIT_S)  # the watcher did get it live
        await consumed(db, "chat.message.sent", message_id=sent[-1]["sendMessage"]["id"])
        await stream.aclose()

    notified, unread = await messages_in(http_url, away)
    assert notified == [
        {
            "kind": "MESSAGE",
            "read": False,
            "messageCount": 2,
            "actor": {"id": sender.id},
            "post": None,
            "room": {"id": room, "name": "weekend"},
        }
    ]
    assert unread == 1
    assert (await messages_in(http_url, watching))[0] == [], "it was watching the room"
    assert (await messages_in(http_url, sender))[0] == [], "never for your own messages"

    mark = "mutation($room: ID!, $seq: Int!) { markRoomRead(roomId: $room, seq: $seq) }"
    (await call(http_url, away, mark, room=room, seq=1)).ok()
    assert [n["read"] for n in (await messages_in(http_url, away))[0]] == [False]
    (await call(http_url, away, mark, room=room, seq=2)).ok()
    notified, unread = await messages_in(http_url, away)
    assert [n["read"] for n in notified] == [True]
    assert unread == 0

    third = (await send(http_url, sender, room, "still there?")).ok()
    await consumed(db, "chat.message.sent", message_id=third["sendMessage"]["id"])
    notified, unread = await messages_in(http_url, away)
    assert [(n["read"], n["messageCount"]) for n in notified] == [(False, 1), (True, 2)]
    assert unread == 1


async def test_when_presence_is_unknown_every_member_away_or_not_is_notified(
    http_url: str, db: Database, settings: Settings
) -> None:

    sender, other = await make_members(db, settings, 2)
    room = await room_of(http_url, sender, other)
    consumer = NotificationConsumer(
        settings.replace(redis_url="redis://127.0.0.1:9/0", redis_timeout_s=0.5)
    )
    # Redis on a port nothing listens on: who is watching the room cannot be known.
    await consumer.start()
    message = Event(
        "chat.message.sent",
        room,
        {"room_id": room, "message_id": str(uuid.uuid4()), "seq": 1, "sender_id": sender.id},
    )
    try:
        async with db.transaction() as conn:
            await consumer.apply_many([message], conn)
        await consumer.after_commit([message])  # the live push fails quietly too
        bad = Event("chat.message.sent", room, {**message.payload, "seq": "one"})
        async with db.transaction() as conn:
            with pytest.raises(PoisonEvent, match="seq"):
                await consumer.apply_many([bad], conn)
    finally:
        await consumer.stop()
    async with db.connection() as conn:
        rows = await conn.fetch(
            "SELECT user_id, kind, actor_id, message_count FROM notifications WHERE room_id = $1",
            uuid.UUID(room),
        )
    assert [tuple(r) for r in rows] == [(other.uuid, "message", sender.uuid, 1)]


def test_every_kind_the_store_serves_has_a_graphql_kind() -> None:
    from gateway.schema.notifications import NotificationKind
    from storage.repositories.notifications import KINDS

    assert {kind.value for kind in NotificationKind} == set(KINDS)


async def test_a_kind_from_a_newer_release_is_neither_listed_nor_counted(
    db: Database, settings: Settings
) -> None:
    from storage.repositories.notifications import inbox_page, unread_count

    user, actor = await make_members(db, settings, 2)

    class Undo(Exception):
        """Rolls the transaction back: DDL and all (DDL is transactional in PostgreSQL)."""

    seen: dict[str, Any] = {}

    async def mid_upgrade() -> None:
        async with db.transaction() as conn:
            # What a newer release's migration and consumer would do mid rolling upgrade.
            for check in ("notifications_kind_check", "notifications_post_by_kind"):
                await conn.execute(f"ALTER TABLE notifications DROP CONSTRAINT {check}")
            for kind in ("from-the-future", "follow"):
                await conn.execute(
                    "INSERT INTO notifications (id, user_id, kind, actor_id)"
                    " VALUES ($1, $2, $3, $4)",
                    uuid.uuid4(),
                    user.uuid,
                    kind,
                    actor.uuid,
                )
            seen["page"] = await inbox_page(conn, user.uuid, 10, None)
            seen["unread"] = await unread_count(conn, user.uuid)
            raise Undo

    with pytest.raises(Undo):
        await mid_upgrade()
    assert [record.kind for record in seen["page"]] == ["follow"]
    assert seen["unread"] == 1
