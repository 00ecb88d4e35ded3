"""How the gateway reaches chat shards: a room's shard by jump hash of the room id."""

from __future__ import annotations

import uuid

from actors.directory import shard_of
from actors.remote import CHAT
from actors.shard_caller import ShardCaller
from storage.repositories.chat import Message


class ChatClient:
    def __init__(self, shards: int, *, timeout_s: float = 5.0, retry_for_s: float = 20.0) -> None:
        self._caller = ShardCaller(CHAT, shards, timeout_s=timeout_s, retry_for_s=retry_for_s)

    def _shard(self, room_id: uuid.UUID) -> int:
        return shard_of(room_id, self._caller.shards)

    async def send(
        self,
        room_id: uuid.UUID,
        sender: uuid.UUID,
        text: str,
        client_message_id: str,
        media_ids: tuple[uuid.UUID, ...] = (),
    ) -> Message:
        """Idempotent by `client_message_id`, so a send cut off by a shard restart is
        retried safely and answers with the original message (its media attached once)."""
        message: Message = await self._caller.call(
            self._shard(room_id), "send", room_id, sender, text, client_message_id, media_ids
        )
        return message

    async def delete(self, room_id: uuid.UUID, message_id: uuid.UUID, sender: uuid.UUID) -> Message:
        message: Message = await self._caller.call(
            self._shard(room_id), "delete", room_id, message_id, sender
        )
        return message

    async def remove(self, room_id: uuid.UUID, message_id: uuid.UUID, sender: uuid.UUID) -> Message:
        """A moderator's removal of `sender`'s message (no membership asked)."""
        message: Message = await self._caller.call(
            self._shard(room_id), "delete", room_id, message_id, sender, True
        )
        return message

    async def after(
        self, room_id: uuid.UUID, user_id: uuid.UUID, after_seq: int, limit: int = 200
    ) -> list[Message]:
        messages: list[Message] = await self._caller.call(
            self._shard(room_id), "after", room_id, user_id, after_seq, limit
        )
        return messages

    async def history(
        self, room_id: uuid.UUID, user_id: uuid.UUID, before_seq: int | None, limit: int
    ) -> list[Message]:
        messages: list[Message] = await self._caller.call(
            self._shard(room_id), "history", room_id, user_id, before_seq, limit
        )
        return messages

    async def member_room(self, room_id: uuid.UUID, user_id: uuid.UUID) -> tuple[str, int]:
        kind, last_seq = await self._caller.call(
            self._shard(room_id), "member_room", room_id, user_id
        )
        return str(kind), int(last_seq)

    async def members(self, room_id: uuid.UUID, user_id: uuid.UUID) -> list[uuid.UUID]:
        members: list[uuid.UUID] = await self._caller.call(
            self._shard(room_id), "members", room_id, user_id
        )
        return members

    async def add_members(
        self, room_id: uuid.UUID, actor: uuid.UUID, user_ids: list[uuid.UUID]
    ) -> list[uuid.UUID]:
        members: list[uuid.UUID] = await self._caller.call(
            self._shard(room_id), "add_members", room_id, actor, user_ids
        )
        return members

    async def leave(self, room_id: uuid.UUID, user_id: uuid.UUID) -> None:
        await self._caller.call(self._shard(room_id), "leave", room_id, user_id)

    async def forget_account(self, room_ids: list[uuid.UUID], user_id: uuid.UUID) -> int:
        """Tell each room's shard that an account was erased (`ChatShard.forget_account`)."""
        by_shard: dict[int, list[uuid.UUID]] = {}
        for room_id in room_ids:
            by_shard.setdefault(self._shard(room_id), []).append(room_id)
        changed = 0
        for index, rooms in by_shard.items():
            changed += await self._caller.call(index, "forget_account", rooms, user_id)
        return changed
