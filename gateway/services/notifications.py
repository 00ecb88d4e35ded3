"""The inbox as the gateway reads and updates it: pages, the unread count, marking read.

Notifications are written by the notifications consumer (`actors.consumers.notifications`).
"""

from __future__ import annotations

import uuid
from datetime import datetime

from storage.db import Database
from storage.repositories.notifications import (
    NotificationRecord,
    inbox_page,
    mark_read,
    unread_count,
)


class Notifications:
    """The inbox as the gateway reads and updates it."""

    def __init__(self, db: Database) -> None:
        self._db = db

    async def page(
        self, user_id: uuid.UUID, limit: int, before: tuple[datetime, uuid.UUID] | None
    ) -> list[NotificationRecord]:
        async with self._db.connection() as conn:
            return await inbox_page(conn, user_id, limit, before)

    async def unread(self, user_id: uuid.UUID) -> int:
        async with self._db.connection() as conn:
            return await unread_count(conn, user_id)

    async def mark_read(self, user_id: uuid.UUID, up_to: uuid.UUID | None) -> int | None:
        async with self._db.connection() as conn:
            return await mark_read(conn, user_id, up_to)
