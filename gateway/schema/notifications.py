"""GraphQL operations of notifications: the inbox, the unread count, marking read, and
`notificationAdded` live (`actors.consumers.notifications` writes and publishes them)."""

from __future__ import annotations

import enum
import json
import logging
import uuid
from collections.abc import AsyncGenerator
from datetime import datetime

import strawberry

from actors.consumers.notifications import NOTIFY_CHANNEL
from gateway.schema.chat_types import ChatRoom
from gateway.schema.types import (
    Connection,
    Edge,
    NovaInfo,
    Post,
    User,
    load_post,
    load_user,
    parse_id,
)
from gateway.services.profiles import decode_cursor, encode_cursor, page_size
from storage.errors import NotFound
from storage.repositories.notifications import KINDS, NotificationRecord

log = logging.getLogger(__name__)


@strawberry.enum
class NotificationKind(enum.Enum):
    FOLLOW = "follow"
    LIKE = "like"
    COMMENT = "comment"
    SHARE = "share"
    MENTION = "mention"
    MESSAGE = "message"


@strawberry.type(
    description="Someone followed you, or liked, commented on, shared or mentioned you in a "
    "post, or wrote in a chat room while you were away from it."
)
class Notification:
    id: strawberry.ID
    kind: NotificationKind
    created_at: datetime
    read: bool
    actor_count: int = strawberry.field(
        description="How many people it stands for: likes of one post fold into one "
        "unread notification naming the latest (`actor`)."
    )
    message_count: int | None = strawberry.field(
        description="MESSAGE: how many messages it stands for (a room's unread messages "
        "fold into one notification naming the latest sender); null for other kinds."
    )
    actor_id: strawberry.Private[uuid.UUID]
    post_id: strawberry.Private[uuid.UUID | None]
    room_id: strawberry.Private[uuid.UUID | None]

    @classmethod
    def from_record(cls, record: NotificationRecord) -> Notification:
        return cls(
            id=strawberry.ID(str(record.id)),
            kind=NotificationKind(record.kind),
            created_at=record.created_at,
            read=record.read,
            actor_count=record.actor_count,
            message_count=record.message_count,
            actor_id=record.actor_id,
            post_id=record.post_id,
            room_id=record.room_id,
        )

    @strawberry.field(description="Who did it; null if their account is gone.")
    async def actor(self, info: NovaInfo) -> User | None:
        if self.actor_id in await info.context.loaders.blocked():
            return None  # hidden by a block made since
        return await load_user(info, self.actor_id)

    @strawberry.field(
        description="The post concerned (the one mentioning you, for MENTION); "
        "null for FOLLOW and MESSAGE and for posts deleted since or hidden by a block."
    )
    async def post(self, info: NovaInfo) -> Post | None:
        if self.post_id is None:
            return None
        return await load_post(info, self.post_id)

    @strawberry.field(
        description="MESSAGE: the chat room; null for other kinds and once you have left it."
    )
    async def room(self, info: NovaInfo) -> ChatRoom | None:
        if self.room_id is None:
            return None
        record = await info.context.loaders.rooms.load(self.room_id)
        return ChatRoom.from_record(record) if record is not None else None


@strawberry.type
class NotificationQuery:
    @strawberry.field(description="Your notifications, newest first.")
    async def notifications(
        self, info: NovaInfo, first: int | None = 20, after: str | None = None
    ) -> Connection[Notification]:
        viewer = info.context.require_user().user_id
        limit = page_size(first)
        before = decode_cursor(after) if after else None
        rows = await info.context.runtime.notifications.page(viewer, limit, before)
        edges = [
            Edge(cursor=encode_cursor(r.created_at, r.id), node=Notification.from_record(r))
            for r in rows[:limit]
        ]
        return Connection.of(edges, len(rows) > limit)

    @strawberry.field(description="How many of your notifications are unread.")
    async def unread_notification_count(self, info: NovaInfo) -> int:
        viewer = info.context.require_user().user_id
        return await info.context.runtime.notifications.unread(viewer)


@strawberry.type
class NotificationMutation:
    @strawberry.mutation(
        description="Mark a notification and every older one read (all of them without "
        "`upTo`); returns how many were unread."
    )
    async def mark_notifications_read(
        self, info: NovaInfo, up_to: strawberry.ID | None = None
    ) -> int:
        viewer = info.context.require_user().user_id
        anchor = parse_id(up_to, "upTo") if up_to is not None else None
        marked = await info.context.runtime.notifications.mark_read(viewer, anchor)
        if marked is None:
            raise NotFound("notification not found")
        return marked


@strawberry.type
class NotificationSubscription:
    @strawberry.subscription(description="Each new notification for you, live.")
    async def notification_added(self, info: NovaInfo) -> AsyncGenerator[Notification, None]:
        viewer = info.context.require_user().user_id
        channel = NOTIFY_CHANNEL.format(viewer)
        async with info.context.runtime.hub.listen(channel) as subscriber:
            while True:
                # A push a slow client missed is still in its inbox: nothing to close for.
                raw = await subscriber.queue.get()
                try:
                    record = NotificationRecord.from_json(json.loads(raw))
                except (ValueError, KeyError, TypeError):
                    log.warning("notificationAdded: unreadable push dropped: %.200s", raw)
                    continue
                if record.kind not in KINDS:  # from a newer release, mid-upgrade
                    continue
                if record.actor_id in await info.context.runtime.relations.hidden(viewer):
                    continue  # across a block (a message in a room both are in, say)
                info.context.reset_loaders()  # fresh posts, users and blocks per push
                yield Notification.from_record(record)
