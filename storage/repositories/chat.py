"""Chat rows: rooms, members, messages. The ChatShard of a room is the only writer of its
messages and members; these functions run inside its transactions (or read for it)."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

import asyncpg

from storage.events import Event
from storage.outbox.rows import add_events

MAX_TEXT = 4_000
MAX_GROUP_MEMBERS = 500


@dataclass(frozen=True)
class Message:
    id: uuid.UUID
    room_id: uuid.UUID
    seq: int
    sender_id: uuid.UUID
    text: str
    client_message_id: str
    created_at: datetime

    @classmethod
    def from_row(cls, row: asyncpg.Record) -> Message:
        return cls(
            row["id"],
            row["room_id"],
            row["seq"],
            row["sender_id"],
            row["text"],
            row["client_message_id"],
            row["created_at"],
        )

    def to_json(self) -> dict[str, str | int]:
        return {
            "id": str(self.id),
            "room_id": str(self.room_id),
            "seq": self.seq,
            "sender_id": str(self.sender_id),
            "text": self.text,
            "client_message_id": self.client_message_id,
            "created_at": self.created_at.isoformat(),
        }

    @classmethod
    def from_json(cls, data: dict[str, str | int]) -> Message:
        return cls(
            uuid.UUID(str(data["id"])),
            uuid.UUID(str(data["room_id"])),
            int(data["seq"]),
            uuid.UUID(str(data["sender_id"])),
            str(data["text"]),
            str(data["client_message_id"]),
            datetime.fromisoformat(str(data["created_at"])),
        )


@dataclass(frozen=True)
class RoomRow:
    id: uuid.UUID
    kind: str
    name: str | None
    created_at: datetime
    last_seq: int
    members: frozenset[uuid.UUID]


_MESSAGE_COLUMNS = "id, room_id, seq, sender_id, text, client_message_id, created_at"


async def load_room(conn: asyncpg.Connection, room_id: uuid.UUID) -> RoomRow | None:
    row = await conn.fetchrow(
        """
        SELECT r.id, r.kind, r.name, r.created_at, r.last_seq,
               coalesce(array_agg(m.user_id) FILTER (WHERE m.user_id IS NOT NULL), '{}')
                   AS members
        FROM chat_rooms r
        LEFT JOIN chat_members m ON m.room_id = r.id AND m.left_at IS NULL
        WHERE r.id = $1
        GROUP BY r.id
        """,
        room_id,
    )
    if row is None:
        return None
    return RoomRow(
        row["id"],
        row["kind"],
        row["name"],
        row["created_at"],
        row["last_seq"],
        frozenset(row["members"]),
    )


async def messages_after(
    conn: asyncpg.Connection, room_id: uuid.UUID, after_seq: int, limit: int
) -> list[Message]:
    rows = await conn.fetch(
        f"SELECT {_MESSAGE_COLUMNS} FROM chat_messages WHERE room_id = $1 AND seq > $2"
        " ORDER BY seq LIMIT $3",
        room_id,
        after_seq,
        limit,
    )
    return [Message.from_row(row) for row in rows]


async def messages_before(
    conn: asyncpg.Connection, room_id: uuid.UUID, before_seq: int | None, limit: int
) -> list[Message]:
    """The `limit` messages before `before_seq` (or the newest), oldest first."""
    rows = await conn.fetch(
        f"""
        SELECT * FROM (
            SELECT {_MESSAGE_COLUMNS} FROM chat_messages
            WHERE room_id = $1 AND ($2::bigint IS NULL OR seq < $2)
            ORDER BY seq DESC LIMIT $3
        ) AS page ORDER BY seq
        """,
        room_id,
        before_seq,
        limit,
    )
    return [Message.from_row(row) for row in rows]


async def find_retries(
    conn: asyncpg.Connection, room_id: uuid.UUID, keys: Sequence[tuple[uuid.UUID, str]]
) -> dict[tuple[uuid.UUID, str], Message]:
    """Messages already stored under these (sender, clientMessageId) pairs."""
    rows = await conn.fetch(
        f"""
        SELECT {_MESSAGE_COLUMNS} FROM chat_messages
        WHERE room_id = $1
          AND (sender_id, client_message_id) IN (
              SELECT * FROM unnest($2::uuid[], $3::text[]))
        """,
        room_id,
        [sender for sender, _ in keys],
        [cmid for _, cmid in keys],
    )
    return {(r["sender_id"], r["client_message_id"]): Message.from_row(r) for r in rows}


async def insert_messages(conn: asyncpg.Connection, messages: Sequence[Message]) -> None:
    """Messages of one room, seqs consecutive; the room's `last_seq` and the outbox follow."""
    await conn.execute(
        """
        INSERT INTO chat_messages (id, room_id, seq, sender_id, text, client_message_id,
                                   created_at)
        SELECT * FROM unnest($1::uuid[], $2::uuid[], $3::bigint[], $4::uuid[], $5::text[],
                             $6::text[], $7::timestamptz[])
        """,
        [m.id for m in messages],
        [m.room_id for m in messages],
        [m.seq for m in messages],
        [m.sender_id for m in messages],
        [m.text for m in messages],
        [m.client_message_id for m in messages],
        [m.created_at for m in messages],
    )
    last = messages[-1]
    await conn.execute(
        "UPDATE chat_rooms SET last_seq = $2, last_message_at = $3 WHERE id = $1",
        last.room_id,
        last.seq,
        last.created_at,
    )
    await add_events(
        conn,
        [
            Event(
                "chat.message.sent",
                str(m.room_id),
                {
                    "room_id": str(m.room_id),
                    "message_id": str(m.id),
                    "seq": m.seq,
                    "sender_id": str(m.sender_id),
                },
            )
            for m in messages
        ],
    )
