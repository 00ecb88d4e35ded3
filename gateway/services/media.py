"""Uploads: who may upload what, the signed upload URL, receiving the bytes, and queueing
them for processing.

`createUpload` checks the declared type and size against the per-kind limits and makes a
media row with a URL signed for it alone (HMAC over its id and expiry), valid for
`NOVA_MEDIA_UPLOAD_TTL_S` and for one use. The PUT to that URL streams the bytes into the
media store, stopping at the declared size, and then judges them by their content (magic
bytes), never by the name or the declared type: anything truncated, oversized, of another
kind or of no known type is refused with a code and nothing of it is kept.
`completeUpload` queues the media for processing, with `media.uploaded`, in one
transaction.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import redis.asyncio as aioredis

from actors.media.processor import JOBS_CHANNEL
from actors.media.sniff import SNIFF_BYTES, sniff
from gateway.settings import GatewaySettings
from storage.db import Database
from storage.errors import ConfigError, InvalidInput, NotFound
from storage.events import Event
from storage.media_store import ORIGINAL, DirectoryStore, TooLarge, media_key
from storage.repositories.media import MediaRecord, MediaRepository

log = logging.getLogger(__name__)

DECLARED_TYPES = {
    "image/jpeg": "image",
    "image/png": "image",
    "image/webp": "image",
    "image/gif": "image",
}
MAX_FILENAME = 255


class UploadRefused(InvalidInput):
    """An upload URL or its bytes refused: `status` is the HTTP answer, `code` Nova's."""

    def __init__(self, message: str, *, status: int, code: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code


@dataclass(frozen=True)
class UploadTicket:
    media: MediaRecord
    url: str
    headers: dict[str, str]


class Media:
    def __init__(
        self, db: Database, store: DirectoryStore, redis: aioredis.Redis, settings: GatewaySettings
    ) -> None:
        self._repo = MediaRepository(db)
        self._store = store
        self._redis = redis
        self._settings = settings
        if not settings.secret_key:
            raise ConfigError("NOVA_SECRET_KEY is required to sign upload URLs")
        self._key = hashlib.sha256(b"nova media upload\0" + settings.secret_key.encode()).digest()

    @property
    def store(self) -> DirectoryStore:
        return self._store

    # -- createUpload ----------------------------------------------------------------

    async def create_upload(
        self, owner: uuid.UUID, filename: str, content_type: str, size: int
    ) -> UploadTicket:
        kind = DECLARED_TYPES.get(content_type.strip().lower())
        if kind is None:
            raise InvalidInput(
                f"contentType {content_type!r} is not accepted; one of: "
                + ", ".join(sorted(DECLARED_TYPES))
            )
        limit = self._limit(kind)
        if not 0 < size <= limit:
            raise InvalidInput(f"size must be between 1 and {limit} bytes for a {kind}")
        name = filename.strip()
        if not name or len(name) > MAX_FILENAME or not name.isprintable():
            raise InvalidInput(f"filename must be 1-{MAX_FILENAME} printable characters")
        expires = datetime.now(UTC) + timedelta(seconds=self._settings.media_upload_ttl_s)
        media = await self._repo.create(
            media_id=uuid.uuid4(),
            owner_id=owner,
            kind=kind,
            filename=name,
            declared_type=content_type.strip().lower(),
            declared_size=size,
            upload_expires_at=expires,
        )
        return UploadTicket(
            media=media,
            url=self.upload_url(media.id, expires),
            headers={"Content-Type": media.declared_type},
        )

    def _limit(self, kind: str) -> int:
        if kind == "image":
            return self._settings.media_max_image_bytes
        return self._settings.media_max_video_bytes

    def upload_url(self, media_id: uuid.UUID, expires: datetime) -> str:
        stamp = int(expires.timestamp())
        signature = self._sign(media_id, stamp)
        base = self._settings.public_url.rstrip("/")
        return f"{base}/media/uploads/{media_id}?expires={stamp}&signature={signature}"

    def _sign(self, media_id: uuid.UUID, expires: int) -> str:
        message = f"{media_id}.{expires}".encode()
        return hmac.new(self._key, message, hashlib.sha256).hexdigest()

    # -- the PUT ------------------------------------------------------------------------

    async def receive(
        self, media_id: uuid.UUID, expires: int, signature: str, chunks: AsyncIterator[bytes]
    ) -> MediaRecord:
        """Store an upload's bytes, once, if the URL is genuine and current and the bytes
        are what was declared; `UploadRefused` otherwise, with nothing kept."""
        if not hmac.compare_digest(self._sign(media_id, expires), signature):
            raise UploadRefused("the upload URL's signature is wrong", status=403, code="FORBIDDEN")
        if datetime.now(UTC).timestamp() >= expires:
            raise UploadRefused("the upload URL has expired", status=410, code="UPLOAD_EXPIRED")
        media = await self._repo.begin_upload(media_id)
        if media is None:
            raise UploadRefused(
                "the upload URL was used already or has expired", status=409, code="CONFLICT"
            )
        key = media_key(media_id, ORIGINAL)
        try:
            size = await self._store.write_stream(key, chunks, max_bytes=media.declared_size)
        except TooLarge:
            await self._refuse(media, "more bytes than the declared size")
            raise UploadRefused(
                f"more than the declared {media.declared_size} bytes", status=413, code="TOO_LARGE"
            ) from None
        except BaseException:
            await self._refuse(media, "the upload was cut off")
            raise
        if size < media.declared_size:
            await self._refuse(media, f"truncated: {size} of {media.declared_size} bytes")
            raise UploadRefused(
                f"truncated: {size} of the declared {media.declared_size} bytes arrived",
                status=400,
                code="BAD_USER_INPUT",
            )
        found = sniff(await self._store.head(key, SNIFF_BYTES))
        if found is None or found.kind.lower() != media.kind:
            what = "no known type" if found is None else found.mime
            await self._refuse(media, f"the bytes are {what}, not the declared {media.kind}")
            raise UploadRefused(
                f"the bytes are {what}, not the declared {media.declared_type}",
                status=415,
                code="UNSUPPORTED_MEDIA",
            )
        await self._repo.record_upload(media_id, size)
        return media

    async def _refuse(self, media: MediaRecord, reason: str) -> None:
        await self._repo.reject(media.id, reason)
        await self._store.delete_media(media.id)

    # -- completeUpload and reads ----------------------------------------------------------

    async def complete(self, owner: uuid.UUID, media_id: uuid.UUID) -> MediaRecord:
        media = await self.get_own(owner, media_id)
        if media.status in ("processing", "ready"):
            return media  # completed before: the same answer again
        if media.status == "failed":
            raise InvalidInput(f"this upload was refused: {media.error}")
        if media.size is None:
            raise InvalidInput("nothing was uploaded to this upload's URL yet")
        found = sniff(await self._store.head(media_key(media_id, ORIGINAL), SNIFF_BYTES))
        if found is None:  # checked when it arrived; the store lost or changed it since
            raise InvalidInput("the uploaded bytes are gone; upload again")
        event = Event(
            type="media.uploaded",
            aggregate_id=str(media_id),
            payload={
                "media_id": str(media_id),
                "owner_id": str(owner),
                "kind": media.kind,
                "content_type": found.mime,
            },
        )
        queued = await self._repo.queue(media_id, owner, found.mime, event)
        if queued is None:  # completed concurrently
            return await self.get_own(owner, media_id)
        try:
            await self._redis.publish(JOBS_CHANNEL, str(media_id))
        except Exception as exc:  # processors poll as well; this only saves them the wait
            log.debug("media job wake-up not published: %s", exc)
        return queued

    async def get_many(self, ids: list[uuid.UUID]) -> list[MediaRecord | None]:
        return await self._repo.get_many(ids)

    async def get_own(self, owner: uuid.UUID, media_id: uuid.UUID) -> MediaRecord:
        media = await self._repo.get(media_id)
        if media is None or media.owner_id != owner:
            raise NotFound("media not found")
        return media
