"""The inbox as the gateway reads and updates it: pages, the unread count, marking read.

Notifications are written by the notifications consumer (`actors.consumers.notifications`).
"""

from __future__ import annotations

import uuid
from datetime import datetime

from storage.db import Database
from storage.repositories.notifications import NotificationRecord, NotificationStore


class Notifications:
    """The inbox as the gateway reads and updates it."""

    def __init__(self, db: Database) -> None:
        self._store = NotificationStore(db)

    async def page(
        self, user_id: uuid.UUID, limit: int, before: tuple[datetime, uuid.UUID] | None
    ) -> list[NotificationRecord]:
        return await self._store.page(user_id, limit, before)

    async def unread(self, user_id: uuid.UUID) -> int:
        return await self._store.unread(user_id)

    async def mark_read(self, user_id: uuid.UUID, up_to: uuid.UUID | None) -> int | None:
        return await self._store.mark_read(user_id, up_to)
