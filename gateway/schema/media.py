"""GraphQL operations of media: `createUpload` (a signed URL to PUT the bytes to),
`completeUpload` (queue them for processing), `media(id)`, and `mediaUpdated(id)` until
processing ends (`actors.media` processes; `gateway.services.media` has the rules)."""

from __future__ import annotations

import asyncio
import contextlib
import enum
from collections.abc import AsyncGenerator
from datetime import datetime

import strawberry

from actors.media.processor import UPDATED_CHANNEL
from gateway.schema.types import NovaInfo, parse_id
from storage.repositories.media import MediaRecord

RECHECK_S = 5.0


@strawberry.enum
class MediaKind(enum.Enum):
    IMAGE = "image"
    VIDEO = "video"


@strawberry.enum
class MediaStatus(enum.Enum):
    UPLOADING = "uploading"
    PROCESSING = "processing"
    READY = "ready"
    FAILED = "failed"


@strawberry.type(description="One file processing made of a media.")
class MediaVariant:
    name: str = strawberry.field(
        description="A picture's: thumb (150 px square), small (480), large (1080). A "
        "video's: hls (the master playlist) and one playlist per rendition (240p, 480p, "
        "720p, as far as the source reaches)."
    )
    url: str
    width: int
    height: int
    content_type: str


@strawberry.type(description="A picture or a video, as uploaded and as processed.")
class Media:
    id: strawberry.ID
    kind: MediaKind
    status: MediaStatus
    width: int | None
    height: int | None
    blurhash: str | None = strawberry.field(
        description="A placeholder to paint while the picture loads (blurha.sh)."
    )
    duration_ms: int | None
    error: str | None = strawberry.field(description="Why processing failed (FAILED).")
    variants: list[MediaVariant]
    url: str | None = strawberry.field(
        description="Once READY: a picture's largest WebP variant (pick from `variants` to "
        "fit), a video's HLS master playlist."
    )
    poster_url: str | None = strawberry.field(description="A video's poster frame (JPEG).")

    @classmethod
    def from_record(cls, record: MediaRecord, files_url: str) -> Media:
        """`files_url`: where its files are, ending in `/` (`Media.files_url` of the
        service: a public or a signed location)."""
        variants = [
            MediaVariant(
                name=v["name"],
                url=f"{files_url}{v['file']}",
                width=v["width"],
                height=v["height"],
                content_type=v["content_type"],
            )
            for v in record.variants
            if v.get("name") != "poster"
        ]
        if record.kind == "video":
            main = next((v for v in variants if v.name == "hls"), None)
        else:
            main = max(
                (v for v in variants if v.content_type == "image/webp"),
                key=lambda v: v.width * v.height,
                default=None,
            )
        posters = [v for v in record.variants if v.get("name") == "poster"]
        poster = next(
            (v for v in posters if v.get("content_type") == "image/jpeg"),
            posters[0] if posters else None,
        )
        return cls(
            id=strawberry.ID(str(record.id)),
            kind=MediaKind(record.kind),
            status=MediaStatus(record.status),
            width=record.width,
            height=record.height,
            blurhash=record.blurhash,
            duration_ms=record.duration_ms,
            error=record.error,
            variants=variants,
            url=main.url if main else None,
            poster_url=f"{files_url}{poster['file']}" if poster else None,
        )


@strawberry.type
class UploadHeader:
    name: str
    value: str


@strawberry.type(description="Where to PUT an upload's bytes: once, before `expiresAt`.")
class Upload:
    id: strawberry.ID = strawberry.field(description="The media's id, for `completeUpload`.")
    url: str
    headers: list[UploadHeader] = strawberry.field(description="Send these with the PUT.")
    expires_at: datetime


@strawberry.input
class CreateUploadInput:
    filename: str
    content_type: str = strawberry.field(
        description="image/jpeg, image/png, image/webp, image/gif, video/mp4, "
        "video/quicktime or video/webm; the bytes must be of that kind, judged by their "
        "content"
    )
    size: int = strawberry.field(description="Bytes; the PUT must send exactly this many.")


def media_of(info: NovaInfo, record: MediaRecord, *, until: datetime | None = None) -> Media:
    """The GraphQL media of a record, its URLs public or signed as it requires (signed ones
    valid at most `until`)."""
    return Media.from_record(record, info.context.runtime.media.files_url(record, until=until))


@strawberry.type
class MediaQuery:
    @strawberry.field(description="One of your media.")
    async def media(self, info: NovaInfo, id: strawberry.ID) -> Media:
        viewer = info.context.require_user().user_id
        return media_of(info, await info.context.runtime.media.get_own(viewer, parse_id(id)))


@strawberry.type
class MediaMutation:
    @strawberry.mutation(
        description="Start an upload: a signed URL, valid once and for a few minutes, to PUT "
        "the bytes to; then `completeUpload`."
    )
    async def create_upload(self, info: NovaInfo, input: CreateUploadInput) -> Upload:
        viewer = info.context.require_user().user_id
        ticket = await info.context.runtime.media.create_upload(
            viewer, input.filename, input.content_type, input.size
        )
        return Upload(
            id=strawberry.ID(str(ticket.media.id)),
            url=ticket.url,
            headers=[UploadHeader(name=k, value=v) for k, v in ticket.headers.items()],
            expires_at=ticket.media.upload_expires_at,
        )

    @strawberry.mutation(
        description="The bytes are uploaded: process them. The media is PROCESSING, then "
        "READY or FAILED (`mediaUpdated`). Completing twice answers the same."
    )
    async def complete_upload(self, info: NovaInfo, id: strawberry.ID) -> Media:
        viewer = info.context.require_user().user_id
        return media_of(info, await info.context.runtime.media.complete(viewer, parse_id(id)))


@strawberry.type
class MediaSubscription:
    @strawberry.subscription(
        description="A media now, then when processing ends (READY or FAILED); it "
        "completes then. Your own media, or a post's (which anyone may follow)."
    )
    async def media_updated(self, info: NovaInfo, id: strawberry.ID) -> AsyncGenerator[Media, None]:
        viewer = info.context.require_user().user_id
        media_id = parse_id(id)
        runtime = info.context.runtime
        await runtime.media.get_followable(viewer, media_id)
        # Listen first, then read: an end published in between is not missed.
        async with runtime.hub.listen(UPDATED_CHANNEL.format(media_id), max_queue=10) as sub:
            record = await runtime.media.get_followable(viewer, media_id)
            yield media_of(info, record)
            while record.status not in ("ready", "failed"):
                # A lost publish delays the answer by one recheck, never forever.
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(sub.queue.get(), RECHECK_S)
                record = await runtime.media.get_followable(viewer, media_id)
                if record.status in ("ready", "failed"):
                    yield media_of(info, record)
