"""ChatShard: the single owner of its rooms' membership, sequence numbers and recent history.

A room is activated from PostgreSQL on first use. Sends to one room queue while that
room's commit is in flight and the next commit takes them all: sequence numbers are
assigned in arrival order, strictly increasing with no gaps, and the messages, the room's
`last_seq` and their outbox events commit in one transaction. Only then are the senders
answered, the in-memory state advanced and the messages published on `nova:chat:<room>`,
where every gateway replica's subscribers pick them up. A commit that fails advances
nothing, so a retry cannot leave a gap. Retrying a send with the same `clientMessageId`
returns the original message, from memory or from PostgreSQL.

Plain Python, with PostgreSQL, Redis and the clock injected; `actors.remote` wraps it.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
import uuid
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime

import redis.asyncio as aioredis

from actors.chat_room import PendingSend, RoomState
from storage.db import Database
from storage.errors import InvalidInput, NotFound, NovaError, classify
from storage.repositories.chat import (
    MAX_GROUP_MEMBERS,
    ChatStore,
    Message,
    MessageKey,
    Refusal,
)

log = logging.getLogger(__name__)

CHAT_CHANNEL = "nova:chat:{}"
# Who is typing (user ids), and who comes and goes (`presence`): never stored.
TYPING_CHANNEL = CHAT_CHANNEL + ":typing"
PRESENCE_CHANNEL = CHAT_CHANNEL + ":presence"
READ_CHANNEL = CHAT_CHANNEL + ":read"
# Messages deleted, as their tombstones (`messageDeleted`).
DELETED_CHANNEL = CHAT_CHANNEL + ":deleted"
# A notice on each of the room's channels, beside what they carry: this member has left.
LEFT_NOTICE = "left"
ROOM_CHANNELS = (CHAT_CHANNEL, TYPING_CHANNEL, PRESENCE_CHANNEL, READ_CHANNEL, DELETED_CHANNEL)


class NotAMember(NovaError):
    """The user is not (or no longer) a member of the room."""


class Blocked(NovaError):
    """A block between the two people of a direct room (or an invitee) forbids this."""


@dataclass
class ChatStats:
    commits: int = 0
    messages: int = 0
    retries_absorbed: int = 0
    largest_batch: int = 0
    activations: int = 0


class ChatShard:
    def __init__(
        self,
        db: Database,
        redis: aioredis.Redis,
        *,
        recent: int = 200,
        max_batch: int = 500,
        idle_ttl_s: float = 600.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._store = ChatStore(db)
        self._redis = redis
        self._keep = recent
        self._max_batch = max_batch
        self._idle_ttl_s = idle_ttl_s
        self._clock = clock
        self._rooms: dict[uuid.UUID, RoomState] = {}
        self._activating: dict[uuid.UUID, asyncio.Future[RoomState]] = {}
        self.stats = ChatStats()

    @property
    def active_rooms(self) -> int:
        return len(self._rooms)

    @property
    def queue_depth(self) -> int:
        """Sends waiting for their room's next group commit."""
        return sum(len(room.pending) for room in self._rooms.values())

    # -- rooms -------------------------------------------------------------------------

    async def _room(self, room_id: uuid.UUID) -> RoomState:
        room = self._rooms.get(room_id)
        if room is not None:
            room.used_at = self._clock()
            return room
        pending = self._activating.get(room_id)
        if pending is not None:
            return await asyncio.shield(pending)
        future: asyncio.Future[RoomState] = asyncio.get_running_loop().create_future()
        self._activating[room_id] = future
        try:
            loaded = await self._store.activate(room_id, self._keep)
            if loaded is None:
                raise NotFound("room not found")
            row, recent = loaded
            room = RoomState(
                row.id, row.kind, set(row.members), row.last_seq, deque(), {}, self._clock()
            )
            for message in recent:
                room.remember(message, self._keep)
            self._rooms[room_id] = room
            self.stats.activations += 1
            future.set_result(room)
            return room
        except BaseException as exc:
            future.set_exception(exc)
            future.exception()
            raise
        finally:
            del self._activating[room_id]

    async def member_room(self, room_id: uuid.UUID, user_id: uuid.UUID) -> tuple[str, int]:
        """(kind, last_seq) of a room the user belongs to; `NotAMember` otherwise."""
        room = await self._room(room_id)
        if user_id not in room.members:
            raise NotAMember("you are not a member of this room")
        return room.kind, room.last_seq

    async def members(self, room_id: uuid.UUID, user_id: uuid.UUID) -> list[uuid.UUID]:
        room = await self._room(room_id)
        if user_id not in room.members:
            raise NotAMember("you are not a member of this room")
        return sorted(room.members)

    async def add_members(
        self, room_id: uuid.UUID, actor: uuid.UUID, user_ids: list[uuid.UUID]
    ) -> list[uuid.UUID]:
        room = await self._room(room_id)
        if room.kind != "group":
            raise InvalidInput("members can only be added to group rooms")
        if actor not in room.members:
            raise NotAMember("only members may add members")
        new = [u for u in dict.fromkeys(user_ids) if u not in room.members]
        if len(room.members) + len(new) > MAX_GROUP_MEMBERS:
            raise InvalidInput(f"a group room has at most {MAX_GROUP_MEMBERS} members")
        if new:
            refused = await self._store.add_members(room_id, actor, new)
            if refused is Refusal.UNKNOWN_USER:
                raise NotFound("no such user")
            if refused is Refusal.BLOCKED:
                raise Blocked("you cannot add this user")
            room.members.update(new)
        return sorted(room.members)

    async def leave(self, room_id: uuid.UUID, user_id: uuid.UUID) -> None:
        room = await self._room(room_id)
        if room.kind != "group":
            raise InvalidInput("you can only leave group rooms")
        if user_id not in room.members:
            raise NotAMember("you are not a member of this room")
        await self._store.leave(room_id, user_id)
        room.members.discard(user_id)
        # The member's open subscriptions to the room (messages, typing, presence, read
        # markers) end on this notice, and with them their presence in it
        # (`gateway.schema.chat`).
        notice = json.dumps({LEFT_NOTICE: str(user_id)})
        try:
            async with self._redis.pipeline(transaction=False) as pipe:
                for channel in ROOM_CHANNELS:
                    pipe.publish(channel.format(room_id), notice)
                await pipe.execute()
        except Exception as exc:  # their next gap fill is refused instead (not a member)
            log.warning("chat leave notice not published: %s", classify(exc))

    # -- messages ----------------------------------------------------------------------

    async def send(
        self,
        room_id: uuid.UUID,
        sender: uuid.UUID,
        text: str,
        client_message_id: str,
        media_ids: tuple[uuid.UUID, ...] = (),
    ) -> Message:
        room = await self._room(room_id)
        if sender not in room.members:
            raise NotAMember("you are not a member of this room")
        known = room.by_client_id.get((sender, client_message_id))
        if known is not None:
            self.stats.retries_absorbed += 1
            return known
        future: asyncio.Future[Message] = asyncio.get_running_loop().create_future()
        room.pending.append(PendingSend(sender, text, client_message_id, future, media_ids))
        if room.flusher is None or room.flusher.done():
            room.flusher = asyncio.create_task(self._flush(room))
        return await future

    async def delete(
        self, room_id: uuid.UUID, message_id: uuid.UUID, sender: uuid.UUID, moderator: bool = False
    ) -> Message:
        """The sender deletes their message (or a `moderator` removes it, whether or not
        its sender is still a member): it stays in the sequence as a tombstone, and the
        room hears of it on `DELETED_CHANNEL`."""
        room = await self._room(room_id)
        if sender not in room.members and not moderator:
            raise NotAMember("you are not a member of this room")
        tombstone = await self._store.delete_message(room_id, message_id, sender, moderator)
        if tombstone is None:
            raise NotFound("no such message of yours in this room")
        room.replace(tombstone)
        try:
            await self._redis.publish(
                DELETED_CHANNEL.format(room_id), json.dumps(tombstone.to_json())
            )
        except Exception as exc:  # history shows the tombstone; only the live notice is lost
            log.warning("chat deletion not published: %s", classify(exc))
        return tombstone

    async def after(
        self, room_id: uuid.UUID, user_id: uuid.UUID, after_seq: int, limit: int
    ) -> list[Message]:
        """Messages with `seq > after_seq`, oldest first (replay and gap filling)."""
        room = await self._room(room_id)
        if user_id not in room.members:
            raise NotAMember("you are not a member of this room")
        if room.recent and after_seq >= room.recent[0].seq - 1:
            return [m for m in room.recent if m.seq > after_seq][:limit]
        return await self._store.messages_after(room_id, after_seq, limit)

    async def history(
        self, room_id: uuid.UUID, user_id: uuid.UUID, before_seq: int | None, limit: int
    ) -> list[Message]:
        """The `limit` messages before `before_seq` (or the newest), oldest first."""
        room = await self._room(room_id)
        if user_id not in room.members:
            raise NotAMember("you are not a member of this room")
        cached = [m for m in room.recent if before_seq is None or m.seq < before_seq]
        if len(cached) >= limit or (cached and cached[0].seq == 1) or room.last_seq == 0:
            return cached[-limit:] if limit else []
        return await self._store.messages_before(room_id, before_seq, limit)

    async def _flush(self, room: RoomState) -> None:
        while room.pending:
            batch: list[PendingSend] = []
            while room.pending and len(batch) < self._max_batch:
                pending = room.pending.popleft()
                if not pending.future.done():
                    batch.append(pending)
            if batch:
                await self._commit(room, batch)

    async def _commit(self, room: RoomState, batch: list[PendingSend]) -> None:
        try:
            stored, refused = await self._write(room, batch)
        except Exception as exc:
            if not isinstance(exc, NovaError):
                log.exception("chat commit failed")
            for pending in batch:
                if not pending.future.done():
                    pending.future.set_exception(exc)
            return
        fresh = [m for m in stored.values() if m.seq > room.last_seq]
        fresh.sort(key=lambda m: m.seq)
        for message in fresh:
            room.remember(message, self._keep)
        if fresh:
            room.last_seq = fresh[-1].seq
        for pending in batch:
            if pending.future.done():
                continue
            if id(pending) in refused:
                pending.future.set_exception(refused[id(pending)])
            else:
                pending.future.set_result(stored[(pending.sender, pending.client_message_id)])
        if fresh:
            await self._publish(room.id, fresh)

    async def _write(
        self, room: RoomState, batch: list[PendingSend]
    ) -> tuple[dict[MessageKey, Message], dict[int, NovaError]]:
        """Commit the batch; returns every sender's message (new or found) and refusals."""
        refused: dict[int, NovaError] = {}
        pair: tuple[uuid.UUID, uuid.UUID] | None = None
        if room.kind == "direct" and len(room.members) == 2:
            a, b = sorted(room.members)
            pair = (a, b)  # a block between the two refuses the whole batch
        keys = list(dict.fromkeys((p.sender, p.client_message_id) for p in batch))

        def compose(found: Mapping[MessageKey, Message], refused: set[MessageKey]) -> list[Message]:
            """Sequence the batch's new sends after `last_seq`, in arrival order (runs in
            the commit's transaction, once the retries and refusals among them are known)."""
            self.stats.retries_absorbed += len(found)
            now = datetime.now(UTC)
            new: list[Message] = []
            taken = set(found) | refused
            seq = room.last_seq
            for pending in batch:
                key = (pending.sender, pending.client_message_id)
                if key in taken:
                    continue
                seq += 1
                new.append(
                    Message(
                        uuid.uuid4(),
                        room.id,
                        seq,
                        pending.sender,
                        pending.text,
                        pending.client_message_id,
                        now,
                        pending.media_ids,
                    )
                )
                taken.add(key)
            return new

        media = {(p.sender, p.client_message_id): p.media_ids for p in batch if p.media_ids}
        committed = await self._store.commit_messages(
            room.id, keys, unless_blocked=pair, compose=compose, media=media
        )
        if committed is None:
            for pending in batch:
                refused[id(pending)] = Blocked("you cannot message this user")
            return {}, refused
        stored = dict(committed.found)
        stored.update({(m.sender_id, m.client_message_id): m for m in committed.new})
        for pending in batch:
            reason = committed.refused.get((pending.sender, pending.client_message_id))
            if reason is not None:
                refused[id(pending)] = reason
        self.stats.commits += 1
        self.stats.messages += len(committed.new)
        self.stats.largest_batch = max(self.stats.largest_batch, len(batch))
        return stored, refused

    async def _publish(self, room_id: uuid.UUID, messages: list[Message]) -> None:
        """Best effort: subscribers that miss one fill the gap from `after`."""
        try:
            async with self._redis.pipeline(transaction=False) as pipe:
                for message in messages:
                    pipe.publish(CHAT_CHANNEL.format(room_id), json.dumps(message.to_json()))
                await pipe.execute()
        except Exception as exc:
            log.warning("chat publish failed (subscribers will fill the gap): %s", classify(exc))

    def forget_account(self, room_ids: list[uuid.UUID], user_id: uuid.UUID) -> int:
        """An erased account leaves the rooms held in memory, and its messages there read
        as from a deleted account, as PostgreSQL has them now; returns the messages changed."""
        return sum(
            room.forget_sender(user_id)
            for room_id in room_ids
            if (room := self._rooms.get(room_id)) is not None
        )

    def evict_idle(self) -> int:
        now = self._clock()
        idle = [
            r.id
            for r in self._rooms.values()
            if now - r.used_at > self._idle_ttl_s
            and not r.pending
            and (r.flusher is None or r.flusher.done())
        ]
        for room_id in idle:
            del self._rooms[room_id]
        return len(idle)
