"""The notifications consumer: turns events into inbox rows and live pushes.

The `notifications` consumer turns events into rows for the person they concern:

* `graph.follow.created`: the followee (FOLLOW);
* `social.like.created`, `social.comment.created`, `social.share.created`: the post's
  author (LIKE, COMMENT, SHARE). Likes of one post fold into its unread LIKE row, which
  names the latest liker and counts them all;
* `content.post.created`: each user the text @mentions (MENTION);
* `chat.message.sent`: each member of the room, other than the sender, who was not
  watching the room when the event was applied (no `messageAdded` or `presence`
  subscription open on any replica) and has not read that far (MESSAGE). A room's
  messages fold into one unread row per member, and `markRoomRead` past its latest
  message marks it read. If Redis cannot say who is watching, everyone is notified: a
  notification too many beats a message missed.

A notification is dated by the act it reports (the event's `occurred_at`). Acts older than
`NOVA_NOTIFICATION_MAX_AGE_S` (7 days) make none: a group that starts on a retained log,
as on the upgrade that adds this consumer, does not flood inboxes; and only acts of the
last `NOVA_NOTIFICATION_LIVE_S` (300 s) are pushed live.

Recipients' preferences (`notificationPreferences`) filter what is written: a kind switched
off in the app, a muted user's acts and a muted room's messages write nothing.

Rows are written in the consumer ledger's transaction, so a redelivered event never
notifies twice, together with a `notification.sent` outbox event per row. Once the batch
has committed, each new or grown row is published on `nova:notify:<user>`, where the
recipient's `notificationAdded` subscriptions (on any gateway replica) pick it up. A live
push that is lost (Redis down, a crash between commit and publish) is still in the inbox.
"""

from __future__ import annotations

import json
import logging
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any, ClassVar

import redis.asyncio as aioredis

from actors.settings import ActorSettings
from storage.db import Connection
from storage.errors import PoisonEvent, classify
from storage.events import Event, payload_id
from storage.kafka.consumer import BatchConsumer
from storage.outbox.rows import add_events
from storage.presence import online_in_rooms
from storage.redis_client import make_redis
from storage.repositories.notification_preferences import preferences_of
from storage.repositories.notifications import (
    NewNotification,
    NotificationRecord,
    insert_notifications,
    room_members,
    users_named,
)

log = logging.getLogger(__name__)

NOTIFY_CHANNEL = "nova:notify:{}"
SENT = "notification.sent"
_ON_POST = {
    "social.like.created": "like",
    "social.comment.created": "comment",
    "social.share.created": "share",
}
MAX_MENTIONS = 20  # per post: a post naming 500 people is spam, not 500 notifications


