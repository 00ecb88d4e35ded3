"""Media rows: an upload's life from its signed URL to READY or FAILED, and the processor's
queue.

Each step is one conditional UPDATE, so a step taken twice (a reused upload URL, a second
completeUpload, a processor whose lease ran out) changes nothing the second time. The
processor's claims are leases fenced by `attempts`: a result is recorded only by the
claim that is current, so a slow worker that lost its lease cannot overwrite a newer one.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import asyncpg

from storage.db import Database
from storage.errors import InvalidInput
from storage.events import Event
from storage.outbox.rows import add_event
from storage.rows import columns, from_row, from_rows

KINDS = ("image", "video")
MAX_IMAGES = 4  # what one post or message may carry; or a single video


@dataclass(frozen=True)
class MediaRecord:
    id: uuid.UUID
    owner_id: uuid.UUID
    kind: str
    status: str
    filename: str
    declared_type: str
    declared_size: int
    upload_expires_at: datetime
    created_at: datetime
    attempts: int
    variants: tuple[dict[str, Any], ...]
    content_type: str | None = None
    size: int | None = None
    uploaded_at: datetime | None = None
    width: int | None = None
    height: int | None = None
    duration_ms: int | None = None
    blurhash: str | None = None
    error: str | None = None
    processed_at: datetime | None = None
    attached_at: datetime | None = None
    attached_to: str | None = None  # "post" (public), "message" or "story" (private)
    hidden_at: datetime | None = None  # its post was deleted: served no more

    @property
    def public(self) -> bool:
        """Whether anyone may fetch its files without a signed URL: a live post's media."""
        return self.attached_to == "post" and self.hidden_at is None


@dataclass(frozen=True)
class Processed:
    """What processing made of a media: its size, placeholder and variants (each a dict of
    name, format, content type, key, width and height)."""

    width: int
    height: int
    blurhash: str | None
    variants: list[dict[str, Any]]
    duration_ms: int | None = None


_COLUMNS = columns(MediaRecord)


