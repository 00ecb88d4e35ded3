"""A chat room as its shard holds it in memory (`actors.chat_shard`): members, the last
sequence number, recent messages (by id and by the sender's client message id), and the
sends waiting for the next group commit."""

from __future__ import annotations

import asyncio
import dataclasses
import uuid
from collections import deque
from dataclasses import dataclass, field

from storage.repositories.chat import Message
from storage.repositories.erase_account import ERASED


@dataclass
class PendingSend:
    sender: uuid.UUID
    text: str
    client_message_id: str
    future: asyncio.Future[Message] = field(repr=False)
    media_ids: tuple[uuid.UUID, ...] = ()


@dataclass
class RoomState:
    id: uuid.UUID
    kind: str
    members: set[uuid.UUID]
    last_seq: int
    recent: deque[Message]
    by_client_id: dict[tuple[uuid.UUID, str], Message]
    used_at: float
    pending: deque[PendingSend] = field(default_factory=deque)
    flusher: asyncio.Task[None] | None = None

    def replace(self, message: Message) -> None:
        """Put a changed message (a tombstone) where the cache holds it, if it does."""
        for index, held in enumerate(self.recent):
            if held.id == message.id:
                self.recent[index] = message
                self.by_client_id[(message.sender_id, message.client_message_id)] = message
                return

    def forget_sender(self, user_id: uuid.UUID) -> int:
        """The sender's account was erased: it is no member, and its messages are from
        `ERASED`, with no media, as PostgreSQL has them now. Returns how many changed."""
        self.members.discard(user_id)
        changed = 0
        for index, held in enumerate(self.recent):
            if held.sender_id != user_id:
                continue
            erased = dataclasses.replace(
                held, sender_id=ERASED, media_ids=(), client_message_id=f"erased:{held.id}"
            )
            self.by_client_id.pop((held.sender_id, held.client_message_id), None)
            self.by_client_id[(ERASED, erased.client_message_id)] = erased
            self.recent[index] = erased
            changed += 1
        return changed

    def remember(self, message: Message, keep: int) -> None:
        self.recent.append(message)
        self.by_client_id[(message.sender_id, message.client_message_id)] = message
        while len(self.recent) > keep:
            old = self.recent.popleft()
            self.by_client_id.pop((old.sender_id, old.client_message_id), None)
