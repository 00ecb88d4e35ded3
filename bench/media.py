"""Media benchmark: picture processing on Ray against the same code in one process, an
upload to READY through the API, a video to HLS against ffmpeg run directly, and what
processing costs the API meanwhile.

    cd /work/main && .venv/bin/python -m bench.media [--images 24 --uploads 20 --videos 3]

Needs the dev stack started with `bench/bench.env` (see docs/benchmarks.md). All pictures
are 2-megapixel JPEGs made here (1632 by 1224, a gradient with noise, as a photo
compresses).

- **Variants per second**: `--images` pictures through the media task as Ray tasks (one
  CPU each, as the processor runs them), against `actors.media.images.process_image` called
  one after another in this process on the same pictures (the floor without Ray).
- **Upload → READY**: createUpload, the PUT, completeUpload, then `mediaUpdated` on a bare
  graphql-transport-ws socket until READY; p50/p99 over `--uploads`.
- **Video → HLS**: a 10-second 1280x720 clip (ffmpeg's testsrc with a tone, H.264 and AAC
  as a phone records) uploaded `--videos` times; completeUpload → READY (the transcode
  task, queued for its `transcode` slot, with its store reads and writes) against the
  very command the task runs (`actors.media.video.ffmpeg_command`, same threads) run
  directly on the same clip, one after another.
- **Isolation**: `me` latency while a burst of image tasks runs, and while a video
  transcodes, against idle, in the same run.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import os
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import websockets
from PIL import Image

from bench.goals import Goal
from bench.harness import graphql, ratio, run_on_ray, summarize

SCENARIO = "media"
ME = "{ me { id } }"
CREATE = """
mutation($input: CreateUploadInput!) {
  createUpload(input: $input) { id url headers { name value } }
}
"""
COMPLETE = "mutation($id: ID!) { completeUpload(id: $id) { status } }"
UPDATED = "subscription($id: ID!) { mediaUpdated(id: $id) { status } }"
REGISTER = "mutation($input: RegisterInput!) { register(input: $input) { accessToken } }"


class Args:
    images = 24
    uploads = 20
    videos = 3


def clip(work: Path) -> Path:
    """A 10-second 720p clip, as a phone would upload it."""
    out = work / "clip.mp4"
    subprocess.run(
        ["ffmpeg", "-nostdin", "-loglevel", "error", "-y",
         "-f", "lavfi", "-i", "testsrc=size=1280x720:rate=30:duration=10",
         "-f", "lavfi", "-i", "sine=frequency=440:duration=10",
         "-c:v", "libx264", "-preset", "veryfast", "-crf", "20", "-pix_fmt", "yuv420p",
         "-c:a", "aac", "-movflags", "+faststart", str(out)],
        check=True,
        timeout=300,
    )  # fmt: skip
    return out


def ffmpeg_directly(source: Path, work: Path, threads: int) -> float:
    """Milliseconds for the transcode task's own ffmpeg command, run here."""
    from actors.media.video import ffmpeg_command, plan_renditions, probe

    found = probe(source)
    command = ffmpeg_command(
        source, work, found, plan_renditions(found.width, found.height), threads=threads
    )
    started = time.perf_counter()
    subprocess.run(command, check=True, timeout=900)
    return (time.perf_counter() - started) * 1000