class MediaRepository:
    def __init__(self, db: Database) -> None:
        self._db = db

    async def create(
        self,
        *,
        media_id: uuid.UUID,
        owner_id: uuid.UUID,
        kind: str,
        filename: str,
        declared_type: str,
        declared_size: int,
        upload_expires_at: datetime,
    ) -> MediaRecord:
        async with self._db.connection() as conn:
            row = await conn.fetchrow(
                f"""
                INSERT INTO media (id, owner_id, kind, filename, declared_type, declared_size,
                                   upload_expires_at)
                VALUES ($1, $2, $3, $4, $5, $6, $7)
                RETURNING {_COLUMNS}
                """,
                media_id,
                owner_id,
                kind,
                filename,
                declared_type,
                declared_size,
                upload_expires_at,
            )
        return from_row(MediaRecord, row)

    async def get_many(self, ids: list[uuid.UUID]) -> list[MediaRecord | None]:
        """In the order of `ids`; None for an unknown one."""
        async with self._db.connection() as conn:
            rows = await conn.fetch(f"SELECT {_COLUMNS} FROM media WHERE id = ANY($1)", ids)
        found = {record.id: record for record in from_rows(MediaRecord, rows)}
        return [found.get(media_id) for media_id in ids]

    async def check_selection(self, owner: uuid.UUID, media_ids: Sequence[uuid.UUID]) -> None:
        """`InvalidInput` unless `media_ids` is up to `MAX_IMAGES` pictures or one video,
        each once and the owner's. Whether each may still be attached is settled where it
        is attached (`attach_media`), atomically: a retried write finds its original there
        instead of being refused here."""
        if len(set(media_ids)) != len(media_ids):
            raise InvalidInput("mediaIds: each media once")
        records = await self.get_many(list(media_ids))
        if any(m is None or m.owner_id != owner for m in records):
            raise InvalidInput("mediaIds: each must be an upload of your own")
        kinds = [m.kind for m in records if m is not None]
        if "video" in kinds and len(kinds) > 1:
            raise InvalidInput("mediaIds: one video, or up to 4 pictures, not both")
        if len(kinds) > MAX_IMAGES:
            raise InvalidInput(f"mediaIds: at most {MAX_IMAGES} pictures")

    async def get(self, media_id: uuid.UUID) -> MediaRecord | None:
        async with self._db.connection() as conn:
            row = await conn.fetchrow(f"SELECT {_COLUMNS} FROM media WHERE id = $1", media_id)
        return from_row(MediaRecord, row) if row else None

    async def begin_upload(self, media_id: uuid.UUID) -> MediaRecord | None:
        """Take the upload URL's one use; None if it was used, has expired or is unknown."""
        async with self._db.connection() as conn:
            row = await conn.fetchrow(
                f"""
                UPDATE media SET uploaded_at = now()
                WHERE id = $1 AND status = 'uploading' AND uploaded_at IS NULL
                  AND upload_expires_at > now()
                RETURNING {_COLUMNS}
                """,
                media_id,
            )
        return from_row(MediaRecord, row) if row else None

    async def record_upload(self, media_id: uuid.UUID, size: int) -> None:
        async with self._db.connection() as conn:
            await conn.execute(
                "UPDATE media SET size = $2 WHERE id = $1 AND status = 'uploading'",
                media_id,
                size,
            )

    async def reject(self, media_id: uuid.UUID, error: str) -> None:
        """An upload that cannot be used (truncated, too large, not what it claims): FAILED,
        so its URL and its completeUpload are refused from now on."""
        async with self._db.connection() as conn:
            await conn.execute(
                """
                UPDATE media SET status = 'failed', error = $2,
                                 uploaded_at = coalesce(uploaded_at, now())
                WHERE id = $1 AND status = 'uploading'
                """,
                media_id,
                error,
            )

    async def queue(
        self, media_id: uuid.UUID, owner_id: uuid.UUID, content_type: str, event: Event
    ) -> MediaRecord | None:
        """The owner's completed upload, queued for processing with `event` (one
        transaction); None unless it is theirs, uploaded in full and not yet queued."""
        async with self._db.transaction() as conn:
            row = await conn.fetchrow(
                f"""
                UPDATE media SET status = 'processing', content_type = $3
                WHERE id = $1 AND owner_id = $2 AND status = 'uploading' AND size IS NOT NULL
                RETURNING {_COLUMNS}
                """,
                media_id,
                owner_id,
                content_type,
            )
            if row is None:
                return None
            await add_event(conn, event)
        return from_row(MediaRecord, row)

    async def claim(self, limit: int, lease_s: float) -> list[MediaRecord]:
        """Up to `limit` queued media whose lease is free or has run out, leased to the
        caller for `lease_s` seconds; each claim counts one attempt."""
        async with self._db.connection() as conn:
            rows = await conn.fetch(
                f"""
                UPDATE media SET lease_until = now() + make_interval(secs => $2),
                                 attempts = attempts + 1
                WHERE id IN (
                    SELECT id FROM media
                    WHERE status = 'processing' AND (lease_until IS NULL OR lease_until < now())
                    ORDER BY created_at
                    LIMIT $1
                    FOR UPDATE SKIP LOCKED
                )
                RETURNING {_COLUMNS}
                """,
                limit,
                lease_s,
            )
        return from_rows(MediaRecord, rows)

    async def extend(self, media_id: uuid.UUID, attempt: int, lease_s: float) -> bool:
        """Renew the claim `attempt`'s lease for `lease_s` from now (a long transcode);
        False if that claim is no longer current."""
        async with self._db.connection() as conn:
            renewed = await conn.fetchval(
                """
                UPDATE media SET lease_until = now() + make_interval(secs => $3)
                WHERE id = $1 AND status = 'processing' AND attempts = $2
                RETURNING true
                """,
                media_id,
                attempt,
                lease_s,
            )
        return bool(renewed)

    async def finish(
        self,
        media_id: uuid.UUID,
        attempt: int,
        *,
        event: Event,
        processed: Processed | None = None,
        error: str | None = None,
    ) -> bool:
        """Record the claim `attempt`'s result, READY with `processed` or FAILED with
        `error`, and its event; False if that claim is no longer current."""
        async with self._db.transaction() as conn:
            if processed is not None:
                done = await conn.fetchval(
                    """
                    UPDATE media SET status = 'ready', width = $3, height = $4, blurhash = $5,
                                     variants = $6, duration_ms = $7, lease_until = NULL,
                                     processed_at = now()
                    WHERE id = $1 AND status = 'processing' AND attempts = $2
                    RETURNING true
                    """,
                    media_id,
                    attempt,
                    processed.width,
                    processed.height,
                    processed.blurhash,
                    processed.variants,
                    processed.duration_ms,
                )
            else:
                done = await conn.fetchval(
                    """
                    UPDATE media SET status = 'failed', error = $3, lease_until = NULL,
                                     processed_at = now()
                    WHERE id = $1 AND status = 'processing' AND attempts = $2
                    RETURNING true
                    """,
                    media_id,
                    attempt,
                    error or "processing failed",
                )
            if not done:
                return False
            await add_event(conn, event)
        return True

    async def unattached(self, older_than_s: float, limit: int) -> list[uuid.UUID]:
        """Media never attached to anything, made more than `older_than_s` ago."""
        async with self._db.connection() as conn:
            rows = await conn.fetch(
                """
                SELECT id FROM media
                WHERE attached_at IS NULL AND created_at < now() - make_interval(secs => $1)
                ORDER BY created_at LIMIT $2
                """,
                older_than_s,
                limit,
            )
        return [row["id"] for row in rows]

    async def of_deleted_posts(self, older_than_s: float, limit: int) -> list[uuid.UUID]:
        """Media of posts deleted more than `older_than_s` ago; not those hidden by
        moderation, which a moderator may yet restore."""
        async with self._db.connection() as conn:
            rows = await conn.fetch(
                """
                SELECT DISTINCT m.id FROM posts p JOIN media m ON m.id = ANY(p.media_ids)
                WHERE p.deleted_at < now() - make_interval(secs => $1)
                  AND p.moderation IS NULL
                LIMIT $2
                """,
                older_than_s,
                limit,
            )
        return [row["id"] for row in rows]

    async def of_deleted_messages(self, older_than_s: float, limit: int) -> list[uuid.UUID]:
        """Media of messages deleted more than `older_than_s` ago, still stored."""
        async with self._db.connection() as conn:
            rows = await conn.fetch(
                """
                SELECT DISTINCT m.id FROM chat_messages c JOIN media m ON m.id = ANY(c.media_ids)
                WHERE c.deleted_at < now() - make_interval(secs => $1)
                  AND cardinality(c.media_ids) > 0
                LIMIT $2
                """,
                older_than_s,
                limit,
            )
        return [row["id"] for row in rows]

    async def delete(self, media_id: uuid.UUID) -> None:
        async with self._db.connection() as conn:
            await conn.execute("DELETE FROM media WHERE id = $1", media_id)

    async def forget(self, media_id: uuid.UUID) -> bool:
        """Delete a media row that is still unattached; False if it was attached since."""
        async with self._db.connection() as conn:
            deleted = await conn.fetchval(
                "DELETE FROM media WHERE id = $1 AND attached_at IS NULL RETURNING true",
                media_id,
            )
        return bool(deleted)

    async def release(self, media_id: uuid.UUID, attempt: int) -> None:
        """Give a claim back early (a retriable failure): the next claim may take it now."""
        async with self._db.connection() as conn:
            await conn.execute(
                """
                UPDATE media SET lease_until = NULL
                WHERE id = $1 AND status = 'processing' AND attempts = $2
                """,
                media_id,
                attempt,
            )


