"""Notifications as the gateway reads and updates them: the inbox (pages, the unread count,
marking read) and the recipient's preferences (kinds per channel, mutes, the email switch a
one-click unsubscribe link turns off).

Notifications are written by the notifications consumer (`actors.consumers.notifications`),
which honours the preferences; the digest job (`actors.notification_digest`) mails them.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import datetime

from storage.db import Database
from storage.errors import InvalidInput, NotFound
from storage.repositories.notification_preferences import Preferences, PreferenceStore
from storage.repositories.notifications import KINDS, NotificationRecord, NotificationStore
from storage.unsubscribe_tokens import Unsubscribe


@dataclass(frozen=True)
class KindChoice:
    """One kind's channels, as `updateNotificationPreferences` sets them."""

    kind: str
    in_app: bool
    email: bool


class Notifications:
    """The inbox and the preferences, as the gateway reads and updates them."""

    def __init__(self, db: Database) -> None:
        self._store = NotificationStore(db)
        self._preferences = PreferenceStore(db)

    async def page(
        self, user_id: uuid.UUID, limit: int, before: tuple[datetime, uuid.UUID] | None
    ) -> list[NotificationRecord]:
        return await self._store.page(user_id, limit, before)

    async def unread(self, user_id: uuid.UUID) -> int:
        return await self._store.unread(user_id)

    async def mark_read(self, user_id: uuid.UUID, up_to: uuid.UUID | None) -> int | None:
        return await self._store.mark_read(user_id, up_to)

    async def preferences(self, user_id: uuid.UUID) -> Preferences:
        return await self._preferences.get(user_id)

    async def muted_users(self, user_id: uuid.UUID) -> list[uuid.UUID]:
        """Most recently muted first."""
        return await self._preferences.muted_users(user_id)

    async def update_preferences(
        self, user_id: uuid.UUID, kinds: Sequence[KindChoice], email_digest: bool | None
    ) -> Preferences:
        """Kinds not named keep their setting; `email_digest` None keeps the switch."""
        named = [choice.kind for choice in kinds]
        repeated = sorted({kind for kind in named if named.count(kind) > 1})
        if repeated:
            raise InvalidInput(f"kinds names {', '.join(k.upper() for k in repeated)} twice")
        unknown = sorted(set(named) - set(KINDS))
        if unknown:
            raise InvalidInput(f"unknown notification kind {unknown[0]!r}")

        def change(current: Preferences) -> Preferences:
            in_app, email = set(current.in_app), set(current.email)
            for choice in kinds:
                (in_app.add if choice.in_app else in_app.discard)(choice.kind)
                (email.add if choice.email else email.discard)(choice.kind)
            enabled = current.email_enabled if email_digest is None else email_digest
            return replace(
                current, in_app=frozenset(in_app), email=frozenset(email), email_enabled=enabled
            )

        return await self._preferences.update(user_id, change)

    async def mute_user(self, user_id: uuid.UUID, other: uuid.UUID, muted: bool) -> Preferences:
        if other == user_id:
            raise InvalidInput("you cannot mute yourself")
        if not await self._preferences.mute_user(user_id, other, muted):
            raise NotFound("user not found")
        return await self._preferences.get(user_id)

    async def mute_room(self, user_id: uuid.UUID, room_id: uuid.UUID, muted: bool) -> Preferences:
        if not await self._preferences.mute_room(user_id, room_id, muted):
            raise NotFound("chat room not found")  # not a member: as if it did not exist
        return await self._preferences.get(user_id)

    async def unsubscribe(self, request: Unsubscribe) -> bool:
        """Apply a verified unsubscribe token: email off for one kind, or altogether.
        False if the account no longer exists."""
        if request.kind is not None and request.kind not in KINDS:
            raise InvalidInput(f"unknown notification kind {request.kind!r}")
        return await self._preferences.email_off(request.user_id, request.kind)
