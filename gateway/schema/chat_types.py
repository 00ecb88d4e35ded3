"""GraphQL types of chat: rooms, messages, read markers, typing and presence events.

What a member sees of a room leaves out anyone hidden from them by a block (their
messages in `lastMessage` and `unreadCount`, themselves in `members` and `readUpTo`); the
operations and streams are in `gateway.schema.chat`.
"""

from __future__ import annotations

import enum
import uuid
from collections.abc import Hashable
from datetime import datetime
from typing import TYPE_CHECKING, Annotated, Any

import strawberry

from gateway.schema.types import NovaInfo, User, load_user, load_users
from storage.repositories.chat import Message as MessageRecord
from storage.repositories.chat_rooms import RoomRecord
from storage.repositories.erase_account import ERASED

if TYPE_CHECKING:
    from gateway.schema.media import Media

LAST_MESSAGE_LOOKBACK = 20  # `lastMessage`: the newest visible among this many


@strawberry.enum
class ChatRoomKind(enum.Enum):
    DIRECT = "direct"
    GROUP = "group"


@strawberry.type
class Message:
    id: strawberry.ID
    room_id: strawberry.ID
    text: str
    seq: int
    client_message_id: str
    created_at: datetime
    deleted: bool = strawberry.field(
        description="Deleted by its sender (`deleteMessage`) or removed by a moderator "
        "(`removedByModeration`): no text, no media."
    )
    removed_by_moderation: bool = strawberry.field(
        default=False, description="Removed by a moderator (`moderate`), not its sender."
    )
    record: strawberry.Private[MessageRecord]
    # Set on a live message that every subscriber of the room receives as this one object:
    # its results are shared between them (`gateway.transport.shared_events`).
    execution_memo: strawberry.Private[dict[Hashable, Any] | None] = None

    @classmethod
    def from_record(cls, record: MessageRecord) -> Message:
        return cls(
            id=strawberry.ID(str(record.id)),
            room_id=strawberry.ID(str(record.room_id)),
            text="" if record.deleted_at else record.text,
            deleted=record.deleted_at is not None,
            removed_by_moderation=record.removed_at is not None,
            seq=record.seq,
            client_message_id=record.client_message_id,
            created_at=record.created_at,
            record=record,
        )

    @strawberry.field(description="Null when the sender's account was erased (`senderDeleted`).")
    async def sender(self, info: NovaInfo) -> User | None:
        if self.record.sender_id == ERASED:
            return None
        return await load_user(info, self.record.sender_id)

    @strawberry.field(
        description="Sent from an account deleted since: shown as from a deleted account."
    )
    def sender_deleted(self) -> bool:
        return self.record.sender_id == ERASED

    @strawberry.field(
        description="Its pictures or video, in order; their URLs are signed and expire "
        "(a message's media is private to the room)."
    )
    async def media(
        self, info: NovaInfo
    ) -> list[Annotated[Media, strawberry.lazy("gateway.schema.media")]]:
        from gateway.schema.media import media_of

        if not self.record.media_ids or self.record.deleted_at is not None:
            return []
        records = await info.context.loaders.media.load_many(list(self.record.media_ids))
        return [media_of(info, r) for r in records if r is not None]


@strawberry.type
class MemberRead:
    seq: int
    user_id: strawberry.Private[uuid.UUID]

    @strawberry.field
    async def user(self, info: NovaInfo) -> User | None:
        return await load_user(info, self.user_id)


@strawberry.type
class ChatRoom:
    id: strawberry.ID
    kind: ChatRoomKind
    name: str | None
    created_at: datetime
    last_seq: int
    record: strawberry.Private[RoomRecord]

    @classmethod
    def from_record(cls, record: RoomRecord) -> ChatRoom:
        return cls(
            id=strawberry.ID(str(record.id)),
            kind=ChatRoomKind(record.kind),
            name=record.name,
            created_at=record.created_at,
            last_seq=record.last_seq,
            record=record,
        )

    @strawberry.field
    async def members(self, info: NovaInfo) -> list[User]:
        markers = await _visible_markers(info, self.record.id)
        users = await load_users(info, [user_id for user_id, _ in markers])
        return [user for user in users if user is not None]

    @strawberry.field(description="How far each member has read (their last read seq).")
    async def read_up_to(self, info: NovaInfo) -> list[MemberRead]:
        markers = await _visible_markers(info, self.record.id)
        return [MemberRead(seq=seq, user_id=user_id) for user_id, seq in markers]

    @strawberry.field
    async def last_message(self, info: NovaInfo) -> Message | None:
        viewer = info.context.require_user().user_id
        recent = await info.context.runtime.chat.shards.history(
            self.record.id, viewer, None, LAST_MESSAGE_LOOKBACK
        )
        hidden = await info.context.loaders.blocked()
        visible = [m for m in recent if m.sender_id not in hidden]
        return Message.from_record(visible[-1]) if visible else None

    @strawberry.field(description="Messages from others after your read marker.")
    async def unread_count(self, info: NovaInfo) -> int:
        viewer = info.context.require_user().user_id
        hidden = await info.context.loaders.blocked()
        return await info.context.runtime.chat.unread(self.record.id, viewer, hidden)


async def _visible_markers(info: NovaInfo, room_id: uuid.UUID) -> list[tuple[uuid.UUID, int]]:
    """The room's members and read markers, without those hidden from the viewer."""
    markers = await info.context.runtime.chat.read_markers(room_id)
    hidden = await info.context.loaders.blocked()
    return [(user_id, seq) for user_id, seq in markers if user_id not in hidden]


@strawberry.type
class TypingEvent:
    room_id: strawberry.ID
    user_id: strawberry.Private[uuid.UUID]

    @strawberry.field
    async def user(self, info: NovaInfo) -> User | None:
        return await load_user(info, self.user_id)


@strawberry.type
class Presence:
    room_id: strawberry.ID
    user_ids: strawberry.Private[list[uuid.UUID]]

    @strawberry.field(description="Members online in the room now.")
    async def online(self, info: NovaInfo) -> list[User]:
        users = await load_users(info, self.user_ids)
        return [user for user in users if user is not None]
