"""Streaming to and from S3 on the event loop: a multipart upload fed part by part, and an
object's body read chunk by chunk.

An upload is buffered in memory one part at a time (at least S3's 5 MiB minimum), so a
large video never sits whole in memory or on a local disk, and nothing reaches the bucket
under its key until the upload completes: an upload stopped midway is aborted and leaves
no object. A process killed mid-upload cannot abort; a bucket lifecycle rule
(AbortIncompleteMultipartUpload) reclaims such parts.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from storage.media_store.keys import CHUNK_BYTES
from storage.media_store.s3_errors import mapped

log = logging.getLogger(__name__)

MIN_PART_BYTES = 5 * 1024 * 1024  # S3's smallest part but the last


class Multipart:
    """One multipart upload: `send` parts in order, then `complete`, or `abort`."""

    def __init__(self, client: Any, bucket: str, name: str, upload_id: str, what: str) -> None:
        self._client = client
        self._target = {"Bucket": bucket, "Key": name, "UploadId": upload_id}
        self._what = what
        self._parts: list[dict[str, Any]] = []

    @classmethod
    async def start(cls, client: Any, bucket: str, name: str, what: str) -> Multipart:
        with mapped(what):
            answer = await client.create_multipart_upload(Bucket=bucket, Key=name)
        return cls(client, bucket, name, answer["UploadId"], what)

    async def send(self, data: bytes) -> None:
        number = len(self._parts) + 1
        with mapped(self._what):
            answer = await self._client.upload_part(**self._target, PartNumber=number, Body=data)
        self._parts.append({"PartNumber": number, "ETag": answer["ETag"]})

    async def complete(self) -> None:
        with mapped(self._what):
            await self._client.complete_multipart_upload(
                **self._target, MultipartUpload={"Parts": self._parts}
            )

    async def abort(self) -> None:
        """Drop the parts sent. Shielded: a cancelled upload (a client gone) still aborts;
        a failure is logged, not raised, so the error that stopped the upload stands."""
        try:
            await asyncio.shield(self._client.abort_multipart_upload(**self._target))
        except Exception as exc:
            log.warning("media store: %s: multipart upload not aborted: %s", self._what, exc)


class BodyChunks:
    """An object's body as an async iterator of chunks. The connection it holds goes back
    to the pool at the end, on an error, or on `aclose()`."""

    def __init__(self, body: Any, what: str) -> None:
        self._body = body
        self._what = what
        self._done = False

    def __aiter__(self) -> BodyChunks:
        return self

    async def __anext__(self) -> bytes:
        if self._done:
            raise StopAsyncIteration
        try:
            with mapped(self._what):
                chunk: bytes = await self._body.read(CHUNK_BYTES)
        except BaseException:
            self._close()
            raise
        if not chunk:
            self._close()
            raise StopAsyncIteration
        return chunk

    async def aclose(self) -> None:
        self._close()

    def _close(self) -> None:
        self._done = True
        self._body.close()