async def hide_media(conn: asyncpg.Connection, media_ids: Sequence[uuid.UUID]) -> None:
    """Stop serving these media (their post is deleted), in the caller's transaction."""
    await conn.execute(
        "UPDATE media SET hidden_at = clock_timestamp() WHERE id = ANY($1) AND hidden_at IS NULL",
        list(media_ids),
    )


async def unhide_media(conn: asyncpg.Connection, media_ids: Sequence[uuid.UUID]) -> None:
    """Serve these media again (their post is back), in the caller's transaction."""
    await conn.execute("UPDATE media SET hidden_at = NULL WHERE id = ANY($1)", list(media_ids))


async def attach_media(
    conn: asyncpg.Connection,
    owner_id: uuid.UUID,
    media_ids: Sequence[uuid.UUID],
    attached_to: str,
) -> None:
    """Attach the owner's media to what the caller's transaction is writing (`attached_to`:
    a post, a message, a story); `InvalidInput`, so the transaction (or its savepoint)
    aborts, unless every one is the owner's, uploaded (PROCESSING or READY) and not
    attached before."""
    attached = await conn.fetchval(
        """
        WITH taken AS (
            UPDATE media SET attached_at = now(), attached_to = $3
            WHERE id = ANY($1) AND owner_id = $2 AND status IN ('processing', 'ready')
              AND attached_at IS NULL
            RETURNING id
        )
        SELECT count(*) FROM taken
        """,
        list(media_ids),
        owner_id,
        attached_to,
    )
    if attached != len(set(media_ids)):
        raise InvalidInput(
            "mediaIds: each must be your own upload, completed, not failed and not used before"
        )
