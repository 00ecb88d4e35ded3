"""GraphQL operations of chat: rooms, history, sending, read markers, and the live streams
(`messageAdded` with gap-free replay, `typing`, `presence`).

Blocks hold in every room: when a block stands between two members of a room (a direct
room from before the block, or a group someone else put them in), neither sees the other
through it. Their messages are left out of history, replay, live delivery, `lastMessage`
and `unreadCount`; they are missing from `members`, `readUpTo` and `presence`; their typing
is not shown. Everyone else in the room sees both. A member leaving ends their three live
streams of the room (the shard's leave notice), and with them their presence in it.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncGenerator, AsyncIterator

import strawberry

from actors.chat_shard import CHAT_CHANNEL
from gateway.errors import BAD_USER_INPUT, user_error
from gateway.schema.chat_types import ChatRoom, MemberRead, Message, Presence, TypingEvent
from gateway.schema.types import Connection, Edge, NovaInfo, parse_id
from gateway.services.chat import (
    DELETED_CHANNEL,
    PRESENCE_CHANNEL,
    READ_CHANNEL,
    TYPING_CHANNEL,
    check_message,
    left_notice,
    message_from_channel,
    read_marker,
)

REPLAY_PAGE = 200
PRESENCE_RECHECK_S = 10.0  # `presence` re-reads who is online at least this often
MAX_HISTORY = 100
# graphql-transport-ws leaves 4000-4999 to applications; 4400-4499 are the protocol's.
SLOW_SUBSCRIBER_CLOSE = 4508


@strawberry.input
class CreateRoomInput:
    member_ids: list[strawberry.ID] = strawberry.field(
        description="The other members: one makes a DIRECT room, more a GROUP (up to 500)."
    )
    name: str | None = None


@strawberry.input
class SendMessageInput:
    room_id: strawberry.ID
    text: str = strawberry.field(
        description="Up to 4,000 characters; may be empty when the message carries media."
    )
    client_message_id: str = strawberry.field(
        description="Chosen by the client; a retry with the same id returns the original."
    )
    media_ids: list[strawberry.ID] | None = strawberry.field(
        default=None,
        description="Up to 4 pictures or 1 video: your own completed uploads "
        "(PROCESSING or READY), not used before. Shown to the room's members only.",
    )


def _room_id(value: strawberry.ID) -> uuid.UUID:
    return parse_id(value, "roomId")


@strawberry.type
class ChatQuery:
    @strawberry.field(description="Your rooms, most recent activity first.")
    async def chat_rooms(
        self, info: NovaInfo, first: int | None = 20, after: str | None = None
    ) -> Connection[ChatRoom]:
        viewer = info.context.require_user().user_id
        items, more = await info.context.runtime.chat.rooms(viewer, first, after)
        edges = [Edge(cursor=cursor, node=ChatRoom.from_record(room)) for cursor, room in items]
        return Connection.of(edges, more)

    @strawberry.field(description="A room you are a member of.")
    async def chat_room(self, info: NovaInfo, id: strawberry.ID) -> ChatRoom:
        viewer = info.context.require_user().user_id
        return ChatRoom.from_record(await info.context.runtime.chat.room(_room_id(id), viewer))

    @strawberry.field(description="History, newest last; page back with `before` (a cursor).")
    async def messages(
        self,
        info: NovaInfo,
        room_id: strawberry.ID,
        last: int | None = 50,
        before: str | None = None,
    ) -> Connection[Message]:
        viewer = info.context.require_user().user_id
        limit = 50 if last is None else last
        if not 0 <= limit <= MAX_HISTORY:
            raise user_error(f"last must be between 0 and {MAX_HISTORY}", BAD_USER_INPUT)
        before_seq = _seq_cursor(before) if before else None
        page = await info.context.runtime.chat.shards.history(
            _room_id(room_id), viewer, before_seq, limit
        )
        hidden = await info.context.loaders.blocked()
        edges = [
            Edge(cursor=str(m.seq), node=Message.from_record(m))
            for m in page
            if m.sender_id not in hidden
        ]
        # Paging goes by seq: a page that hides messages is shorter, and its start cursor
        # is the oldest seq looked at, so the next page starts before it.
        connection = Connection.of(edges, False, has_previous_page=bool(page) and page[0].seq > 1)
        if page:
            connection.page_info.start_cursor = str(page[0].seq)
        return connection


def _seq_cursor(cursor: str) -> int:
    if not cursor.isdigit():
        raise user_error("before is not a valid cursor", BAD_USER_INPUT)
    return int(cursor)


@strawberry.type
class ChatMutation:
    @strawberry.mutation(description="Start a room: one other member → DIRECT (one per pair).")
    async def create_room(self, info: NovaInfo, input: CreateRoomInput) -> ChatRoom:
        viewer = info.context.require_user().user_id
        members = [parse_id(m, "memberIds") for m in input.member_ids]
        room = await info.context.runtime.chat.create_room(viewer, members, input.name)
        return ChatRoom.from_record(room)

    @strawberry.mutation(description="Add members to a group room (members only).")
    async def add_room_members(
        self, info: NovaInfo, room_id: strawberry.ID, user_ids: list[strawberry.ID]
    ) -> ChatRoom:
        viewer = info.context.require_user().user_id
        room = _room_id(room_id)
        await info.context.runtime.chat.shards.add_members(
            room, viewer, [parse_id(u, "userIds") for u in user_ids]
        )
        return ChatRoom.from_record(await info.context.runtime.chat.room(room, viewer))

    @strawberry.mutation(description="Leave a group room.")
    async def leave_room(self, info: NovaInfo, room_id: strawberry.ID) -> bool:
        viewer = info.context.require_user().user_id
        await info.context.runtime.chat.shards.leave(_room_id(room_id), viewer)
        return True

    @strawberry.mutation(description="Send a message; idempotent by clientMessageId.")
    async def send_message(self, info: NovaInfo, input: SendMessageInput) -> Message:
        viewer = info.context.require_user().user_id
        media = tuple(parse_id(m, "mediaIds") for m in input.media_ids or [])
        check_message(input.text, input.client_message_id, has_media=bool(media))
        room = _room_id(input.room_id)
        if media:
            await info.context.runtime.media.check_selection(viewer, media)
        message = await info.context.runtime.chat.shards.send(
            room, viewer, input.text, input.client_message_id, media
        )
        return Message.from_record(message)

    @strawberry.mutation(
        description="Delete a message you sent: it stays in the room's sequence as a "
        "tombstone (`deleted`, no text, no media) and its media is removed later. "
        "Deleting again answers the same."
    )
    async def delete_message(
        self, info: NovaInfo, room_id: strawberry.ID, id: strawberry.ID
    ) -> Message:
        viewer = info.context.require_user().user_id
        tombstone = await info.context.runtime.chat.shards.delete(
            _room_id(room_id), parse_id(id), viewer
        )
        return Message.from_record(tombstone)

    @strawberry.mutation(description="Mark messages up to `seq` as read.")
    async def mark_room_read(self, info: NovaInfo, room_id: strawberry.ID, seq: int) -> bool:
        viewer = info.context.require_user().user_id
        return await info.context.runtime.chat.mark_read(_room_id(room_id), viewer, seq)

    @strawberry.mutation(description="Tell the room you are typing (never stored).")
    async def send_typing(self, info: NovaInfo, room_id: strawberry.ID) -> bool:
        viewer = info.context.require_user().user_id
        room = _room_id(room_id)
        await info.context.runtime.chat.shards.member_room(room, viewer)
        await info.context.runtime.chat.typing(room, viewer)
        return True


@strawberry.type
class ChatSubscription:
    @strawberry.subscription(
        description="Messages of a room in seq order: first everything after `afterSeq` "
        "(if given), then live. Reconnect with the last seq you saw to miss nothing."
    )
    async def message_added(
        self, info: NovaInfo, room_id: strawberry.ID, after_seq: int | None = None
    ) -> AsyncGenerator[Message, None]:
        viewer = info.context.require_user().user_id
        room = _room_id(room_id)
        if after_seq is not None and after_seq < 0:
            raise user_error("afterSeq must be >= 0", BAD_USER_INPUT)
        runtime = info.context.runtime
        _, last_seq = await runtime.chat.shards.member_room(room, viewer)
        next_seq = (last_seq if after_seq is None else after_seq) + 1
        channel = CHAT_CHANNEL.format(room)
        queue_size = runtime.settings.chat_subscriber_queue
        # Subscribe before replaying, so nothing published meanwhile is missed.
        async with (
            runtime.hub.listen(channel, max_queue=queue_size, decode=_live_message) as subscriber,
            runtime.chat.online(room, viewer),
        ):
            while True:  # replay what the client missed
                replay = await runtime.chat.shards.after(room, viewer, next_seq - 1, REPLAY_PAGE)
                hidden = await runtime.relations.hidden(viewer)
                for message in replay:
                    next_seq = message.seq + 1
                    if message.sender_id not in hidden:
                        yield Message.from_record(message)
                if len(replay) < REPLAY_PAGE:
                    break
            while True:
                published = await subscriber.queue.get()
                if subscriber.overflowed:
                    await _close_slow(info)
                    return
                if isinstance(published, uuid.UUID):  # a member left
                    if published == viewer:
                        return  # the subscription completes: no more of this room
                    continue
                if published.seq < next_seq:
                    continue  # already sent (replay overlapped the live stream)
                # Blocks as they stand now (the replica's cache, dropped on every change).
                hidden = await runtime.relations.hidden(viewer)
                info.context.reset_loaders()
                if published.seq == next_seq:
                    next_seq += 1
                    if published.record.sender_id not in hidden:
                        yield published  # the object every local subscriber of the room gets
                    continue
                # A publish was lost: fill the gap in order.
                missing = await runtime.chat.shards.after(
                    room, viewer, next_seq - 1, published.seq - next_seq + 1
                )
                for each in missing:
                    if each.seq >= next_seq:
                        next_seq = each.seq + 1
                        if each.sender_id not in hidden:
                            yield Message.from_record(each)

    @strawberry.subscription(
        description="Messages deleted in a room, as tombstones, as it happens (history and "
        "`messageAdded` replays show them deleted too)."
    )
    async def message_deleted(
        self, info: NovaInfo, room_id: strawberry.ID
    ) -> AsyncGenerator[Message, None]:
        viewer = info.context.require_user().user_id
        async for raw in _while_member(info, _room_id(room_id), DELETED_CHANNEL):
            tombstone = message_from_channel(raw)
            if isinstance(tombstone, uuid.UUID):
                continue
            if tombstone.sender_id not in await info.context.runtime.relations.hidden(viewer):
                info.context.reset_loaders()
                yield Message.from_record(tombstone)

    @strawberry.subscription(description="Who is typing in a room, as it happens.")
    async def typing(
        self, info: NovaInfo, room_id: strawberry.ID
    ) -> AsyncGenerator[TypingEvent, None]:
        viewer = info.context.require_user().user_id
        room = _room_id(room_id)
        async for raw in _while_member(info, room, TYPING_CHANNEL):
            user = uuid.UUID(raw)
            if user != viewer and user not in await info.context.runtime.relations.hidden(viewer):
                yield TypingEvent(room_id=strawberry.ID(str(room)), user_id=user)

    @strawberry.subscription(
        description="Members' read markers in a room as they move (`markRoomRead`), the "
        "viewer's own included (their other devices); the room's `readUpTo` says where "
        "they stand now."
    )
    async def room_read(
        self, info: NovaInfo, room_id: strawberry.ID
    ) -> AsyncGenerator[MemberRead, None]:
        viewer = info.context.require_user().user_id
        relations = info.context.runtime.relations
        async for raw in _while_member(info, _room_id(room_id), READ_CHANNEL):
            marker = read_marker(raw)
            if marker is None:
                continue
            user, seq = marker
            if user not in await relations.hidden(viewer):
                info.context.reset_loaders()
                yield MemberRead(seq=seq, user_id=user)

    @strawberry.subscription(description="Members online in a room now, then on each change.")
    async def presence(
        self, info: NovaInfo, room_id: strawberry.ID
    ) -> AsyncGenerator[Presence, None]:
        viewer = info.context.require_user().user_id
        room = _room_id(room_id)
        runtime = info.context.runtime
        await runtime.chat.shards.member_room(room, viewer)
        async with (
            runtime.hub.listen(PRESENCE_CHANNEL.format(room), max_queue=100) as subscriber,
            runtime.chat.online(room, viewer),
        ):
            last: list[uuid.UUID] | None = None
            while True:
                hidden = await runtime.relations.hidden(viewer)
                online = [u for u in await runtime.chat.online_users(room) if u not in hidden]
                if online != last:
                    last = online
                    info.context.reset_loaders()
                    yield Presence(room_id=strawberry.ID(str(room)), user_ids=online)
                with contextlib.suppress(TimeoutError):
                    change = await asyncio.wait_for(subscriber.queue.get(), PRESENCE_RECHECK_S)
                    if left_notice(change) == viewer:
                        return  # the viewer left the room: no longer online in it


async def _while_member(info: NovaInfo, room: uuid.UUID, channel: str) -> AsyncIterator[str]:
    """What is published on one of the room's ephemeral channels (typing, read markers),
    for a member, until the shard's notice that they left it."""
    viewer = info.context.require_user().user_id
    runtime = info.context.runtime
    await runtime.chat.shards.member_room(room, viewer)
    async with runtime.hub.listen(channel.format(room), max_queue=100) as subscriber:
        while True:
            raw = await subscriber.queue.get()
            left = left_notice(raw)
            if left is None:
                yield raw
            elif left == viewer:
                return


def _live_message(raw: bytes) -> Message | uuid.UUID:
    """A room channel's publication, decoded once for all of this replica's subscribers:
    a message they share, or the id of a member who left."""
    published = message_from_channel(raw.decode())
    if isinstance(published, uuid.UUID):
        return published
    shared = Message.from_record(published)
    shared.execution_memo = {}
    return shared


async def _close_slow(info: NovaInfo) -> None:
    """Disconnect a subscriber that fell too far behind; it resumes with `afterSeq`."""
    websocket = info.context.request
    with contextlib.suppress(Exception):
        await websocket.close(
            code=SLOW_SUBSCRIBER_CLOSE, reason="too slow: reconnect with afterSeq"
        )
