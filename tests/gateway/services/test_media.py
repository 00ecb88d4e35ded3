"""Uploads end to end: a signed URL, the PUT, completeUpload, processing by Ray tasks into
variants, `mediaUpdated`; and every bad upload refused with a code, keeping nothing."""

from __future__ import annotations

import asyncio
import io
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
from PIL import Image

from deployments.settings import Settings
from gateway.services.media import Media
from storage.db import Database
from storage.media_store import DirectoryStore
from storage.redis_client import make_redis
from tests.support.media import (
    COMPLETE,
    CREATE,
    MEDIA,
    create_upload,
    jpeg,
    png_claiming,
    processed,
    put,
    until_done,
)
from tests.support.social import call, make_members

pytestmark = pytest.mark.stack


def stored(settings: Settings, media_id: str) -> list[str]:
    folder = Path(settings.media_store) / media_id
    return sorted(p.name for p in folder.iterdir()) if folder.exists() else []


async def test_a_photo_is_processed_into_variants_without_its_metadata(
    http_url: str, db: Database, deployed: Settings
) -> None:
    (owner,) = await make_members(db, deployed, 1)
    body = jpeg(1600, 1200, orientation=6)  # taken sideways: shown 1200 wide, 1600 high
    upload = await create_upload(http_url, owner, body)
    assert upload["url"].startswith(f"{deployed.public_url}/media/uploads/{upload['id']}?")
    assert (await put(upload, body)).status_code == 204
    queued = (await call(http_url, owner, COMPLETE, id=upload["id"])).ok()["completeUpload"]
    assert queued["status"] in ("PROCESSING", "READY")

    media = await asyncio.wait_for(until_done(http_url, owner, upload["id"]), 60)
    assert media["status"] == "READY", media
    assert (media["width"], media["height"]) == (1200, 1600)
    assert media["blurhash"]
    sizes = {(v["name"], v["contentType"]): (v["width"], v["height"]) for v in media["variants"]}
    assert sizes[("thumb", "image/webp")] == (150, 150)
    assert sizes[("small", "image/jpeg")] == (360, 480)
    assert sizes[("large", "image/webp")] == (810, 1080)
    assert media["url"].endswith("/large.webp")
    # Not attached to a post yet: private, so its URLs are signed.
    assert media["url"].startswith(f"{deployed.public_url}/media/signed/")

    async with httpx.AsyncClient(timeout=30) as client:
        large = await client.get(media["url"])
        ranged = await client.get(media["url"], headers={"range": "bytes=0-9"})
        original = await client.get(media["url"].replace("large.webp", "original"))
    assert large.status_code == 200
    assert large.headers["content-type"] == "image/webp"
    assert large.headers["cache-control"].startswith("private, max-age=")
    assert (ranged.status_code, len(ranged.content)) == (206, 10)
    assert original.status_code == 404
    shown = Image.open(io.BytesIO(large.content))
    assert shown.size == (810, 1080)
    assert not shown.getexif()
    # Stored sideways with its blue mark top-left; turned upright, the mark is top-right.
    rgb = shown.convert("RGB")
    assert rgb.getpixel((800, 5)) == pytest.approx((40, 40, 200), abs=30)
    assert rgb.getpixel((5, 5)) == pytest.approx((200, 40, 40), abs=30)
    again = (await call(http_url, owner, COMPLETE, id=upload["id"])).ok()["completeUpload"]
    assert again["status"] == "READY"  # completing twice answers the same


async def test_a_decompression_bomb_fails_with_its_reason(
    http_url: str, db: Database, deployed: Settings
) -> None:
    (owner,) = await make_members(db, deployed, 1)
    media = await processed(http_url, owner, png_claiming(20_000, 20_000), "image/png")
    assert media["status"] == "FAILED"
    assert "pixels" in media["error"]
    assert media["variants"] == []


@pytest.mark.parametrize(
    ("content_type", "size", "why"),
    [
        ("application/pdf", 100, "not accepted"),
        ("image/svg+xml", 100, "not accepted"),
        ("image/jpeg", 0, "size"),
        ("image/jpeg", 21 * 1024 * 1024, "size"),
    ],
)
async def test_an_upload_of_the_wrong_kind_or_size_is_refused_up_front(
    http_url: str, db: Database, deployed: Settings, content_type: str, size: int, why: str
) -> None:
    (owner,) = await make_members(db, deployed, 1)
    reply = await call(
        http_url,
        owner,
        CREATE,
        input={"filename": "x", "contentType": content_type, "size": size},
    )
    assert reply.codes == ["BAD_USER_INPUT"]
    assert why in reply.errors[0]["message"]


async def test_bad_bytes_and_bad_urls_are_refused_and_nothing_is_kept(
    http_url: str, db: Database, deployed: Settings
) -> None:
    owner, other = await make_members(db, deployed, 2)
    photo = jpeg(64, 48)

    # A tampered signature is refused, and does not use the URL up.
    upload = await create_upload(http_url, owner, photo)
    tampered = upload["url"][:-4] + ("0000" if not upload["url"].endswith("0000") else "1111")
    refused = await put(upload, photo, tampered)
    assert (refused.status_code, refused.json()["errors"][0]["extensions"]["code"]) == (
        403,
        "FORBIDDEN",
    )
    assert (await put(upload, photo)).status_code == 204
    # Used once: never again.
    reused = await put(upload, photo)
    assert (reused.status_code, reused.json()["errors"][0]["extensions"]["code"]) == (
        409,
        "CONFLICT",
    )
    # Someone else's media is not there for them.
    assert (await call(http_url, other, COMPLETE, id=upload["id"])).codes == ["NOT_FOUND"]
    assert (await call(http_url, other, MEDIA, id=upload["id"])).codes == ["NOT_FOUND"]

    cases = [
        (b"%PDF-1.7 " + bytes(200), "image/jpeg", 415, "UNSUPPORTED_MEDIA"),  # not an image
        (photo[: len(photo) // 2], None, 400, "BAD_USER_INPUT"),  # truncated
        (photo + bytes(100), None, 413, "TOO_LARGE"),  # more than declared
    ]
    for body, declared_type, status, code in cases:
        declared = body if declared_type else photo
        upload = await create_upload(http_url, owner, declared, declared_type or "image/jpeg")
        answer = await put(upload, body)
        assert (answer.status_code, answer.json()["errors"][0]["extensions"]["code"]) == (
            status,
            code,
        ), body[:20]
        assert stored(deployed, upload["id"]) == []
        completed = await call(http_url, owner, COMPLETE, id=upload["id"])
        assert completed.codes == ["BAD_USER_INPUT"]
        assert (await put(upload, declared)).status_code == 409  # the URL is spent


async def test_an_expired_upload_url_is_refused(db: Database, deployed: Settings) -> None:
    (owner,) = await make_members(db, deployed, 1)
    redis = make_redis(deployed)
    media = Media(db, DirectoryStore(deployed.media_store), redis, deployed)
    try:
        ticket = await media.create_upload(owner.uuid, "late.jpg", "image/jpeg", 10)
        late = media.upload_url(ticket.media.id, datetime.now(UTC) - timedelta(seconds=1))
        async with httpx.AsyncClient(timeout=30) as client:
            answer = await client.put(late, content=bytes(10))
    finally:
        await redis.aclose()
    assert (answer.status_code, answer.json()["errors"][0]["extensions"]["code"]) == (
        410,
        "UPLOAD_EXPIRED",
    )
