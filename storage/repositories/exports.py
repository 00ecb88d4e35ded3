"""Data export rows: a person's request for their data, the export worker's queue, and the
archive's life until it expires.

Like the media processor's queue (`storage.repositories.media`), a claim is a lease fenced
by `attempts`: progress and the result are recorded only by the claim that is current, so a
worker that lost its lease cannot overwrite a newer one. One export is open (QUEUED or
RUNNING) per person at a time, which a partial unique index keeps even under races.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime

from storage.db import Database
from storage.events import Event
from storage.outbox.rows import add_event
from storage.rows import columns, from_row, from_rows


@dataclass(frozen=True)
class ExportRecord:
    id: uuid.UUID
    user_id: uuid.UUID
    status: str  # queued | running | ready | failed | expired
    progress: float
    attempts: int
    created_at: datetime
    leased_until: datetime | None = None
    ready_at: datetime | None = None
    expires_at: datetime | None = None
    size_bytes: int | None = None
    error: str | None = None


_COLUMNS = columns(ExportRecord)


class ExportRepository:
    def __init__(self, db: Database) -> None:
        self._db = db

    async def reusable(self, user_id: uuid.UUID, reuse_ready_s: float) -> ExportRecord | None:
        """The person's open export, or else their READY one made less than
        `reuse_ready_s` ago."""
        async with self._db.connection() as conn:
            row = await conn.fetchrow(
                f"""
                SELECT {_COLUMNS} FROM data_exports
                WHERE user_id = $1
                  AND (status IN ('queued', 'running')
                       OR (status = 'ready' AND ready_at > now() - make_interval(secs => $2)))
                ORDER BY created_at DESC LIMIT 1
                """,
                user_id,
                reuse_ready_s,
            )
        return from_row(ExportRecord, row) if row else None

    async def request(self, user_id: uuid.UUID, reuse_ready_s: float) -> ExportRecord:
        """What `reusable` finds, or else a new QUEUED export."""
        found = await self.reusable(user_id, reuse_ready_s)
        if found is not None:
            return found
        async with self._db.connection() as conn:
            row = await conn.fetchrow(
                f"""
                INSERT INTO data_exports (id, user_id) VALUES ($1, $2)
                ON CONFLICT (user_id) WHERE status IN ('queued', 'running') DO NOTHING
                RETURNING {_COLUMNS}
                """,
                uuid.uuid4(),
                user_id,
            )
            if row is None:  # a concurrent request opened one first: answer that one
                row = await conn.fetchrow(
                    f"""
                    SELECT {_COLUMNS} FROM data_exports
                    WHERE user_id = $1 AND status IN ('queued', 'running')
                    """,
                    user_id,
                )
        return from_row(ExportRecord, row)

    async def get(self, export_id: uuid.UUID) -> ExportRecord | None:
        async with self._db.connection() as conn:
            row = await conn.fetchrow(
                f"SELECT {_COLUMNS} FROM data_exports WHERE id = $1", export_id
            )
        return from_row(ExportRecord, row) if row else None

    async def latest(self, user_id: uuid.UUID) -> ExportRecord | None:
        async with self._db.connection() as conn:
            row = await conn.fetchrow(
                f"""
                SELECT {_COLUMNS} FROM data_exports WHERE user_id = $1
                ORDER BY created_at DESC LIMIT 1
                """,
                user_id,
            )
        return from_row(ExportRecord, row) if row else None

    async def claim(self, limit: int, lease_s: float) -> list[ExportRecord]:
        """Up to `limit` open exports whose lease is free or has run out, leased to the
        caller for `lease_s` seconds and RUNNING; each claim counts one attempt."""
        async with self._db.connection() as conn:
            rows = await conn.fetch(
                f"""
                UPDATE data_exports SET status = 'running', attempts = attempts + 1,
                                        leased_until = now() + make_interval(secs => $2)
                WHERE id IN (
                    SELECT id FROM data_exports
                    WHERE status IN ('queued', 'running')
                      AND (leased_until IS NULL OR leased_until < now())
                    ORDER BY created_at
                    LIMIT $1
                    FOR UPDATE SKIP LOCKED
                )
                RETURNING {_COLUMNS}
                """,
                limit,
                lease_s,
            )
        return from_rows(ExportRecord, rows)

    async def advance(
        self, export_id: uuid.UUID, attempt: int, progress: float, lease_s: float
    ) -> bool:
        """Record the claim `attempt`'s progress and renew its lease; False if that claim
        is no longer current."""
        async with self._db.connection() as conn:
            renewed = await conn.fetchval(
                """
                UPDATE data_exports
                SET progress = GREATEST(progress, $3),
                    leased_until = now() + make_interval(secs => $4)
                WHERE id = $1 AND status = 'running' AND attempts = $2
                RETURNING true
                """,
                export_id,
                attempt,
                min(1.0, max(0.0, progress)),
                lease_s,
            )
        return bool(renewed)

    async def finish(
        self,
        export_id: uuid.UUID,
        attempt: int,
        size_bytes: int,
        expires_at: datetime,
        event: Event,
    ) -> ExportRecord | None:
        """READY, kept until `expires_at`, with `event` in the same transaction; None if
        the claim `attempt` is no longer current."""
        async with self._db.transaction() as conn:
            row = await conn.fetchrow(
                f"""
                UPDATE data_exports
                SET status = 'ready', progress = 1, size_bytes = $3, leased_until = NULL,
                    ready_at = now(), expires_at = $4
                WHERE id = $1 AND status = 'running' AND attempts = $2
                RETURNING {_COLUMNS}
                """,
                export_id,
                attempt,
                size_bytes,
                expires_at,
            )
            if row is None:
                return None
            await add_event(conn, event)
        return from_row(ExportRecord, row)

    async def fail(self, export_id: uuid.UUID, attempt: int, error: str) -> bool:
        async with self._db.connection() as conn:
            done = await conn.fetchval(
                """
                UPDATE data_exports SET status = 'failed', error = $3, leased_until = NULL
                WHERE id = $1 AND status = 'running' AND attempts = $2
                RETURNING true
                """,
                export_id,
                attempt,
                error,
            )
        return bool(done)

    async def release(self, export_id: uuid.UUID, attempt: int) -> None:
        """Give a claim back early (a retriable failure): the next claim may take it now."""
        async with self._db.connection() as conn:
            await conn.execute(
                """
                UPDATE data_exports SET leased_until = NULL
                WHERE id = $1 AND status = 'running' AND attempts = $2
                """,
                export_id,
                attempt,
            )

    async def due_to_expire(self, limit: int) -> list[uuid.UUID]:
        """READY exports past `expires_at`, whose archives are to go."""
        async with self._db.connection() as conn:
            rows = await conn.fetch(
                """
                SELECT id FROM data_exports WHERE status = 'ready' AND expires_at < now()
                ORDER BY expires_at LIMIT $1
                """,
                limit,
            )
        return [row["id"] for row in rows]

    async def expire(self, export_id: uuid.UUID) -> None:
        """EXPIRED, once its archive is deleted."""
        async with self._db.connection() as conn:
            await conn.execute(
                "UPDATE data_exports SET status = 'expired' WHERE id = $1 AND status = 'ready'",
                export_id,
            )
