"""The Ray tasks that process media, away from the gateway's replicas.

A task reads the original from the media store and writes its variants back under
names that depend only on the media and the variant (`large.webp`), so a task run twice
(Ray retries one whose worker died) leaves the same files. A picture that cannot be
processed is not an error to retry: the task returns the reason, and the media FAILS.
"""

from __future__ import annotations

import uuid
from typing import Any

import ray

from actors.media.images import ImageRejected, process_image
from storage.media_store import ORIGINAL, DirectoryStore, media_key


def make_image_variants(store_root: str, media_id: str, max_pixels: int) -> dict[str, Any]:
    """Variants and blurhash of one image: `{"width", "height", "blurhash", "variants"}`,
    or `{"error": reason}`."""
    store = DirectoryStore(store_root)
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


# One CPU each: Ray runs no more at once than the cluster has cores for, and retries a
# task whose worker (or node) died, twice, before the processor sees the failure.
image_task = ray.remote(num_cpus=1, max_retries=2)(make_image_variants)
