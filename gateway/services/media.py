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
import time
import uuid
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import redis.asyncio as aioredis

from actors.media.processor import JOBS_CHANNEL
from actors.media.sniff import SNIFF_BYTES, sniff
from gateway.errors import CodedRefusal
from gateway.settings import GatewaySettings
from storage.db import Database
from storage.errors import ConfigError, InvalidInput, NotFound
from storage.events import Event
from storage.media_store import ORIGINAL, MediaStore, TooLarge, media_key
from storage.repositories.media import MediaRecord, MediaRepository

log = logging.getLogger(__name__)

DECLARED_TYPES = {
    "image/jpeg": "image",
    "image/png": "image",
    "image/webp": "image",
    "image/gif": "image",
    "video/mp4": "video",
    "video/quicktime": "video",
    "video/webm": "video",
    "video/x-matroska": "video",
}
MAX_FILENAME = 255
PUBLIC_CACHE_SIZE = 10_000


class UploadRefused(CodedRefusal):
    """An upload URL or its bytes refused: `status` is the HTTP answer, `code` Nova's."""


@dataclass(frozen=True)
class UploadTicket:
    media: MediaRecord
    url: str
    headers: dict[str, str]


class Media:
    def __init__(
        self, db: Database, store: MediaStore, redis: aioredis.Redis, settings: GatewaySettings
    ) -> None:
        self._repo = MediaRepository(db)
        self._store = store
        self._redis = redis
        self._settings = settings
        if not settings.secret_key:
            raise ConfigError("NOVA_SECRET_KEY is required to sign upload URLs")
        self._key = hashlib.sha256(b"nova media upload\0" + settings.secret_key.encode()).digest()
        secret = settings.secret_key.encode()
        self._download_key = hashlib.sha256(b"nova media download\0" + secret).digest()
        self._public: dict[uuid.UUID, tuple[bool, float]] = {}

    @property
    def store(self) -> MediaStore:
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
        direct = await self._store.presigned_put(
            media_key(media.id, ORIGINAL),
            media.declared_type,
            size,
            self._settings.media_upload_ttl_s,
        )
        if direct is not None:  # straight into the store; checked at completeUpload
            url, headers = direct
            return UploadTicket(media=media, url=url, headers=headers)
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

    # -- download URLs ----------------------------------------------------------------

    def files_url(self, media: MediaRecord, *, until: datetime | None = None) -> str:
        """Where a media's files are fetched, ending in `/`: `/media/<id>/` for public
        media (a post's: cacheable by anyone), else a signed path,
        `/media/signed/<expires>/<signature>/<id>/`, that lets its holder fetch that media's
        files until `expires`, or `until` if sooner (a story's end). The signature is in
        the path, not the query, so the relative names inside an HLS playlist resolve to
        signed URLs too; the expiry is rounded up to a quarter of the TTL, so a client
        asking again within it gets the same URLs and keeps its cache."""
        base = f"{self._settings.public_url.rstrip('/')}/media"
        if media.public:
            return f"{base}/{media.id}/"
        ttl = self._settings.media_url_ttl_s
        step = max(1, ttl // 4)
        expires = -(-(int(time.time()) + ttl) // step) * step
        if until is not None:
            expires = min(expires, int(until.timestamp()))
        return f"{base}/signed/{expires}/{self.download_signature(media.id, expires)}/{media.id}/"

    def download_signature(self, media_id: uuid.UUID, expires: int) -> str:
        message = f"{media_id}.{expires}".encode()
        return hmac.new(self._download_key, message, hashlib.sha256).hexdigest()

    def signed_download_valid(self, media_id: uuid.UUID, expires: int, signature: str) -> bool:
        good = hmac.compare_digest(self.download_signature(media_id, expires), signature)
        return good and time.time() < expires

    async def is_public(self, media_id: uuid.UUID) -> bool:
        """Whether a media's files may be fetched unsigned (a live post's), remembered for
        `NOVA_MEDIA_PUBLIC_RECHECK_S`: downloads do not each cost a query."""
        now = time.monotonic()
        known = self._public.get(media_id)
        if known is not None and now - known[1] < self._settings.media_public_recheck_s:
            return known[0]
        media = await self._repo.get(media_id)
        public = media is not None and media.public
        if len(self._public) >= PUBLIC_CACHE_SIZE:
            self._public.clear()
        self._public[media_id] = (public, now)
        return public

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
        await self._judge_content(media)
        await self._repo.record_upload(media_id, size)
        return media

    async def _judge_content(self, media: MediaRecord) -> None:
        """`UploadRefused` (nothing kept) unless the stored bytes are of the declared kind,
        by their content."""
        found = sniff(await self._store.head(media_key(media.id, ORIGINAL), SNIFF_BYTES))
        if found is None or found.kind.lower() != media.kind:
            what = "no known type" if found is None else found.mime
            await self._refuse(media, f"the bytes are {what}, not the declared {media.kind}")
            raise UploadRefused(
                f"the bytes are {what}, not the declared {media.declared_type}",
                status=415,
                code="UNSUPPORTED_MEDIA",
            )

    async def _arrived_directly(self, media: MediaRecord) -> MediaRecord:
        """An upload PUT straight into the store (a presigned URL) is judged here, as Nova's
        own PUT route judges the bytes it receives: all of the declared size, and of the
        declared kind by content; `UploadRefused`, with nothing kept, otherwise."""
        key = media_key(media.id, ORIGINAL)
        size = await self._store.size(key)
        if size is None:
            raise InvalidInput("nothing was uploaded to this upload's URL yet")
        if await self._repo.begin_upload(media.id) is None:
            raise InvalidInput("this upload was completed, refused or has expired")
        if size != media.declared_size:
            reason = f"{size} bytes arrived, not the declared {media.declared_size}"
            await self._refuse(media, reason)
            raise UploadRefused(reason, status=400, code="BAD_USER_INPUT")
        await self._judge_content(media)
        await self._repo.record_upload(media.id, size)
        return await self.get_own(media.owner_id, media.id)

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
            media = await self._arrived_directly(media)
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

    async def check_selection(self, owner: uuid.UUID, media_ids: Sequence[uuid.UUID]) -> None:
        """What a post or message may carry (`MediaRepository.check_selection`)."""
        await self._repo.check_selection(owner, media_ids)

    async def get_many(self, ids: list[uuid.UUID]) -> list[MediaRecord | None]:
        return await self._repo.get_many(ids)

    async def get_followable(self, viewer: uuid.UUID, media_id: uuid.UUID) -> MediaRecord:
        """A media whose processing the viewer may follow: their own, or a live post's
        (public: its files are anyone's to fetch too)."""
        media = await self._repo.get(media_id)
        if media is None or (media.owner_id != viewer and not media.public):
            raise NotFound("media not found")
        return media

    async def get_own(self, owner: uuid.UUID, media_id: uuid.UUID) -> MediaRecord:
        media = await self._repo.get(media_id)
        if media is None or media.owner_id != owner:
            raise NotFound("media not found")
        return media
