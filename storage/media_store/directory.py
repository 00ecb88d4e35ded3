"""The media store as a directory (`NOVA_MEDIA_STORE=/path`; `<state dir>/media` on the
embedded stack), which every gateway replica and media task must reach: a shared volume
on a cluster.

A write goes to a temporary file renamed into place, so a reader never sees half a file
and a task that writes the same variant twice leaves one whole copy. File work runs in
threads: the event loop never waits on a disk.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import uuid
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import BinaryIO

from storage.errors import NotFound
from storage.media_store.keys import CHUNK_BYTES, TooLarge, check_key, resolve_range
from storage.media_store.protocol import ByteChunks


class DirectoryStore:
    """Media under `root`, one folder per media: `root/<media id>/<name>`."""

    def __init__(self, root: Path | str) -> None:
        self.root = Path(root)

    def path(self, key: str) -> Path:
        return self.root / check_key(key)

    # -- the gateway (async) ----------------------------------------------------------

    async def write_stream(self, key: str, chunks: AsyncIterator[bytes], *, max_bytes: int) -> int:
        target = self.path(key)
        await asyncio.to_thread(target.parent.mkdir, parents=True, exist_ok=True)
        partial = _partial(target)
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

    async def head(self, key: str, size: int) -> bytes:
        def read_head() -> bytes:
            try:
                with self.path(key).open("rb") as handle:
                    return handle.read(size)
            except FileNotFoundError:
                return b""

        return await asyncio.to_thread(read_head)

    async def size(self, key: str) -> int | None:
        try:
            return (await asyncio.to_thread(self.path(key).stat)).st_size
        except FileNotFoundError:
            return None

    async def open_read(
        self, key: str, start: int | None = None, end: int | None = None
    ) -> tuple[ByteChunks, int] | None:
        path = self.path(key)
        try:
            handle = await asyncio.to_thread(path.open, "rb")
        except FileNotFoundError:
            return None
        # The file is open before the answer, so a file replaced meanwhile is still read
        # whole at the size reported; the chunks close it when done or closed.
        try:
            total = os.fstat(handle.fileno()).st_size
            first, last = resolve_range(start, end, total)
        except BaseException:
            handle.close()
            raise
        return _FileChunks(handle, first, last - first + 1), total

    async def delete_media(self, media_id: uuid.UUID) -> None:
        await asyncio.to_thread(shutil.rmtree, self.root / str(media_id), ignore_errors=True)

    async def presigned_put(
        self, key: str, content_type: str, size: int, expires_s: int
    ) -> tuple[str, dict[str, str]] | None:
        """None: a directory takes uploads only through Nova's own PUT route."""
        check_key(key)
        return None

    async def aclose(self) -> None:
        """Nothing to release: files are opened per call."""

    # -- media tasks (sync) -----------------------------------------------------------

    def read(self, key: str) -> bytes:
        try:
            return self.path(key).read_bytes()
        except FileNotFoundError:
            raise NotFound(f"no media file {key}") from None

    def write(self, key: str, data: bytes, content_type: str | None = None) -> None:
        """Write `data` at once; `content_type` is not kept (the name's suffix says it)."""
        self._replace(key, lambda partial: partial.write_bytes(data))

    def download_to(self, key: str, path: Path) -> None:
        try:
            shutil.copyfile(self.path(key), path)
        except FileNotFoundError:
            raise NotFound(f"no media file {key}") from None

    def upload_from(self, path: Path, key: str, content_type: str | None = None) -> None:
        self._replace(key, lambda partial: shutil.copyfile(path, partial))

    def delete(self, key: str) -> None:
        self.path(key).unlink(missing_ok=True)

    def ensure_bucket(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)

    def close(self) -> None:
        """Nothing to release."""

    def _replace(self, key: str, fill: Callable[[Path], object]) -> None:
        target = self.path(key)
        target.parent.mkdir(parents=True, exist_ok=True)
        partial = _partial(target)
        try:
            fill(partial)
            os.replace(partial, target)
        finally:
            partial.unlink(missing_ok=True)


def _partial(target: Path) -> Path:
    """A hidden name beside `target`, unique to one write: concurrent writers of the same
    key never share one, and a dot name is no media key, so nothing serves it."""
    return target.with_name(f".{target.name}.{uuid.uuid4().hex}.part")


class _FileChunks:
    """`count` bytes of an open file from `offset`, read in threads; the file closes at the
    end, on an error, or on `aclose()`."""

    def __init__(self, handle: BinaryIO, offset: int, count: int) -> None:
        self._handle = handle
        self._offset = offset
        self._left = count

    def __aiter__(self) -> _FileChunks:
        return self

    async def __anext__(self) -> bytes:
        if self._left <= 0:
            self._handle.close()
            raise StopAsyncIteration
        try:
            chunk = await asyncio.to_thread(self._read, min(CHUNK_BYTES, self._left))
        except BaseException:
            self._handle.close()
            raise
        if not chunk:  # the file shrank under us: end early rather than spin
            self._handle.close()
            raise StopAsyncIteration
        self._offset += len(chunk)
        self._left -= len(chunk)
        return chunk

    def _read(self, size: int) -> bytes:
        return os.pread(self._handle.fileno(), size, self._offset)

    async def aclose(self) -> None:
        self._handle.close()
