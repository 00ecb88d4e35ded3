"""Media on an S3-compatible store (moto's server, a real S3-API process): an upload PUT
straight to the bucket by its presigned URL, judged at completeUpload, processed by Ray
tasks that read and write the bucket (a picture and a video), and served by the download
route with ranges. The deployed processor keeps the stack's directory store, so for this
module a processor of the test's own, on the S3 store, takes the jobs."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette

from actors.media.processor import MediaProcessor
from deployments.settings import Settings
from deployments.workers import MEDIA_PROCESSOR, ensure_media_processor, stop_worker
from gateway.services.media import Media, UploadRefused
from gateway.transport.media_http import MediaRoutes
from storage.db import Database
from storage.media_store import ORIGINAL, media_key, open_store
from storage.redis_client import make_redis
from storage.repositories.media import MediaRecord
from tests.conftest import wait_until
from tests.support.media import jpeg, mp4
from tests.support.s3 import S3Server, unique_bucket
from tests.support.social import make_members

pytestmark = pytest.mark.stack


@pytest.fixture(scope="module")
async def on_s3(s3_server: S3Server, deployed: Settings) -> AsyncIterator[Settings]:
    """Settings whose media store is a fresh bucket, with a processor of its own running on
    them instead of the deployed one (put back afterwards)."""
    settings = deployed.replace(
        media_store=s3_server.location(unique_bucket("media")),
        media_s3_access_key=s3_server.access_key,
        media_s3_secret_key=s3_server.secret_key,
    )
    store = open_store(
        settings.media_store, access_key=s3_server.access_key, secret_key=s3_server.secret_key
    )
    store.ensure_bucket()
    store.close()
    stop_worker(MEDIA_PROCESSOR)
    db = await Database.connect(settings, application_name="test-s3-processor")
    redis = make_redis(settings)
    running = asyncio.create_task(MediaProcessor(db, redis, settings).run())
    try:
        yield settings
    finally:
        running.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await running
        await redis.aclose()
        await db.close()
        ensure_media_processor(deployed)


@pytest.fixture
async def media(db: Database, on_s3: Settings) -> AsyncIterator[Media]:
    redis = make_redis(on_s3)
    store = open_store(
        on_s3.media_store,
        access_key=on_s3.media_s3_access_key,
        secret_key=on_s3.media_s3_secret_key,
    )
    try:
        yield Media(db, store, redis, on_s3)
    finally:
        await store.aclose()
        await redis.aclose()


async def uploaded(media: Media, owner: uuid.UUID, body: bytes, content_type: str) -> uuid.UUID:
    ticket = await media.create_upload(owner, "file", content_type, len(body))
    async with httpx.AsyncClient(timeout=30) as client:
        answer = await client.put(ticket.url, content=body, headers=ticket.headers)
    assert answer.status_code == 200, answer.text
    return ticket.media.id


async def processed(media: Media, owner: uuid.UUID, media_id: uuid.UUID) -> MediaRecord:
    queued = await media.complete(owner, media_id)
    assert queued.status == "processing"

    async def done() -> MediaRecord | None:
        record = await media.get_own(owner, media_id)
        return record if record.status in ("ready", "failed") else None

    record: MediaRecord = await wait_until(done, timeout_s=90)
    return record


async def test_a_picture_goes_straight_to_the_bucket_and_is_served_from_it(
    media: Media, db: Database, on_s3: Settings, s3_server: S3Server
) -> None:
    (owner,) = await make_members(db, on_s3, 1)
    body = jpeg(800, 600)
    ticket = await media.create_upload(owner.uuid, "p.jpg", "image/jpeg", len(body))
    assert ticket.url.startswith(s3_server.endpoint)  # not through Nova
    assert ticket.headers == {"Content-Type": "image/jpeg", "Content-Length": str(len(body))}
    async with httpx.AsyncClient(timeout=30) as client:
        assert (await client.put(ticket.url, content=body, headers=ticket.headers)).is_success
    record = await processed(media, owner.uuid, ticket.media.id)
    assert record.status == "ready", record.error
    assert (record.width, record.height) == (800, 600)

    app = Starlette(routes=MediaRoutes(media).routes())
    files = media.files_url(record)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), timeout=30) as client:
        large = await client.get(f"{files}large.webp")
        ranged = await client.get(f"{files}large.jpeg", headers={"range": "bytes=0-99"})
        beyond = await client.get(f"{files}large.jpeg", headers={"range": "bytes=99999999-"})
    assert (large.status_code, large.headers["content-type"]) == (200, "image/webp")
    assert large.content[:4] == b"RIFF"
    assert (ranged.status_code, len(ranged.content)) == (206, 100)
    assert ranged.headers["content-range"].startswith("bytes 0-99/")
    assert beyond.status_code == 416


async def test_a_video_is_transcoded_from_and_into_the_bucket(
    media: Media, db: Database, on_s3: Settings, s3_server: S3Server
) -> None:
    (owner,) = await make_members(db, on_s3, 1)
    media_id = await uploaded(media, owner.uuid, mp4(1.0, 320, 240), "video/mp4")
    record = await processed(media, owner.uuid, media_id)
    assert record.status == "ready", record.error
    assert record.duration_ms is not None
    bucket = on_s3.media_store.removeprefix("s3://").split("/")[0]
    listed = s3_server.client().list_objects_v2(Bucket=bucket, Prefix=f"{media_id}/")
    stored = {item["Key"].rpartition("/")[2] for item in listed["Contents"]}
    assert {"hls.m3u8", "hls_240p.m3u8", "poster.jpeg", ORIGINAL} <= stored
    assert any(name.endswith(".ts") for name in stored)


@pytest.mark.parametrize(
    ("sent", "code"),
    [
        (lambda body: body[:-10], "BAD_USER_INPUT"),  # fewer bytes than declared
        (lambda body: b"%PDF-1.7" + body[8:], "UNSUPPORTED_MEDIA"),  # not a picture
    ],
)
async def test_a_direct_upload_that_is_not_what_was_declared_is_refused_at_completion(
    media: Media, db: Database, on_s3: Settings, sent: Any, code: str
) -> None:
    (owner,) = await make_members(db, on_s3, 1)
    body = jpeg(64, 48)
    ticket = await media.create_upload(owner.uuid, "p.jpg", "image/jpeg", len(body))
    wrong: bytes = sent(body)
    headers = {**ticket.headers, "Content-Length": str(len(wrong))}
    async with httpx.AsyncClient(timeout=30) as client:  # moto does not check signatures
        assert (await client.put(ticket.url, content=wrong, headers=headers)).is_success
    with pytest.raises(UploadRefused) as refused:
        await media.complete(owner.uuid, ticket.media.id)
    assert refused.value.code == code
    record = await media.get_own(owner.uuid, ticket.media.id)
    assert record.status == "failed"
    assert await media.store.size(media_key(ticket.media.id, ORIGINAL)) is None  # not kept