class NotificationConsumer(BatchConsumer[ActorSettings]):
    name: ClassVar[str] = "notifications"
    topics: ClassVar[tuple[str, ...]] = (
        "graph.follow.created",
        "social.like.created",
        "social.comment.created",
        "social.share.created",
        "content.post.created",
        "chat.message.sent",
    )

    def __init__(self, settings: ActorSettings) -> None:
        super().__init__(settings)
        self._redis: aioredis.Redis | None = None
        # Rows written per event, published once their batch has committed. Keyed by
        # event: partitions are applied concurrently.
        self._unpublished: dict[uuid.UUID, list[NotificationRecord]] = {}

    async def start(self) -> None:
        settings = self.settings
        self._redis = make_redis(settings)

    async def stop(self) -> None:
        if self._redis is not None:
            await self._redis.aclose()

    async def apply_many(self, events: Sequence[Event], conn: Connection) -> None:
        for event in events:  # rows of an attempt that rolled back were never written
            self._unpublished.pop(event.event_id, None)
        oldest = datetime.now(UTC) - timedelta(seconds=self.settings.notification_max_age_s)
        events = [e for e in events if e.occurred_at >= oldest]  # old news notifies no one
        mentioned = await self._mentioned(conn, events)
        wanted = [n for event in events for n in self._notifications(event, mentioned)]
        wanted += await self._unseen_messages(conn, events)
        wanted = await _preferred(conn, wanted)
        if not wanted:
            return
        written = await insert_notifications(conn, wanted)
        if not written:
            return
        await add_events(conn, [_sent_event(record) for record in written])
        # `after_commit` gets the batch (or, one at a time, this one event): keyed by the
        # last event, the rows are pushed once, after their commit.
        self._unpublished[events[-1].event_id] = written

    async def after_commit(self, events: Sequence[Event]) -> None:
        records = [r for e in events for r in self._unpublished.pop(e.event_id, [])]
        # A backlog (a new consumer group, a long outage) lands in the inbox quietly.
        recent = datetime.now(UTC) - timedelta(seconds=self.settings.notification_live_s)
        records = [r for r in records if r.created_at >= recent]
        if not records or self._redis is None:
            return
        try:
            async with self._redis.pipeline(transaction=False) as pipe:
                for record in records:
                    pipe.publish(
                        NOTIFY_CHANNEL.format(record.user_id), json.dumps(record.to_json())
                    )
                await pipe.execute()
        except Exception as exc:  # the inbox has them; only the live push is lost
            log.warning("notifications not pushed live: %s", classify(exc, "redis"))

    async def _mentioned(self, conn: Connection, events: Sequence[Event]) -> dict[str, uuid.UUID]:
        """Everyone @mentioned in the batch's new posts, by lower-cased username."""
        names: set[str] = set()
        for event in events:
            if event.type == "content.post.created":
                names.update(_mentions(dict(event.payload)))
        return await users_named(conn, sorted(names))

    async def _unseen_messages(
        self, conn: Connection, events: Sequence[Event]
    ) -> list[NewNotification]:
        """MESSAGE notifications for members away from the room and behind on it."""
        sent = [e for e in events if e.type == "chat.message.sent"]
        if not sent:
            return []
        parsed = [_sent_message(e) for e in sent]
        rooms = sorted({room for room, *_ in parsed})
        members = await room_members(conn, rooms)
        watching = await self._watching(rooms)
        return [
            NewNotification(member.user_id, "message", sender, None, at, room_id=room, seq=seq)
            for room, sender, seq, at in parsed
            for member in members.get(room, [])
            if member.user_id != sender
            and member.user_id not in watching.get(room, set())
            and member.read_up_to < seq
            and member.joined_at <= at
        ]

    async def _watching(self, rooms: list[uuid.UUID]) -> dict[uuid.UUID, set[uuid.UUID]]:
        if self._redis is None:
            return {}
        try:
            online = await online_in_rooms(self._redis, rooms)
        except Exception as exc:
            log.warning("presence unknown, notifying every member: %s", classify(exc, "redis"))
            return {}
        return {room: set(users) for room, users in online.items()}

    def _notifications(
        self, event: Event, mentioned: dict[str, uuid.UUID]
    ) -> list[NewNotification]:
        payload, at = dict(event.payload), event.occurred_at
        if event.type == "graph.follow.created":
            followee = payload_id(payload, "followee_id")
            follower = payload_id(payload, "follower_id")
            return [NewNotification(followee, "follow", follower, None, at)]
        if event.type in _ON_POST:
            post, author = payload_id(payload, "post_id"), payload_id(payload, "author_id")
            actor = payload_id(payload, "user_id")
            return [NewNotification(author, _ON_POST[event.type], actor, post, at)]
        if event.type == "content.post.created":
            post, author = payload_id(payload, "post_id"), payload_id(payload, "author_id")
            users = {mentioned[name] for name in _mentions(payload) if name in mentioned}
            return [NewNotification(user, "mention", author, post, at) for user in sorted(users)]
        if event.type == "chat.message.sent":
            return []  # `_unseen_messages`: they need the room's members and presence
        raise PoisonEvent(f"notifications: unexpected event type {event.type!r}")


async def _preferred(conn: Connection, wanted: list[NewNotification]) -> list[NewNotification]:
    """What the recipients' preferences let through: their kinds switched on in the app,
    from nobody they muted, in no room they muted. One query per batch, in the ledger's
    transaction, so a change applies from the next event on (no cache to go stale)."""
    if not wanted:
        return []
    preferences = await preferences_of(conn, {n.user_id for n in wanted})
    return [n for n in wanted if preferences[n.user_id].wants_in_app(n.kind, n.actor_id, n.room_id)]


def _sent_message(event: Event) -> tuple[uuid.UUID, uuid.UUID, int, datetime]:
    """A `chat.message.sent` event's (room, sender, seq, when)."""
    payload = dict(event.payload)
    return (
        payload_id(payload, "room_id"),
        payload_id(payload, "sender_id"),
        _seq(payload),
        event.occurred_at,
    )


def _seq(payload: dict[str, Any]) -> int:
    seq = payload.get("seq")
    if not isinstance(seq, int) or isinstance(seq, bool) or seq < 1:
        raise PoisonEvent(f"payload's seq is not a positive integer: {seq!r}")
    return seq


def _mentions(payload: dict[str, Any]) -> list[str]:
    raw = payload.get("mentions") or []
    if not isinstance(raw, list):
        raise PoisonEvent("payload's mentions is not a list")
    return [str(name).lower() for name in raw[:MAX_MENTIONS]]


def _sent_event(record: NotificationRecord) -> Event:
    # The live push's fields, plus `notification_id`, which the payload has always named.
    return Event(SENT, str(record.user_id), {"notification_id": str(record.id), **record.to_json()})