def photo(seed: int) -> bytes:
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:1224, 0:1632]
    base = np.stack([x * 255 // 1632, y * 255 // 1224, (x + y) * 255 // 2856], axis=-1)
    noisy = np.clip(base + rng.normal(0, 12, base.shape), 0, 255).astype(np.uint8)
    out = io.BytesIO()
    Image.fromarray(noisy, "RGB").save(out, "JPEG", quality=88)
    return out.getvalue()


def in_process(pictures: list[bytes]) -> float:
    from actors.media.images import process_image

    started = time.perf_counter()
    for data in pictures:
        process_image(data, max_pixels=50_000_000)
    return len(pictures) / (time.perf_counter() - started)


async def on_ray(pictures: list[bytes], store_root: str) -> float:
    from actors.media.tasks import StoreSpec, image_task
    from storage.media_store import ORIGINAL, DirectoryStore, media_key

    store = DirectoryStore(store_root)
    ids = [uuid.uuid4() for _ in pictures]
    for media_id, data in zip(ids, pictures, strict=True):
        store.write(media_key(media_id, ORIGINAL), data)
    started = time.perf_counter()
    results = await asyncio.gather(
        *[image_task.remote(StoreSpec(store_root), str(media_id), 50_000_000) for media_id in ids]
    )
    elapsed = time.perf_counter() - started
    assert all("error" not in result for result in results), results
    for media_id in ids:
        await store.delete_media(media_id)
    return len(pictures) / elapsed


async def upload_to_ready(
    http: httpx.AsyncClient, base: str, token: str, data: bytes, content_type: str = "image/jpeg"
) -> tuple[float, float]:
    """Milliseconds from createUpload to READY, and from completeUpload to READY."""
    started = time.perf_counter()
    upload = (
        await graphql(
            http,
            "",
            token,
            CREATE,
            {"input": {"filename": "upload", "contentType": content_type, "size": len(data)}},
        )
    )["createUpload"]
    url = httpx.URL(upload["url"])
    headers = {h["name"]: h["value"] for h in upload["headers"]}
    put = await http.put(url.raw_path.decode(), content=data, headers=headers)
    assert put.status_code == 204, put.text
    ws_url = base.replace("http", "ws", 1) + "/graphql"
    async with websockets.connect(ws_url, subprotocols=["graphql-transport-ws"]) as ws:  # type: ignore[list-item]
        await ws.send(
            json.dumps({"type": "connection_init", "payload": {"authorization": f"Bearer {token}"}})
        )
        await asyncio.wait_for(ws.recv(), 30)
        completed = time.perf_counter()
        await graphql(http, "", token, COMPLETE, {"id": upload["id"]})
        await ws.send(
            json.dumps(
                {
                    "id": "1",
                    "type": "subscribe",
                    "payload": {"query": UPDATED, "variables": {"id": upload["id"]}},
                }
            )
        )
        async for raw in ws:
            message = json.loads(raw)
            if message.get("type") == "next":
                status = message["payload"]["data"]["mediaUpdated"]["status"]
                if status in ("READY", "FAILED"):
                    assert status == "READY", message
                    now = time.perf_counter()
                    return (now - started) * 1000, (now - completed) * 1000
    raise RuntimeError("the subscription ended before READY")


ME_PER_S = 40  # under the per-user query budget (50/s)


async def me_latency(http: httpx.AsyncClient, token: str, count: int) -> list[float]:
    """`count` calls of `me`, one every 1/ME_PER_S s: latency, not throughput."""
    latencies = []
    for _ in range(count):
        started = time.perf_counter()
        await graphql(http, "", token, ME)
        elapsed = time.perf_counter() - started
        latencies.append(elapsed * 1000)
        await asyncio.sleep(max(0.0, 1 / ME_PER_S - elapsed))
    return latencies


def media_goals(
    hls: dict[str, Any],
    direct: dict[str, Any],
    rates: tuple[float, float],
    idle: dict[str, Any],
    busy: dict[str, Any],
    transcoding: dict[str, Any],
) -> list[Goal]:
    """A clip to HLS over the task's own ffmpeg command run directly (p50, at most 1.3
    times); picture tasks on Ray over the same function in one process; `me` while pictures
    process and while a clip transcodes, over idle."""
    ray_rate, local_rate = rates
    return [
        Goal(
            "10 s 720p clip, completeUpload to HLS READY p50",
            hls["p50"],
            direct["p50"],
            "ms",
            "the task's ffmpeg command run directly, p50",
            at_most=1.3,
        ),
        Goal(
            "pictures processed on Ray tasks, throughput",
            ray_rate,
            local_rate,
            "pictures/s",
            "the same function in one process, one after another",
        ),
        Goal(
            f"`me` p50 while {Args.images} pictures process",
            busy["p50"],
            idle["p50"],
            "ms",
            "`me` idle, p50",
        ),
        Goal(
            "`me` p99 while a clip transcodes",
            transcoding["p99"],
            idle["p99"],
            "ms",
            "`me` idle, p99",
        ),
    ]


async def run(base: str) -> dict[str, Any]:
    pictures = [photo(seed) for seed in range(Args.images)]
    store_root = os.environ["NOVA_MEDIA_STORE"]
    local_rate = in_process(pictures)
    ray_rate = await on_ray(pictures, store_root)
    async with httpx.AsyncClient(base_url=base, timeout=60) as http:
        name = f"bench_media_{uuid.uuid4().hex[:8]}"
        token = (
            await graphql(
                http,
                "",
                None,
                REGISTER,
                {
                    "input": {
                        "email": f"{name}@example.com",
                        "username": name,
                        "password": "correct horse battery",
                    }
                },
            )
        )["register"]["accessToken"]
        ready_ms = [
            (await upload_to_ready(http, base, token, pictures[n % len(pictures)]))[0]
            for n in range(Args.uploads)
        ]
        idle = await me_latency(http, token, 120)
        burst = asyncio.ensure_future(on_ray(pictures, store_root))
        busy = await me_latency(http, token, 120)
        await burst
        with tempfile.TemporaryDirectory() as work:
            source = clip(Path(work))
            video = source.read_bytes()
            threads = int(os.environ.get("NOVA_MEDIA_TRANSCODE_THREADS", "1"))
            direct_ms = []
            for n in range(Args.videos):
                out = Path(work) / f"direct-{n}"
                out.mkdir()
                direct_ms.append(ffmpeg_directly(source, out, threads))
        hls_ms = [
            await upload_to_ready(http, base, token, video, "video/mp4") for _ in range(Args.videos)
        ]
        transcode = asyncio.ensure_future(upload_to_ready(http, base, token, video, "video/mp4"))
        await asyncio.sleep(1.0)  # past the upload, into the transcode
        transcoding = await me_latency(http, token, 120)
        await transcode
    idle_s, busy_s = summarize(idle), summarize(busy)
    direct_s = summarize(direct_ms)
    processing_s = summarize([processing for _, processing in hls_ms])
    transcoding_s = summarize(transcoding)
    return {
        "images": Args.images,
        "variants_per_image": 6,
        "in_process_images_per_s": round(local_rate, 2),
        "ray_tasks_images_per_s": round(ray_rate, 2),
        "upload_to_ready_ms": summarize(ready_ms),
        "me_idle_ms": idle_s,
        "me_while_processing_ms": busy_s,
        "video": {
            "clip": "10 s, 1280x720, 30 fps, H.264 + AAC",
            "size_bytes": len(video),
            "transcode_threads": threads,
            "ffmpeg_directly_ms": direct_s,
            "complete_to_ready_ms": processing_s,
            "upload_to_ready_ms": summarize([total for total, _ in hls_ms]),
        },
        "me_while_transcoding_ms": transcoding_s,
        "ratios": {
            "hls_ready_over_ffmpeg_directly_p50": ratio(processing_s["p50"], direct_s["p50"]),
            "me_p50_transcoding_over_idle": ratio(transcoding_s["p50"], idle_s["p50"]),
            "me_p99_transcoding_over_idle": ratio(transcoding_s["p99"], idle_s["p99"]),
            "ray_over_in_process_throughput": ratio(ray_rate, local_rate),
            "me_p50_processing_over_idle": ratio(busy_s["p50"], idle_s["p50"]),
            "me_p99_processing_over_idle": ratio(busy_s["p99"], idle_s["p99"]),
        },
        "goals": [
            g.to_dict()
            for g in media_goals(
                processing_s, direct_s, (ray_rate, local_rate), idle_s, busy_s, transcoding_s
            )
        ],
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=Args.images)
    parser.add_argument("--uploads", type=int, default=Args.uploads)
    parser.add_argument("--videos", type=int, default=Args.videos)
    parsed = parser.parse_args()
    Args.images, Args.uploads, Args.videos = parsed.images, parsed.uploads, parsed.videos
    return run_on_ray(SCENARIO, run)


if __name__ == "__main__":
    sys.exit(main())
