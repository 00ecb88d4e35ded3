"""Videos end to end: an uploaded clip transcoded by a Ray task into HLS renditions with a
poster and its duration, played through its playlists (relative names resolve under the
signed path), attached to a post, a message or a story; and damaged or mislabelled uploads
refused with a code."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import uuid

import httpx
import pytest

from deployments.settings import Settings
from storage.db import Database
from tests.conftest import wait_until
from tests.support.chat import room_of
from tests.support.media import (
    completed,
    create_upload,
    jpeg,
    mp4,
    processed,
    put,
    until_done,
    uploaded_image,
)
from tests.support.social import FOLLOW, call, make_members

pytestmark = pytest.mark.stack

CREATE_POST = """
mutation($media: [ID!]) { createPost(input: {text: "clip", mediaIds: $media}) {
  id media { id kind url posterUrl } } }
"""
SEND = """
mutation($room: ID!, $media: [ID!]) {
  sendMessage(input: {roomId: $room, text: "", clientMessageId: "v1", mediaIds: $media}) {
    media { id kind url } }
}
"""
STORY = """
mutation($media: ID!) { createStory(input: {mediaId: $media}) { id media { kind url } } }
"""


async def test_a_clip_becomes_hls_renditions_with_a_poster_that_play_through_signed_urls(
    http_url: str, db: Database, deployed: Settings
) -> None:
    (owner,) = await make_members(db, deployed, 1)
    media = await processed(http_url, owner, mp4(2.0, 854, 480), "video/mp4")
    assert media["status"] == "READY", media
    assert media["kind"] == "VIDEO"
    assert (media["width"], media["height"]) == (854, 480)
    assert abs(media["durationMs"] - 2000) <= 100
    assert media["blurhash"]
    names = {v["name"]: v for v in media["variants"]}
    assert set(names) == {"hls", "240p", "480p"}  # no 720p: never upscaled
    assert names["240p"]["height"] == 240
    assert abs(names["240p"]["width"] - 427) <= 1  # 16:9, even
    assert media["url"] == names["hls"]["url"]
    assert media["url"].endswith("/hls.m3u8")
    assert media["url"].startswith(f"{deployed.public_url}/media/signed/")

    async with httpx.AsyncClient(timeout=30) as client:
        master = await client.get(media["url"])
        assert master.status_code == 200
        assert master.headers["content-type"] == "application/vnd.apple.mpegurl"
        assert "RESOLUTION=854x480" in master.text
        rendition = str(httpx.URL(media["url"]).join("hls_240p.m3u8"))  # as a player does
        playlist = await client.get(rendition)
        assert playlist.status_code == 200
        segment_name = re.findall(r"^(hls_240p_\d+\.ts)$", playlist.text, re.M)[0]
        segment_url = str(httpx.URL(rendition).join(segment_name))
        segment = await client.get(segment_url)
        ranged = await client.get(segment_url, headers={"range": "bytes=0-187"})
        poster = await client.get(media["posterUrl"])
        original = await client.get(str(httpx.URL(media["url"]).join("original")))
    assert (segment.status_code, segment.headers["content-type"]) == (200, "video/mp2t")
    assert segment.content[0] == 0x47  # an MPEG-TS sync byte
    assert (ranged.status_code, len(ranged.content)) == (206, 188)
    assert (poster.status_code, poster.headers["content-type"]) == (200, "image/jpeg")
    assert original.status_code == 404


async def test_a_video_goes_in_a_post_a_message_or_a_story_alone(
    http_url: str, db: Database, deployed: Settings
) -> None:
    owner, friend = await make_members(db, deployed, 2)
    assert (await call(http_url, friend, FOLLOW, id=owner.id)).ok()
    clips = [
        (await processed(http_url, owner, mp4(1.0, 320, 240, audio=False), "video/mp4"))["id"]
        for _ in range(3)
    ]
    picture = await uploaded_image(http_url, owner)
    mixed = await call(http_url, owner, CREATE_POST, media=[clips[0], picture])
    assert mixed.codes == ["BAD_USER_INPUT"]
    two = await call(http_url, owner, CREATE_POST, media=[clips[0], clips[1]])
    assert two.codes == ["BAD_USER_INPUT"]

    post = (await call(http_url, owner, CREATE_POST, media=[clips[0]])).ok()["createPost"]
    (shown,) = post["media"]
    assert shown["kind"] == "VIDEO"
    assert shown["url"] == f"{deployed.public_url}/media/{clips[0]}/hls.m3u8"  # a post's: public
    assert shown["posterUrl"].endswith("/poster.jpeg")

    room = await room_of(http_url, owner, friend)
    sent = (await call(http_url, owner, SEND, room=room, media=[clips[1]])).ok()
    assert sent["sendMessage"]["media"][0]["url"].startswith(f"{deployed.public_url}/media/signed/")
    story = (await call(http_url, owner, STORY, media=clips[2])).ok()["createStory"]
    assert story["media"]["kind"] == "VIDEO"


async def test_a_damaged_or_mislabelled_video_is_refused_with_its_reason(
    http_url: str, db: Database, deployed: Settings
) -> None:
    (owner,) = await make_members(db, deployed, 1)
    picture = jpeg(64, 48)
    upload = await create_upload(http_url, owner, picture, "video/mp4")
    refused = await put(upload, picture)
    assert (refused.status_code, refused.json()["errors"][0]["extensions"]["code"]) == (
        415,
        "UNSUPPORTED_MEDIA",
    )

    clip = bytearray(mp4(2.0, 320, 240))
    clip[len(clip) // 2 :] = bytes(len(clip) - len(clip) // 2)  # the second half zeroed
    media = await processed(http_url, owner, bytes(clip), "video/mp4")
    assert media["status"] == "FAILED", media
    assert media["error"]
    assert (media["variants"], media["url"]) == ([], None)

    too_big = await call(
        http_url,
        owner,
        "mutation($i: CreateUploadInput!) { createUpload(input: $i) { id } }",
        i={"filename": "x.mp4", "contentType": "video/mp4", "size": 300 * 1024 * 1024},
    )
    assert too_big.codes == ["BAD_USER_INPUT"]


async def test_a_transcode_whose_worker_dies_is_run_again_and_ends_ready(
    http_url: str, db: Database, deployed: Settings
) -> None:
    from ray.util.state import list_tasks

    (owner,) = await make_members(db, deployed, 1)
    media_id = await completed(http_url, owner, mp4(20.0, 1280, 720), "video/mp4")

    async def transcoding_worker() -> int | None:
        running = await asyncio.to_thread(
            list_tasks,
            filters=[
                ("func_or_class_name", "=", "make_video_renditions"),
                ("state", "=", "RUNNING"),
            ],
        )
        return running[0].worker_pid if running and running[0].worker_pid else None

    pid = await wait_until(transcoding_worker, timeout_s=60, message="a running transcode")
    os.kill(pid, signal.SIGKILL)  # the worker is lost mid-transcode
    media = await asyncio.wait_for(until_done(http_url, owner, media_id), 180)
    assert media["status"] == "READY", media  # Ray ran the task again, which wrote it whole
    async with db.connection() as conn:
        attempts = await conn.fetchval(
            "SELECT attempts FROM media WHERE id = $1", uuid.UUID(media_id)
        )
    assert attempts == 1  # retried within Ray: the job's claim held throughout
