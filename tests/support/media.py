"""Uploading media as a client does: pictures made with Pillow and clips with ffmpeg's
`testsrc` (nothing downloaded), the signed URL, the PUT, completeUpload, and
`mediaUpdated` until processing ends."""

from __future__ import annotations

import asyncio
import io
import struct
import subprocess
import tempfile
import zlib
from pathlib import Path
from typing import Any

import httpx
from PIL import Image

from actors.media.processor import MediaProcessor
from deployments.settings import Settings
from storage.db import Database
from storage.redis_client import make_redis
from tests.support.chat import operation, subscribed
from tests.support.social import Member, call

CREATE = """
mutation($input: CreateUploadInput!) {
  createUpload(input: $input) { id url headers { name value } expiresAt }
}
"""
COMPLETE = "mutation($id: ID!) { completeUpload(id: $id) { id status } }"
FIELDS = (
    "id kind status width height blurhash error url durationMs posterUrl "
    "variants { name url width height contentType }"
)
MEDIA = f"query($id: ID!) {{ media(id: $id) {{ {FIELDS} }} }}"
UPDATED = f"subscription($id: ID!) {{ mediaUpdated(id: $id) {{ {FIELDS} }} }}"
ORIENTATION = 0x0112
GPS_IFD = 0x8825


def jpeg(width: int, height: int, *, orientation: int | None = None) -> bytes:
    """A photo as a phone takes it: EXIF with an orientation and a location."""
    image = Image.new("RGB", (width, height), (200, 40, 40))
    image.paste((40, 40, 200), (0, 0, width // 2, height // 4))  # marks the top-left
    exif = Image.Exif()
    exif[0x010F] = "NovaCam"  # Make
    if orientation is not None:
        exif[ORIENTATION] = orientation
    exif[GPS_IFD] = {1: "N", 2: (48.0, 51.0, 24.0)}
    out = io.BytesIO()
    image.save(out, "JPEG", exif=exif.tobytes(), quality=90)
    return out.getvalue()


def png_claiming(width: int, height: int) -> bytes:
    """A tiny PNG whose header claims `width` by `height`: a decompression bomb's disguise."""
    out = io.BytesIO()
    Image.new("RGB", (4, 4)).save(out, "PNG")
    data = bytearray(out.getvalue())
    ihdr = 8 + 8  # signature, then the IHDR chunk's length and type
    data[ihdr : ihdr + 8] = struct.pack(">II", width, height)
    crc = zlib.crc32(bytes(data[12 : ihdr + 13]))
    data[ihdr + 13 : ihdr + 17] = struct.pack(">I", crc)
    return bytes(data)


def mp4(seconds: float = 2.0, width: int = 640, height: int = 360, *, audio: bool = True) -> bytes:
    """A clip of ffmpeg's test pattern (with a tone), as a phone would upload it."""
    with tempfile.TemporaryDirectory() as work:
        out = Path(work) / "clip.mp4"
        inputs = ["-f", "lavfi", "-i", f"testsrc=size={width}x{height}:rate=25:duration={seconds}"]
        if audio:
            inputs += ["-f", "lavfi", "-i", f"sine=frequency=440:duration={seconds}"]
        subprocess.run(
            ["ffmpeg", "-nostdin", "-loglevel", "error", "-y", *inputs, "-c:v", "libx264",
             "-preset", "ultrafast", "-pix_fmt", "yuv420p", "-c:a", "aac",
             "-movflags", "+faststart", str(out)],
            check=True,
            timeout=60,
        )  # fmt: skip
        return out.read_bytes()


async def create_upload(
    http_url: str, member: Member, body: bytes, content_type: str = "image/jpeg"
) -> dict[str, Any]:
    reply = await call(
        http_url,
        member,
        CREATE,
        input={"filename": "photo.jpg", "contentType": content_type, "size": len(body)},
    )
    upload: dict[str, Any] = reply.ok()["createUpload"]
    return upload


async def put(upload: dict[str, Any], body: bytes, url: str | None = None) -> httpx.Response:
    headers = {h["name"]: h["value"] for h in upload["headers"]}
    async with httpx.AsyncClient(timeout=30) as client:
        return await client.put(url or upload["url"], content=body, headers=headers)


async def until_done(http_url: str, member: Member, media_id: str) -> dict[str, Any]:
    """`mediaUpdated` until processing ends: its last answer."""
    async with subscribed(http_url, member) as session:
        last: dict[str, Any] = {}
        async for result in session.subscribe(operation(UPDATED, id=media_id)):
            last = result["mediaUpdated"]
        return last


async def completed(
    http_url: str, member: Member, body: bytes, content_type: str = "image/jpeg"
) -> str:
    """`body` uploaded and completed (queued for processing): the media's id."""
    upload = await create_upload(http_url, member, body, content_type)
    answer = await put(upload, body)
    assert answer.status_code == 204, answer.text
    assert (await call(http_url, member, COMPLETE, id=upload["id"])).ok()
    media_id: str = upload["id"]
    return media_id


async def processed(
    http_url: str, member: Member, body: bytes, content_type: str = "image/jpeg"
) -> dict[str, Any]:
    """`body` uploaded, completed and processed: the media as `mediaUpdated` ends it."""
    media_id = await completed(http_url, member, body, content_type)
    return await asyncio.wait_for(until_done(http_url, member, media_id), 60)


async def uploaded_image(
    http_url: str, member: Member, width: int = 64, height: int = 48, *, ready: bool = True
) -> str:
    """A picture of the member's, uploaded and completed (and READY, if `ready`): its id."""
    if not ready:
        return await completed(http_url, member, jpeg(width, height))
    media = await processed(http_url, member, jpeg(width, height))
    assert media["status"] == "READY", media
    media_id: str = media["id"]
    return media_id


async def sweep(db: Database, settings: Settings) -> None:
    """One sweep by a processor of the test's own (the deployed one sweeps every 10 min)."""
    redis = make_redis(settings)
    try:
        await MediaProcessor(db, redis, settings).sweep()
    finally:
        await redis.aclose()
