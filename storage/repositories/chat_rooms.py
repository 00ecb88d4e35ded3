"""Chat rooms as the gateway sees them: creating one (with its members) in one transaction,
listing a member's rooms, read markers and unread counts.

Messages and membership changes of an existing room are its ChatShard's
(`storage.repositories.chat`); presence and typing live in Redis (`storage.presence`).
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

import asyncpg

from storage.db import Database
from storage.repositories.chat import Refusal, refusal
from storage.repositories.notifications import read_room_notifications
from storage.rows import from_row, from_rows


@dataclass(frozen=True)
class RoomRecord:
    """A room as a member lists it; `activity_at` orders the list (last message, or creation)."""

    id: uuid.UUID
    kind: str
    name: str | None
    created_at: datetime
    last_seq: int
    activity_at: datetime


@dataclass(frozen=True)
class ReadMarker:
    user_id: uuid.UUID
    read_up_to: int


_ROOM_COLUMNS = (
    "r.id, r.kind, r.name, r.created_at, r.last_seq,"
    " coalesce(r.last_message_at, r.created_at) AS activity_at"
)


async def _add_members(
    conn: asyncpg.Connection, room_id: uuid.UUID, users: Sequence[uuid.UUID]
) -> None:
    """Members of a new room (a direct room's pair may already be in it)."""
    await conn.execute(
        """
        INSERT INTO chat_members (room_id, user_id)
        SELECT $1, u FROM unnest($2::uuid[]) AS u ON CONFLICT DO NOTHING
        """,
        room_id,
        list(users),
    )


class RoomStore:
    """Rooms for the gateway: each method is one connection or one transaction."""

    def __init__(self, db: Database) -> None:
        self._db = db

    async def open_direct(self, a: uuid.UUID, b: uuid.UUID) -> RoomRecord | Refusal:
        """The same pair always gets the same room (created once, whoever asks first)."""
        key = ":".join(sorted((str(a), str(b))))
        async with self._db.transaction() as conn:
            refused = await refusal(conn, a, [b])
            if refused is not None:
                return refused
            await conn.execute(
                """
                INSERT INTO chat_rooms (id, kind, direct_key, created_by)
                VALUES ($1, 'direct', $2, $3) ON CONFLICT (direct_key) DO NOTHING
                """,
                uuid.uuid4(),
                key,
                a,
            )
            row = await conn.fetchrow(
                f"SELECT {_ROOM_COLUMNS} FROM chat_rooms r WHERE r.direct_key = $1", key
            )
            room = from_row(RoomRecord, row)
            await _add_members(conn, room.id, [a, b])
        return room

    async def create_group(
        self, creator: uuid.UUID, others: Sequence[uuid.UUID], name: str | None
    ) -> RoomRecord | Refusal:
        """A group room of `creator` and `others`, with its members, in one transaction."""
        async with self._db.transaction() as conn:
            refused = await refusal(conn, creator, others)
            if refused is not None:
                return refused
            room_id = uuid.uuid4()
            row = await conn.fetchrow(
                f"""
                WITH r AS (
                    INSERT INTO chat_rooms (id, kind, name, created_by) VALUES ($1, 'group', $2, $3)
                    RETURNING *)
                SELECT {_ROOM_COLUMNS} FROM r
                """,
                room_id,
                name,
                creator,
            )
            await _add_members(conn, room_id, [creator, *others])
        return from_row(RoomRecord, row)

    async def rooms_of(
        self, user_id: uuid.UUID, after: tuple[datetime, uuid.UUID] | None, limit: int
    ) -> list[RoomRecord]:
        """The user's rooms, most recent activity first, after the `(activity_at, id)` cursor."""
        async with self._db.connection() as conn:
            rows = await conn.fetch(
                f"""
                SELECT {_ROOM_COLUMNS} FROM chat_members m JOIN chat_rooms r ON r.id = m.room_id
                WHERE m.user_id = $1 AND m.left_at IS NULL
                  AND ($2::timestamptz IS NULL
                       OR (coalesce(r.last_message_at, r.created_at), r.id) < ($2, $3::uuid))
                ORDER BY coalesce(r.last_message_at, r.created_at) DESC, r.id DESC
                LIMIT $4
                """,
                user_id,
                after[0] if after else None,
                after[1] if after else None,
                limit,
            )
        return from_rows(RoomRecord, rows)

    async def member_rooms(
        self, room_ids: Sequence[uuid.UUID], user_id: uuid.UUID
    ) -> list[RoomRecord]:
        """Those of `room_ids` the user is a member of now, in one query."""
        async with self._db.connection() as conn:
            rows = await conn.fetch(
                f"""
                SELECT {_ROOM_COLUMNS} FROM chat_rooms r
                JOIN chat_members m ON m.room_id = r.id AND m.user_id = $2 AND m.left_at IS NULL
                WHERE r.id = ANY($1::uuid[])
                """,
                list(room_ids),
                user_id,
            )
        return from_rows(RoomRecord, rows)

    async def read_markers(self, room_id: uuid.UUID) -> list[ReadMarker]:
        """How far each current member has read, in the order they joined."""
        async with self._db.connection() as conn:
            rows = await conn.fetch(
                "SELECT user_id, read_up_to FROM chat_members"
                " WHERE room_id = $1 AND left_at IS NULL ORDER BY joined_at, user_id",
                room_id,
            )
        return from_rows(ReadMarker, rows)

    async def unread_count(
        self, room_id: uuid.UUID, user_id: uuid.UUID, excluding: Sequence[uuid.UUID] = ()
    ) -> int:
        """Messages of others after the user's read marker, not counting those sent by
        `excluding` (members hidden from the user by a block)."""
        async with self._db.connection() as conn:
            count: int = await conn.fetchval(
                """
                SELECT count(*) FROM chat_messages c
                JOIN chat_members m ON m.room_id = c.room_id AND m.user_id = $2
                WHERE c.room_id = $1 AND c.seq > m.read_up_to AND c.sender_id <> $2
                  AND c.sender_id <> ALL($3::uuid[])
                """,
                room_id,
                user_id,
                list(excluding),
            )
        return count

    async def mark_read(self, room_id: uuid.UUID, user_id: uuid.UUID, seq: int) -> int | None:
        """Move the member's read marker up to `seq` and read the room's MESSAGE
        notification with it, when `seq` is within the room (`seq <= last_seq`).

        Returns the room's `last_seq` as the transaction saw it, or None when the user is
        not a member (then nothing is written); a `seq` beyond it writes nothing either."""
        async with self._db.transaction() as conn:
            last_seq: int | None = await conn.fetchval(
                """
                SELECT r.last_seq FROM chat_rooms r
                JOIN chat_members m ON m.room_id = r.id AND m.user_id = $2 AND m.left_at IS NULL
                WHERE r.id = $1
                """,
                room_id,
                user_id,
            )
            if last_seq is None or seq > last_seq:
                return last_seq
            await conn.execute(
                "UPDATE chat_members SET read_up_to = greatest(read_up_to, $3)"
                " WHERE room_id = $1 AND user_id = $2",
                room_id,
                user_id,
                seq,
            )
            await read_room_notifications(conn, user_id, room_id, seq)
        return last_seq
