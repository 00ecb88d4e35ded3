"""Chat for the gateway: creating rooms, listing them, read markers, presence and typing.

Messages and membership changes go through the room's ChatShard (`actors.chat_client`),
the single writer of a room. Creating a room is the gateway's: a room has no shard state
until its first use (`storage.repositories.chat_rooms` creates it, with its members, in one
transaction). Presence and typing are ephemeral and live in Redis only.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import logging
import time
import uuid
from collections.abc import AsyncIterator, Collection
from datetime import datetime

import redis.asyncio as aioredis

from actors.chat_client import ChatClient
from actors.chat_shard import DELETED_CHANNEL as DELETED_CHANNEL
from actors.chat_shard import LEFT_NOTICE
from actors.chat_shard import PRESENCE_CHANNEL as PRESENCE_CHANNEL
from actors.chat_shard import READ_CHANNEL as READ_CHANNEL
from actors.chat_shard import TYPING_CHANNEL as TYPING_CHANNEL
from gateway.errors import Forbidden
from gateway.services.profiles import page_size
from storage.db import Database
from storage.errors import InvalidInput, NotFound, classify
from storage.presence import ONLINE_KEY, online_users
from storage.repositories.chat import MAX_GROUP_MEMBERS, MAX_TEXT, Message, Refusal
from storage.repositories.chat_rooms import RoomRecord, RoomStore

log = logging.getLogger(__name__)

MAX_CLIENT_MESSAGE_ID = 128
MAX_ROOM_NAME = 100
PRESENCE_TTL_S = 30
PRESENCE_BEAT_S = 10.0  # well inside the TTL: two beats may fail before an entry lapses


def check_message(text: str, client_message_id: str, *, has_media: bool = False) -> None:
    if not text.strip() and not has_media:
        raise InvalidInput("text must not be empty (unless the message carries media)")
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
        self._rooms = RoomStore(db)
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
        if len(others) == 1:
            created = await self._rooms.open_direct(creator, others[0])
        else:
            created = await self._rooms.create_group(
                creator, others, name.strip() if name else None
            )
        if created is Refusal.UNKNOWN_USER:
            raise NotFound("no such user")
        if created is Refusal.BLOCKED:
            raise Forbidden("you cannot start a conversation with this user")
        return created

    async def rooms(
        self, user_id: uuid.UUID, first: int | None, after: str | None
    ) -> tuple[list[tuple[str, RoomRecord]], bool]:
        """The user's rooms, most recent activity first."""
        limit = page_size(first)
        since = _decode(after) if after else None
        rooms = await self._rooms.rooms_of(user_id, since, limit + 1)
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
        rooms = await self._rooms.member_rooms(room_ids, user_id)
        return {room.id: room for room in rooms}

    async def read_markers(self, room_id: uuid.UUID) -> list[tuple[uuid.UUID, int]]:
        markers = await self._rooms.read_markers(room_id)
        return [(marker.user_id, marker.read_up_to) for marker in markers]

    async def unread(
        self, room_id: uuid.UUID, user_id: uuid.UUID, hidden: Collection[uuid.UUID] = ()
    ) -> int:
        """Messages of others after the user's read marker, not counting the `hidden`'s."""
        return await self._rooms.unread_count(room_id, user_id, list(hidden))

    async def mark_read(self, room_id: uuid.UUID, user_id: uuid.UUID, seq: int) -> bool:
        if seq < 0:
            raise InvalidInput("seq must be >= 0")
        # The membership check, the bound and the write are one transaction in the store.
        last_seq = await self._rooms.mark_read(room_id, user_id, seq)
        if last_seq is None:
            raise NotFound("room not found")
        if seq > last_seq:
            raise InvalidInput(f"seq {seq} is beyond the room's last message ({last_seq})")
        # The marker is stored; watchers of the room hear of it live, at best effort (a
        # missed one shows in the room's `readUpTo` when it is next read).
        try:
            await self._redis.publish(READ_CHANNEL.format(room_id), f"{user_id} {seq}")
        except Exception as exc:
            log.warning("read marker in room %s not published: %s", room_id, classify(exc))
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


def read_marker(raw: str) -> tuple[uuid.UUID, int] | None:
    """A member's read marker as `mark_read` publishes it: (member, seq); None otherwise."""
    user, _, seq = raw.partition(" ")
    try:
        return uuid.UUID(user), int(seq)
    except ValueError:
        return None


def left_notice(raw: str) -> uuid.UUID | None:
    """The member who left, if `raw` (from a room's typing, presence or read channel) is the
    shard's notice of it; None for what those channels carry otherwise."""
    if not raw.startswith("{"):
        return None
    try:
        return uuid.UUID(json.loads(raw)[LEFT_NOTICE])
    except (ValueError, KeyError, TypeError):
        return None
