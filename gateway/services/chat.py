"""Chat for the gateway: creating rooms, listing them, read markers, presence and typing.

Messages and membership changes go through the room's ChatShard (`actors.chat_client`),
the single writer of a room. Creating a room is the gateway's: a room has no shard state
until its first use. Presence and typing are ephemeral and live in Redis only.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import logging
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import datetime

import asyncpg
import redis.asyncio as aioredis

from actors.chat_client import ChatClient
from actors.chat_shard import CHAT_CHANNEL, LEFT_NOTICE
from gateway.errors import Forbidden
from gateway.services.profiles import page_size
from storage.db import Database
from storage.errors import InvalidInput, NotFound, classify
from storage.presence import ONLINE_KEY, online_users
from storage.repositories.chat import MAX_GROUP_MEMBERS, MAX_TEXT, Message
from storage.repositories.graph import blocked_either_way
from storage.repositories.notifications import read_room_notifications

log = logging.getLogger(__name__)

MAX_CLIENT_MESSAGE_ID = 128
MAX_ROOM_NAME = 100
PRESENCE_TTL_S = 30
PRESENCE_BEAT_S = 10.0  # well inside the TTL: two beats may fail before an entry lapses
TYPING_CHANNEL = CHAT_CHANNEL + ":typing"
PRESENCE_CHANNEL = CHAT_CHANNEL + ":presence"


@dataclass(frozen=True)
class RoomRecord:
    id: uuid.UUID
    kind: str
    name: str | None
    created_at: datetime
    last_seq: int
    activity_at: datetime

    @classmethod
    def from_row(cls, row: asyncpg.Record) -> RoomRecord:
        return cls(
            row["id"],
            row["kind"],
            row["name"],
            row["created_at"],
            row["last_seq"],
            row["activity_at"],
        )


_ROOM_COLUMNS = (
    "r.id, r.kind, r.name, r.created_at, r.last_seq,"
    " coalesce(r.last_message_at, r.created_at) AS activity_at"
)


def check_message(text: str, client_message_id: str) -> None:
    if not text.strip():
        raise InvalidInput("text must not be empty")
    if len(text) > MAX_TEXT:
        raise InvalidInput(f"text must be at most {MAX_TEXT} characters")
    if not 1 <= len(client_message_id) <= MAX_CLIENT_MESSAGE_ID:
        raise InvalidInput(f"clientMessageId must be 1-{MAX_CLIENT_MESSAGE_ID} characters")


def _encode(activity_at: datetime, room_id: uuid.UUID) -> str:
    return base64.urlsafe_b64encode(f"{activity_at.isoformat()}|{room_id}".encode()).decode()


def _decode(cursor: str) -> tuple[datetime, uuid.UUID]:
    try:
        when, _, room = base64.urlsafe_b64decode(cursor.encode()).decode().partition("|")
        return datetime.fromisoformat(when), uuid.UUID(room)
    except (ValueError, UnicodeDecodeError) as exc:
        raise InvalidInput("after is not a valid cursor") from exc


class Chat:
    def __init__(self, db: Database, redis: aioredis.Redis, shards: ChatClient) -> None:
        self._db = db
        self._redis = redis
        self.shards = shards
        # Presence entries held by this replica's live subscriptions, refreshed together.
        self._online: dict[uuid.UUID, set[str]] = {}
        self._beater: asyncio.Task[None] | None = None

    async def create_room(
        self, creator: uuid.UUID, member_ids: list[uuid.UUID], name: str | None
    ) -> RoomRecord:
        others = [m for m in dict.fromkeys(member_ids) if m != creator]
        if not others:
            raise InvalidInput("a room needs at least one other member")
        if len(others) + 1 > MAX_GROUP_MEMBERS:
            raise InvalidInput(f"a room has at most {MAX_GROUP_MEMBERS} members")
        if name is not None and not 1 <= len(name.strip()) <= MAX_ROOM_NAME:
            raise InvalidInput(f"name must be 1-{MAX_ROOM_NAME} characters")
        direct = len(others) == 1
        async with self._db.transaction() as conn:
            known = await conn.fetchval("SELECT count(*) FROM users WHERE id = ANY($1)", others)
            if known != len(others):
                raise NotFound("no such user")
            for other in others:
                if await blocked_either_way(conn, creator, other):
                    raise Forbidden("you cannot start a conversation with this user")
            if direct:
                return await self._direct_room(conn, creator, others[0])
            room_id = uuid.uuid4()
            row = await conn.fetchrow(
                f"""
                WITH r AS (
                    INSERT INTO chat_rooms (id, kind, name, created_by) VALUES ($1, 'group', $2, $3)
                    RETURNING *)
                SELECT {_ROOM_COLUMNS} FROM r
                """,
                room_id,
                name.strip() if name else None,
                creator,
            )
            await self._add(conn, room_id, [creator, *others])
        return RoomRecord.from_row(row)

    async def _direct_room(
        self, conn: asyncpg.Connection, a: uuid.UUID, b: uuid.UUID
    ) -> RoomRecord:
        """The same pair always gets the same room (created once, whoever asks first)."""
        key = ":".join(sorted((str(a), str(b))))
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
        await self._add(conn, row["id"], [a, b])
        return RoomRecord.from_row(row)

    async def _add(
        self, conn: asyncpg.Connection, room_id: uuid.UUID, users: list[uuid.UUID]
    ) -> None:
        await conn.execute(
            """
            INSERT INTO chat_members (room_id, user_id)
            SELECT $1, u FROM unnest($2::uuid[]) AS u ON CONFLICT DO NOTHING
            """,
            room_id,
            users,
        )

    async def rooms(
        self, user_id: uuid.UUID, first: int | None, after: str | None
    ) -> tuple[list[tuple[str, RoomRecord]], bool]:
        """The user's rooms, most recent activity first."""
        limit = page_size(first)
        since = _decode(after) if after else None
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
                since[0] if since else None,
                since[1] if since else None,
                limit + 1,
            )
        rooms = [RoomRecord.from_row(row) for row in rows]
        return [(_encode(r.activity_at, r.id), r) for r in rooms[:limit]], len(rooms) > limit

    async def room(self, room_id: uuid.UUID, user_id: uuid.UUID) -> RoomRecord:
        room = (await self.rooms_by_id([room_id], user_id)).get(room_id)
        if room is None:
            raise NotFound("room not found")
        return room

    async def rooms_by_id(
        self, room_ids: list[uuid.UUID], user_id: uuid.UUID
    ) -> dict[uuid.UUID, RoomRecord]:
        """Those of `room_ids` the user is a member of now, in one query."""
        async with self._db.connection() as conn:
            rows = await conn.fetch(
                f"""
                SELECT {_ROOM_COLUMNS} FROM chat_rooms r
                JOIN chat_members m ON m.room_id = r.id AND m.user_id = $2 AND m.left_at IS NULL
                WHERE r.id = ANY($1::uuid[])
                """,
                room_ids,
                user_id,
            )
        rooms = [RoomRecord.from_row(row) for row in rows]
        return {room.id: room for room in rooms}

    async def read_markers(self, room_id: uuid.UUID) -> list[tuple[uuid.UUID, int]]:
        async with self._db.connection() as conn:
            rows = await conn.fetch(
                "SELECT user_id, read_up_to FROM chat_members"
                " WHERE room_id = $1 AND left_at IS NULL ORDER BY joined_at, user_id",
                room_id,
            )
        return [(row["user_id"], row["read_up_to"]) for row in rows]

    async def unread(self, room_id: uuid.UUID, user_id: uuid.UUID) -> int:
        async with self._db.connection() as conn:
            count: int = await conn.fetchval(
                """
                SELECT count(*) FROM chat_messages c
                JOIN chat_members m ON m.room_id = c.room_id AND m.user_id = $2
                WHERE c.room_id = $1 AND c.seq > m.read_up_to AND c.sender_id <> $2
                """,
                room_id,
                user_id,
            )
        return count

    async def mark_read(self, room_id: uuid.UUID, user_id: uuid.UUID, seq: int) -> bool:
        if seq < 0:
            raise InvalidInput("seq must be >= 0")
        async with self._db.transaction() as conn:
            last_seq = await conn.fetchval(
                """
                SELECT r.last_seq FROM chat_rooms r
                JOIN chat_members m ON m.room_id = r.id AND m.user_id = $2 AND m.left_at IS NULL
                WHERE r.id = $1
                """,
                room_id,
                user_id,
            )
            if last_seq is None:
                raise NotFound("room not found")
            if seq > last_seq:
                raise InvalidInput(f"seq {seq} is beyond the room's last message ({last_seq})")
            await conn.execute(
                "UPDATE chat_members SET read_up_to = greatest(read_up_to, $3)"
                " WHERE room_id = $1 AND user_id = $2",
                room_id,
                user_id,
                seq,
            )
            await read_room_notifications(conn, user_id, room_id, seq)
        return True

    # -- ephemeral: typing and presence -------------------------------------------------

    async def typing(self, room_id: uuid.UUID, user_id: uuid.UUID) -> None:
        await self._redis.publish(TYPING_CHANNEL.format(room_id), str(user_id))

    @contextlib.asynccontextmanager
    async def online(self, room_id: uuid.UUID, user_id: uuid.UUID) -> AsyncIterator[str]:
        """Count the user online in the room while the block runs (one entry a connection,
        expiring unless refreshed, so a crashed replica's entries fade out).

        The entry is written at once; after that this replica refreshes all of its
        entries together, one pipeline every `PRESENCE_BEAT_S` (`beat`), rather than one
        round trip per subscription: at 2,000 subscribers those bursts were what ran the
        Redis pool dry."""
        member = f"{user_id}:{uuid.uuid4().hex[:12]}"
        key = ONLINE_KEY.format(room_id)
        await self.heartbeat(room_id, member)
        try:
            await self._redis.publish(PRESENCE_CHANNEL.format(room_id), "join")
        except Exception as exc:  # presence watchers miss one join; the member is counted
            log.warning("presence join in room %s not published: %s", room_id, classify(exc))
        self._online.setdefault(room_id, set()).add(member)
        if self._beater is None or self._beater.done():
            self._beater = asyncio.get_running_loop().create_task(self._beat_while_online())
        try:
            yield member
        finally:
            members = self._online.get(room_id, set())
            members.discard(member)
            if not members:
                self._online.pop(room_id, None)
            with contextlib.suppress(Exception):
                await self._redis.zrem(key, member)
                await self._redis.publish(PRESENCE_CHANNEL.format(room_id), "leave")

    async def heartbeat(self, room_id: uuid.UUID, member: str) -> bool:
        """Keep one `member` online in the room for another `PRESENCE_TTL_S`."""
        return await self._refresh({room_id: {member}})

    async def beat(self) -> bool:
        """Refresh every entry this replica holds, in one pipeline."""
        return await self._refresh(self._online)

    async def _beat_while_online(self) -> None:
        while self._online:
            await asyncio.sleep(PRESENCE_BEAT_S)
            await self.beat()

    async def _refresh(self, entries: dict[uuid.UUID, set[str]]) -> bool:
        """Presence is best-effort: when Redis does not take the refresh (down, or every
        pooled connection busy for `redis_timeout_s`), this logs and returns False, and the
        members' live subscriptions go on. (A failed refresh used to end the subscription
        with an internal error.)"""
        if not entries:
            return True
        now = time.time()
        try:
            async with self._redis.pipeline(transaction=False) as pipe:
                for room_id, members in list(entries.items()):
                    if not members:
                        continue
                    key = ONLINE_KEY.format(room_id)
                    pipe.zadd(key, dict.fromkeys(members, now + PRESENCE_TTL_S))
                    pipe.zremrangebyscore(key, "-inf", now)
                    pipe.expire(key, PRESENCE_TTL_S * 2)
                await pipe.execute()
        except Exception as exc:
            log.warning("presence not refreshed: %s", classify(exc, "redis"))
            return False
        return True

    async def online_users(self, room_id: uuid.UUID) -> list[uuid.UUID]:
        return await online_users(self._redis, room_id)


def message_from_channel(raw: str) -> Message | uuid.UUID:
    """A message published on a room channel, or the id of a member who left."""
    data = json.loads(raw)
    if LEFT_NOTICE in data:
        return uuid.UUID(data[LEFT_NOTICE])
    return Message.from_json(data)
