"""The Ray tasks that process media, away from the gateway's replicas.

A task reads the original from the media store and writes what it makes back under names
that depend only on the media and the file (`large.webp`, `hls_480p_00001.ts`), so a task
run twice (Ray retries one whose worker died) leaves the same files. An upload that cannot
be processed is not an error to retry: the task returns the reason, and the media FAILS.

Images take one CPU. Videos take one CPU and one `transcode`, a resource each node
declares for as many transcodes as it lets run at once (`deployments.stack.ray_head`):
a burst of uploads then queues in Ray instead of starving the API of cores.
"""

from __future__ import annotations

import functools
import tempfile
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import ray

from actors.media import TRANSCODE
from actors.media.images import ImageRejected, process_image
from actors.media.video import VideoRejected, process_video
from storage.media_store import ORIGINAL, MediaStore, media_key, open_store

PLAYLIST = "application/vnd.apple.mpegurl"


@dataclass(frozen=True)
class StoreSpec:
    """Where the media store is, as a task opens it (`storage.media_store.open_store`)."""

    location: str
    access_key: str | None = None
    secret_key: str | None = None

    def open(self) -> MediaStore:
        """The store, one per worker process and spec (its clients are reused)."""
        return _opened(self)


@functools.cache
def _opened(spec: StoreSpec) -> MediaStore:
    return open_store(spec.location, access_key=spec.access_key, secret_key=spec.secret_key)


def make_image_variants(spec: StoreSpec, media_id: str, max_pixels: int) -> dict[str, Any]:
    """Variants and blurhash of one image: `{"width", "height", "blurhash", "variants"}`,
    or `{"error": reason}`."""
    store = spec.open()
    key = uuid.UUID(media_id)
    try:
        processed = process_image(store.read(media_key(key, ORIGINAL)), max_pixels=max_pixels)
    except ImageRejected as rejected:
        return {"error": rejected.reason}
    variants = []
    for variant in processed.variants:
        file = f"{variant.name}.{variant.format}"
        store.write(media_key(key, file), variant.data)
        variants.append(
            {
                "name": variant.name,
                "file": file,
                "content_type": variant.content_type,
                "width": variant.width,
                "height": variant.height,
            }
        )
    return {
        "width": processed.width,
        "height": processed.height,
        "blurhash": processed.blurhash,
        "variants": variants,
    }


def make_video_renditions(
    spec: StoreSpec, media_id: str, max_duration_s: float, threads: int, timeout_s: float
) -> dict[str, Any]:
    """HLS renditions, poster and duration of one video, made in a temporary directory
    and stored: `{"width", "height", "duration_ms", "blurhash", "variants"}` (the master
    playlist `hls`, one per rendition, and the `poster` frames), or `{"error": reason}`."""
    store = spec.open()
    key = uuid.UUID(media_id)
    with tempfile.TemporaryDirectory(prefix="nova-video-") as work:
        source = Path(work) / "source"
        store.download_to(media_key(key, ORIGINAL), source)
        out = Path(work) / "out"
        out.mkdir()
        try:
            video = process_video(
                source, out, max_duration_s=max_duration_s, threads=threads, timeout_s=timeout_s
            )
        except VideoRejected as rejected:
            return {"error": rejected.reason}
        for file in video.files:
            store.upload_from(file.path, media_key(key, file.name), file.content_type)
    largest = max(video.renditions, key=lambda r: r.height)
    variants: list[dict[str, Any]] = [
        {
            "name": "hls",
            "file": "hls.m3u8",
            "content_type": PLAYLIST,
            "width": largest.width,
            "height": largest.height,
        },
        *(
            {
                "name": rendition.name,
                "file": f"hls_{rendition.name}.m3u8",
                "content_type": PLAYLIST,
                "width": rendition.width,
                "height": rendition.height,
            }
            for rendition in video.renditions
        ),
        *(
            {
                "name": "poster",
                "file": file.name,
                "content_type": file.content_type,
                "width": video.poster_width,
                "height": video.poster_height,
            }
            for file in video.files
            if file.name.startswith("poster.")
        ),
    ]
    return {
        "width": video.width,
        "height": video.height,
        "duration_ms": video.duration_ms,
        "blurhash": video.blurhash,
        "variants": variants,
    }


# Ray retries a task whose worker (or node) died, twice, before the processor sees the
# failure. One CPU each: Ray runs no more at once than the cluster has cores for.
image_task = ray.remote(num_cpus=1, max_retries=2)(make_image_variants)
video_task = ray.remote(num_cpus=1, resources={TRANSCODE: 1}, max_retries=2)(make_video_renditions)
