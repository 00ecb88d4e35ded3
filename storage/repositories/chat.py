"""Chat rows: rooms, members, messages. The ChatShard of a room is the only writer of its
messages and members: `ChatStore` holds its units of work, and the functions taking a
connection run inside them (or read for it). Creating and listing rooms is the gateway's
(`storage.repositories.chat_rooms`): a room has no shard state until its first use.
"""

from __future__ import annotations

import enum
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import asyncpg

from storage.db import Database
from storage.errors import InvalidInput
from storage.events import Event
from storage.outbox.rows import add_events
from storage.repositories.graph import blocked_either_way
from storage.repositories.media import attach_media
from storage.rows import columns, from_row, from_rows

MAX_TEXT = 4_000
MAX_GROUP_MEMBERS = 500

# A message is known by its sender and the client's id for it (retries send the same).
MessageKey = tuple[uuid.UUID, str]


@dataclass(frozen=True)
class Message:
    id: uuid.UUID
    room_id: uuid.UUID
    seq: int
    sender_id: uuid.UUID
    text: str
    client_message_id: str
    created_at: datetime
    media_ids: tuple[uuid.UUID, ...] = ()
    deleted_at: datetime | None = None  # a tombstone: its text is gone, its media hidden
    removed_at: datetime | None = None  # ...made by a moderator (`moderate`), not its sender

    def to_json(self) -> dict[str, str | int | list[str] | None]:
        return {
            "id": str(self.id),
            "room_id": str(self.room_id),
            "seq": self.seq,
            "sender_id": str(self.sender_id),
            "text": self.text,
            "client_message_id": self.client_message_id,
            "created_at": self.created_at.isoformat(),
            "media_ids": [str(media_id) for media_id in self.media_ids],
            "deleted_at": self.deleted_at.isoformat() if self.deleted_at else None,
            "removed_at": self.removed_at.isoformat() if self.removed_at else None,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Message:
        return cls(
            uuid.UUID(str(data["id"])),
            uuid.UUID(str(data["room_id"])),
            int(data["seq"]),
            uuid.UUID(str(data["sender_id"])),
            str(data["text"]),
            str(data["client_message_id"]),
            datetime.fromisoformat(str(data["created_at"])),
            tuple(uuid.UUID(str(m)) for m in data.get("media_ids", ())),
            datetime.fromisoformat(data["deleted_at"]) if data.get("deleted_at") else None,
            datetime.fromisoformat(data["removed_at"]) if data.get("removed_at") else None,
        )


@dataclass(frozen=True)
class RoomRow:
    """A room as its shard activates it: current members and the last sequence number."""

    id: uuid.UUID
    kind: str
    name: str | None
    created_at: datetime
    last_seq: int
    members: tuple[uuid.UUID, ...]


class Refusal(enum.Enum):
    """Why people cannot be put in a room (checked in the transaction that adds them)."""

    UNKNOWN_USER = "unknown user"
    BLOCKED = "blocked"


@dataclass(frozen=True)
class Committed:
    """A batch of sends as committed: messages stored earlier under the batch's keys
    (retries) and the messages this commit inserted, in sequence order."""

    found: dict[MessageKey, Message]
    new: list[Message]
    # New sends whose media could not be attached: stored nothing, with the reason.
    refused: dict[MessageKey, InvalidInput] = field(default_factory=dict)


_MESSAGE_COLUMNS = columns(Message)


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
    return None if row is None else from_row(RoomRow, row)


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
    return from_rows(Message, rows)


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
    return from_rows(Message, rows)


async def find_retries(
    conn: asyncpg.Connection, room_id: uuid.UUID, keys: Sequence[MessageKey]
) -> dict[MessageKey, Message]:
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
    messages = from_rows(Message, rows)
    return {(m.sender_id, m.client_message_id): m for m in messages}


async def insert_messages(conn: asyncpg.Connection, messages: Sequence[Message]) -> None:
    """Messages of one room, seqs consecutive; the room's `last_seq` and the outbox follow."""
    await conn.execute(
        """
        INSERT INTO chat_messages (id, room_id, seq, sender_id, text, client_message_id,
                                   created_at, media_ids)
        SELECT m.id, m.room_id, m.seq, m.sender_id, m.text, m.client_message_id,
               m.created_at, COALESCE(media.ids, '{}')
        FROM unnest($1::uuid[], $2::uuid[], $3::bigint[], $4::uuid[], $5::text[],
                    $6::text[], $7::timestamptz[])
             WITH ORDINALITY AS m (id, room_id, seq, sender_id, text, client_message_id,
                                   created_at, n)
        LEFT JOIN LATERAL (
            SELECT array_agg(pair.media_id ORDER BY pair.k) AS ids
            FROM unnest($8::bigint[], $9::uuid[]) WITH ORDINALITY AS pair (n, media_id, k)
            WHERE pair.n = m.n
        ) media ON true
        """,
        [m.id for m in messages],
        [m.room_id for m in messages],
        [m.seq for m in messages],
        [m.sender_id for m in messages],
        [m.text for m in messages],
        [m.client_message_id for m in messages],
        [m.created_at for m in messages],
        [n for n, m in enumerate(messages, 1) for _ in m.media_ids],
        [media_id for m in messages for media_id in m.media_ids],
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


async def refusal(
    conn: asyncpg.Connection, actor: uuid.UUID, users: Sequence[uuid.UUID]
) -> Refusal | None:
    """Why `actor` may not share a room with `users`: one of them does not exist, or a
    block stands between `actor` and one of them; None when nothing stands in the way."""
    known = await conn.fetchval("SELECT count(*) FROM users WHERE id = ANY($1)", list(users))
    if known != len(users):
        return Refusal.UNKNOWN_USER
    for user in users:
        if await blocked_either_way(conn, actor, user):
            return Refusal.BLOCKED
    return None


class ChatStore:
    """The units of work of chat: each method is one connection or one transaction."""

    def __init__(self, db: Database) -> None:
        self._db = db

    async def activate(
        self, room_id: uuid.UUID, recent: int
    ) -> tuple[RoomRow, list[Message]] | None:
        """The room and its `recent` newest messages (oldest first); None if no such room."""
        async with self._db.connection() as conn:
            room = await load_room(conn, room_id)
            if room is None:
                return None
            return room, await messages_before(conn, room_id, None, recent)

    async def messages_after(self, room_id: uuid.UUID, after_seq: int, limit: int) -> list[Message]:
        async with self._db.connection() as conn:
            return await messages_after(conn, room_id, after_seq, limit)

    async def messages_before(
        self, room_id: uuid.UUID, before_seq: int | None, limit: int
    ) -> list[Message]:
        async with self._db.connection() as conn:
            return await messages_before(conn, room_id, before_seq, limit)

    async def add_members(
        self, room_id: uuid.UUID, actor: uuid.UUID, users: Sequence[uuid.UUID]
    ) -> Refusal | None:
        """Add `users` (back) to the room unless one is unknown or blocked either way with
        `actor`; a member who had left rejoins with a new `joined_at`."""
        async with self._db.transaction() as conn:
            refused = await refusal(conn, actor, users)
            if refused is not None:
                return refused
            await conn.execute(
                """
                INSERT INTO chat_members (room_id, user_id)
                SELECT $1, u FROM unnest($2::uuid[]) AS u
                ON CONFLICT (room_id, user_id)
                DO UPDATE SET left_at = NULL, joined_at = clock_timestamp()
                """,
                room_id,
                list(users),
            )
        return None

    async def leave(self, room_id: uuid.UUID, user_id: uuid.UUID) -> None:
        async with self._db.transaction() as conn:
            await conn.execute(
                "UPDATE chat_members SET left_at = clock_timestamp()"
                " WHERE room_id = $1 AND user_id = $2",
                room_id,
                user_id,
            )

    async def delete_message(
        self, room_id: uuid.UUID, message_id: uuid.UUID, sender: uuid.UUID, removed: bool = False
    ) -> Message | None:
        """Make the sender's message a tombstone (its text erased; its media kept on the
        row for the sweep), with `chat.message.deleted` the first time; None if the room
        has no such message of theirs. Deleting again answers the same tombstone."""
        async with self._db.transaction() as conn:
            row = await conn.fetchrow(
                f"""
                SELECT {_MESSAGE_COLUMNS} FROM chat_messages
                WHERE room_id = $1 AND id = $2 AND sender_id = $3
                FOR UPDATE
                """,
                room_id,
                message_id,
                sender,
            )
            if row is None:
                return None
            if row["deleted_at"] is not None:
                return from_row(Message, row)
            row = await conn.fetchrow(
                f"""
                UPDATE chat_messages SET deleted_at = clock_timestamp(), text = '',
                    removed_at = CASE WHEN $3 THEN clock_timestamp() END
                WHERE room_id = $1 AND id = $2
                RETURNING {_MESSAGE_COLUMNS}
                """,
                room_id,
                message_id,
                removed,
            )
            await add_events(
                conn,
                [
                    Event(
                        "chat.message.deleted",
                        str(room_id),
                        {
                            "room_id": str(room_id),
                            "message_id": str(message_id),
                            "seq": row["seq"],
                            "sender_id": str(sender),
                        },
                    )
                ],
            )
        return from_row(Message, row)

    async def commit_messages(
        self,
        room_id: uuid.UUID,
        keys: Sequence[MessageKey],
        *,
        unless_blocked: tuple[uuid.UUID, uuid.UUID] | None,
        compose: Callable[[Mapping[MessageKey, Message], set[MessageKey]], list[Message]],
        media: Mapping[MessageKey, Sequence[uuid.UUID]] | None = None,
    ) -> Committed | None:
        """One group commit of a room's sends, in one transaction.

        None, with nothing written, when `unless_blocked` names a pair with a block either
        way (a direct room's two people). Otherwise the messages already stored under
        `keys` are found; each new send's `media` is attached to it (in a savepoint, so
        media that cannot be attached refuses that send alone); `compose` turns what was
        found and refused into the new messages (the shard assigns sequence numbers, so it
        must run inside this transaction, after the lookup), and those are inserted with
        the room's `last_seq` and their outbox events."""
        async with self._db.transaction() as conn:
            if unless_blocked is not None and await blocked_either_way(conn, *unless_blocked):
                return None
            found = await find_retries(conn, room_id, keys)
            refused: dict[MessageKey, InvalidInput] = {}
            for key, media_ids in (media or {}).items():
                if key in found or not media_ids:
                    continue
                try:
                    async with conn.transaction():
                        await attach_media(conn, key[0], media_ids, "message")
                except InvalidInput as exc:
                    refused[key] = exc
            new = compose(found, set(refused))
            if new:
                await insert_messages(conn, new)
        return Committed(found, new, refused)
