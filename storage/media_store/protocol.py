"""What every media store offers: the gateway's async side and the media tasks' sync side.

The gateway runs on an event loop and must never wait on a disk or a socket there, so its
methods are coroutines. Media tasks are plain functions in Ray workers with no loop, so
theirs are blocking calls; video tasks work on local temporary files, hence
`download_to` and `upload_from`. Errors are Nova's (`storage.errors`): `NotFound` for a
missing key where a value is required, `Unavailable` for a store that cannot be reached
or did not answer in time, `ConfigError` for a missing bucket or refused credentials.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Protocol


class ByteChunks(Protocol):
    """A download's bytes, chunk by chunk: an async iterator that can be closed before its
    end (a client gone, a HEAD request) to give back the file or connection it holds."""

    def __aiter__(self) -> ByteChunks: ...

    async def __anext__(self) -> bytes: ...

    async def aclose(self) -> None: ...


class MediaStore(Protocol):
    """Uploads and their variants, by media key (`storage.media_store.media_key`)."""

    # -- the gateway (async) ----------------------------------------------------------

    async def write_stream(self, key: str, chunks: AsyncIterator[bytes], *, max_bytes: int) -> int:
        """Store what `chunks` yields under `key` and return how many bytes that was.
        Past `max_bytes` it raises `TooLarge`; then, or if `chunks` raises, nothing of
        this write is kept (a previous object under `key` stays as it was)."""
        ...

    async def head(self, key: str, size: int) -> bytes:
        """The first `size` bytes of `key`: fewer if it is shorter, none if it is missing
        (nothing is no known type to whoever sniffs them)."""
        ...

    async def size(self, key: str) -> int | None:
        """The size of `key` in bytes, or None if it is missing."""
        ...

    async def open_read(
        self, key: str, start: int | None = None, end: int | None = None
    ) -> tuple[ByteChunks, int] | None:
        """The bytes `start`..`end` of `key` (inclusive, as in HTTP; see
        `storage.media_store.resolve_range`), streamed in chunks, and the object's total
        size; None if `key` is missing. Iterate the chunks to the end or `aclose()` them:
        until then they hold a file or a connection."""
        ...

    async def delete_media(self, media_id: uuid.UUID) -> None:
        """Everything stored for one media (every key under `<media id>/`)."""
        ...

    async def presigned_put(
        self, key: str, content_type: str, size: int, expires_s: int
    ) -> tuple[str, dict[str, str]] | None:
        """A URL a client can PUT exactly `size` bytes of `content_type` to, straight into
        the store, for `expires_s` seconds, with the headers it must send; None if the
        store takes no direct uploads (uploads then go through Nova's own PUT route)."""
        ...

    async def aclose(self) -> None:
        """Release what the async side holds (connections); it reopens when used again."""
        ...

    # -- media tasks (sync) -----------------------------------------------------------

    def read(self, key: str) -> bytes:
        """All of `key`; `NotFound` if it is missing."""
        ...

    def write(self, key: str, data: bytes, content_type: str | None = None) -> None:
        """Store `data` under `key`, whole or not at all."""
        ...

    def download_to(self, key: str, path: Path) -> None:
        """Copy `key` into the local file `path`; `NotFound` if it is missing."""
        ...

    def upload_from(self, path: Path, key: str, content_type: str | None = None) -> None:
        """Store the local file `path` under `key`, whole or not at all."""
        ...

    def delete(self, key: str) -> None:
        """Remove `key`; nothing happens if it is missing."""
        ...

    def ensure_bucket(self) -> None:
        """Make the place objects go if it is missing (a bucket, a directory); blocking,
        for the stack to call once at start."""
        ...

    def close(self) -> None:
        """Release what the sync side holds; it reopens when used again."""
        ...
