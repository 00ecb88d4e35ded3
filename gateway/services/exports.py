"""Data exports, as the gateway sees them: asking for one, reading one's state, its signed
link, and the archive behind the link.

One export at a time per person: asking again while one is QUEUED or RUNNING answers that
one, and a READY one made less than `REUSE_READY_S` ago (a day) is answered again rather
than made anew, since little changes in a day and each archive costs a full read of the
account. New exports are rate-limited (`BUDGET`). The archive is made by the export worker
(`actors.exports`); the gateway only reads rows and streams the stored file.
"""

from __future__ import annotations

import dataclasses
import uuid
from datetime import UTC, datetime

from gateway.limits.rate_limits import Budget
from gateway.settings import GatewaySettings
from storage.db import Database
from storage.errors import NotFound
from storage.export_links import ARCHIVE, ExportLinks
from storage.media_store import ByteChunks, MediaStore, media_key
from storage.repositories.exports import ExportRecord, ExportRepository

REUSE_READY_S = 86_400.0
# New exports (not answers with an open or recent one): three at once, then one an hour.
BUDGET = Budget("data-exports", 1 / 3600, 3)


class DataExports:
    def __init__(self, db: Database, store: MediaStore, settings: GatewaySettings) -> None:
        self._repo = ExportRepository(db)
        self._store = store
        self._settings = settings
        self._links = ExportLinks(settings.secret_key)

    async def reusable(self, user_id: uuid.UUID) -> ExportRecord | None:
        """The export a request would answer with, if any: open, or READY and recent."""
        found = await self._repo.reusable(user_id, REUSE_READY_S)
        return _as_seen(found) if found is not None else None

    async def request(self, user_id: uuid.UUID) -> ExportRecord:
        return _as_seen(await self._repo.request(user_id, REUSE_READY_S))

    async def get(self, viewer: uuid.UUID, export_id: uuid.UUID | None) -> ExportRecord | None:
        """The viewer's export `export_id`, or their latest; someone else's is NOT_FOUND."""
        if export_id is None:
            latest = await self._repo.latest(viewer)
            return _as_seen(latest) if latest is not None else None
        record = await self._repo.get(export_id)
        if record is None or record.user_id != viewer:
            raise NotFound("no such data export")
        return _as_seen(record)

    def url(self, record: ExportRecord) -> str | None:
        """The signed link of a READY export, valid until it expires."""
        if record.status != "ready" or record.expires_at is None:
            return None
        expires = int(record.expires_at.timestamp())
        return self._links.url(self._settings.public_url, record.id, expires)

    def link_valid(self, export_id: uuid.UUID, signature: str, expires: int) -> bool:
        return self._links.valid(export_id, signature, expires)

    async def open_archive(self, export_id: uuid.UUID) -> tuple[ByteChunks, int] | None:
        """The archive's bytes and size, if the export is READY and its file stored."""
        record = await self._repo.get(export_id)
        if record is None or record.status != "ready":
            return None
        return await self._store.open_read(media_key(export_id, ARCHIVE))


def _as_seen(record: ExportRecord) -> ExportRecord:
    """EXPIRED from `expires_at` on, to the second, though the sweep that deletes the
    archive runs only every few minutes."""
    if record.status == "ready" and record.expires_at and record.expires_at <= datetime.now(UTC):
        return dataclasses.replace(record, status="expired")
    return record
