"""The media store: uploads and the variants made of them, by key (`<media id>/<name>`).

`DirectoryStore` keeps them under a directory (`NOVA_MEDIA_STORE`; `<state dir>/media` on
the embedded stack), which every gateway replica and media task must reach: a shared
volume on a cluster. A write goes to a temporary file renamed into place, so a reader
never sees half a file and a task that writes the same variant twice leaves one whole
copy. File work runs in threads: the event loop never waits on a disk.
"""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

from storage.errors import InvalidInput

__all__ = ["ORIGINAL", "DirectoryStore", "TooLarge", "media_key"]

# An upload's bytes as they arrived; never served (they may carry metadata).
ORIGINAL = "original"

_KEY = re.compile(r"^[0-9a-f-]{36}/[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")


class TooLarge(InvalidInput):
    """More bytes arrived than the write allows."""


def media_key(media_id: uuid.UUID, name: str) -> str:
    key = f"{media_id}/{name}"
    if not _KEY.match(key):
        raise InvalidInput(f"not a media key: {key!r}")
    return key


class DirectoryStore:
    def __init__(self, root: Path | str) -> None:
        self.root = Path(root)

    def path(self, key: str) -> Path:
        if not _KEY.match(key):
            raise InvalidInput(f"not a media key: {key!r}")
        return self.root / key

    async def write_stream(self, key: str, chunks: AsyncIterator[bytes], *, max_bytes: int) -> int:
        """Write what `chunks` yields under `key`; raises `TooLarge` (keeping nothing)
        past `max_bytes`. Returns the number of bytes written."""
        target = self.path(key)
        await asyncio.to_thread(target.parent.mkdir, parents=True, exist_ok=True)
        partial = target.with_name(f".{target.name}.{uuid.uuid4().hex}.part")
        handle = await asyncio.to_thread(open, partial, "wb")
        written = 0
        try:
            async for chunk in chunks:
                written += len(chunk)
                if written > max_bytes:
                    raise TooLarge(f"more than {max_bytes} bytes")
                await asyncio.to_thread(handle.write, chunk)
            await asyncio.to_thread(handle.close)
            await asyncio.to_thread(os.replace, partial, target)
        except BaseException:
            handle.close()
            partial.unlink(missing_ok=True)
            raise
        return written

    def write(self, key: str, data: bytes) -> None:
        """Write `data` under `key` at once (from a media task, off any event loop)."""
        target = self.path(key)
        target.parent.mkdir(parents=True, exist_ok=True)
        partial = target.with_name(f".{target.name}.{uuid.uuid4().hex}.part")
        try:
            partial.write_bytes(data)
            os.replace(partial, target)
        finally:
            partial.unlink(missing_ok=True)

    def read(self, key: str) -> bytes:
        return self.path(key).read_bytes()

    async def head(self, key: str, size: int) -> bytes:
        """The first `size` bytes of `key` (fewer if it is shorter)."""

        def read_head() -> bytes:
            with self.path(key).open("rb") as handle:
                return handle.read(size)

        return await asyncio.to_thread(read_head)

    async def size(self, key: str) -> int | None:
        try:
            return (await asyncio.to_thread(self.path(key).stat)).st_size
        except FileNotFoundError:
            return None

    async def delete_media(self, media_id: uuid.UUID) -> None:
        """Everything stored for one media."""
        await asyncio.to_thread(shutil.rmtree, self.root / str(media_id), ignore_errors=True)
