"""The media store in an S3 bucket (`NOVA_MEDIA_STORE=s3://bucket[/prefix]?endpoint=…`):
AWS S3 or any server speaking its API (MinIO, Ceph, moto).

The gateway's side uses aioboto3, the media tasks' side boto3. Each keeps one client,
made on first use, because a client is costly to make (it loads S3's service model) and
holds the connection pool; and each remembers the process (and, for the async one, the
event loop) that made it. A forked child (a Ray worker) or another loop gets a client of
its own instead of sharing sockets and a loop it does not run; the one it inherited is
dropped, never closed from there. Objects are private: nothing here sets an ACL, and
clients upload straight to the bucket only through URLs Nova signs (`presigned_put`).
"""

from __future__ import annotations

import asyncio
import os
import threading
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aioboto3
import boto3
from boto3.s3.transfer import TransferConfig
from botocore.exceptions import ClientError

from storage.errors import ConfigError, InvalidInput, NotFound
from storage.media_store.keys import (
    RangeNotSatisfiable,
    TooLarge,
    check_key,
    range_header,
)
from storage.media_store.protocol import ByteChunks
from storage.media_store.s3_errors import MISSING, error_code, from_code, mapped
from storage.media_store.s3_location import S3Limits, S3Location, client_options
from storage.media_store.s3_streams import MIN_PART_BYTES, BodyChunks, Multipart

PART_BYTES = 8 * 1024 * 1024
MAX_PRESIGN_S = 7 * 24 * 3600  # SigV4's longest validity


@dataclass(frozen=True)
class _AsyncClient:
    pid: int
    loop: asyncio.AbstractEventLoop
    opening: asyncio.Task[Any]


class S3Store:
    """Media in one bucket under an optional prefix: object `<prefix><media id>/<name>`.
    Usually made by `open_store("s3://…")`; `ensure_bucket()` once at start."""

    def __init__(
        self,
        location: S3Location,
        *,
        access_key: str | None = None,
        secret_key: str | None = None,
        limits: S3Limits | None = None,
        part_bytes: int = PART_BYTES,
    ) -> None:
        if (access_key is None) != (secret_key is None):
            raise ConfigError("the media store needs both an access key and a secret key")
        if part_bytes < MIN_PART_BYTES:
            raise ValueError(f"part_bytes must be at least {MIN_PART_BYTES} (S3's minimum)")
        self.location = location
        self._part_bytes = part_bytes
        self._credentials = {"aws_access_key_id": access_key, "aws_secret_access_key": secret_key}
        self._options = client_options(location, limits or S3Limits())
        self._transfer = TransferConfig(multipart_threshold=part_bytes, max_concurrency=4)
        self._session = aioboto3.Session(**self._credentials, region_name=location.region)
        self._async: _AsyncClient | None = None
        self._sync: tuple[int, Any] | None = None
        self._lock = (os.getpid(), threading.Lock())

    def __repr__(self) -> str:
        return f"S3Store({self.location})"

    # -- the gateway (async) ----------------------------------------------------------

    async def write_stream(self, key: str, chunks: AsyncIterator[bytes], *, max_bytes: int) -> int:
        """Small uploads go in one PUT; from `part_bytes` on, part by part as they arrive
        (`s3_streams.Multipart`). Either way the object appears whole or not at all."""
        name, what = self._name(key), f"put {key}"
        client = await self._aclient()
        pending = bytearray()
        written = 0
        upload: Multipart | None = None
        try:
            async for chunk in chunks:
                written += len(chunk)
                if written > max_bytes:
                    raise TooLarge(f"more than {max_bytes} bytes")
                pending += chunk
                if len(pending) >= self._part_bytes:
                    if upload is None:
                        upload = await Multipart.start(client, self.location.bucket, name, what)
                    await upload.send(bytes(pending))
                    pending.clear()
            if upload is None:
                with mapped(what):
                    await client.put_object(
                        Bucket=self.location.bucket, Key=name, Body=bytes(pending)
                    )
            else:
                if pending:
                    await upload.send(bytes(pending))
                await upload.complete()
        except BaseException:
            if upload is not None:
                await upload.abort()
            raise
        return written

    async def head(self, key: str, size: int) -> bytes:
        if size <= 0:
            return b""
        try:
            opened = await self.open_read(key, 0, size - 1)
        except RangeNotSatisfiable:  # an empty object
            return b""
        if opened is None:
            return b""
        chunks, _ = opened
        return b"".join([chunk async for chunk in chunks])

    async def size(self, key: str) -> int | None:
        """None for a missing key, and for a missing bucket too: a HEAD answer has no body
        to tell them apart (reads and writes say `ConfigError` for the bucket)."""
        client = await self._aclient()
        try:
            with mapped(f"head {key}"):
                answer = await client.head_object(Bucket=self.location.bucket, Key=self._name(key))
        except NotFound:
            return None
        return int(answer["ContentLength"])

    async def open_read(
        self, key: str, start: int | None = None, end: int | None = None
    ) -> tuple[ByteChunks, int] | None:
        what = f"get {key}"
        args = {"Bucket": self.location.bucket, "Key": self._name(key)}
        asked = range_header(start, end)
        if asked is not None:
            args["Range"] = asked
        client = await self._aclient()
        try:
            with mapped(what):
                answer = await client.get_object(**args)
        except NotFound:
            return None
        except RangeNotSatisfiable as refused:
            if refused.total < 0:  # the store did not say the size: ask
                refused.total = await self.size(key) or 0
            raise
        return BodyChunks(answer["Body"], what), _total(answer)

    async def delete_media(self, media_id: uuid.UUID) -> None:
        """Every object under `<prefix><media id>/`, a page (at most 1,000) at a time."""
        bucket, what = self.location.bucket, f"delete {media_id}/"
        client = await self._aclient()
        with mapped(what):
            pages = client.get_paginator("list_objects_v2").paginate(
                Bucket=bucket, Prefix=self.location.name(f"{media_id}/")
            )
            async for page in pages:
                objects = [{"Key": item["Key"]} for item in page.get("Contents", [])]
                if not objects:
                    continue
                answer = await client.delete_objects(
                    Bucket=bucket, Delete={"Objects": objects, "Quiet": True}
                )
                failed = answer.get("Errors", [])
                if failed:  # per object, in a 200 answer
                    code = str(failed[0].get("Code", ""))
                    raise from_code(code, 0, f"{what} ({len(failed)} objects left)")

    async def presigned_put(
        self, key: str, content_type: str, size: int, expires_s: int
    ) -> tuple[str, dict[str, str]] | None:
        """A SigV4 URL with Content-Type and Content-Length among its signed headers: S3
        refuses a PUT of another type or length. Browsers send Content-Length themselves."""
        if not 0 < expires_s <= MAX_PRESIGN_S:
            raise InvalidInput(f"expires_s must be within 1..{MAX_PRESIGN_S}")
        if size < 0:
            raise InvalidInput("size must not be negative")
        params = {
            "Bucket": self.location.bucket,
            "Key": self._name(key),
            "ContentType": content_type,
            "ContentLength": size,
        }
        client = await self._aclient()
        with mapped(f"presign {key}"):
            url: str = await client.generate_presigned_url(
                "put_object", Params=params, ExpiresIn=expires_s
            )
        return url, {"Content-Type": content_type, "Content-Length": str(size)}

    async def aclose(self) -> None:
        """Close this process's and this loop's client, if it has one; another's is only
        forgotten (its loop or its parent process owns it)."""
        held, self._async = self._async, None
        if held is None or held.pid != os.getpid():
            return
        if held.loop is not asyncio.get_running_loop():
            return
        try:
            client = await held.opening
        except Exception:
            return  # never opened: nothing to close
        await client.close()

    # -- media tasks (sync) -----------------------------------------------------------

    def read(self, key: str) -> bytes:
        with mapped(f"get {key}"):
            answer = self._client().get_object(Bucket=self.location.bucket, Key=self._name(key))
            try:
                data: bytes = answer["Body"].read()
            finally:
                answer["Body"].close()
        return data

    def write(self, key: str, data: bytes, content_type: str | None = None) -> None:
        extra = {"ContentType": content_type} if content_type else {}
        with mapped(f"put {key}"):
            self._client().put_object(
                Bucket=self.location.bucket, Key=self._name(key), Body=data, **extra
            )

    def download_to(self, key: str, path: Path) -> None:
        """Through boto3's transfer manager: large objects come in parallel ranged parts,
        into a temporary file renamed to `path` when whole."""
        with mapped(f"get {key}"):
            self._client().download_file(
                self.location.bucket, self._name(key), str(path), Config=self._transfer
            )

    def upload_from(self, path: Path, key: str, content_type: str | None = None) -> None:
        """Through boto3's transfer manager: a large file goes as a multipart upload,
        aborted if a part fails."""
        extra = {"ContentType": content_type} if content_type else None
        with mapped(f"put {key}"):
            self._client().upload_file(
                str(path),
                self.location.bucket,
                self._name(key),
                ExtraArgs=extra,
                Config=self._transfer,
            )

    def delete(self, key: str) -> None:
        with mapped(f"delete {key}"):
            self._client().delete_object(Bucket=self.location.bucket, Key=self._name(key))

    def ensure_bucket(self) -> None:
        """Create the bucket unless it exists. Blocking (boto3): the stack calls it once
        at start, before anything is served. A bucket that exists but is not ours (403)
        is a `ConfigError`."""
        bucket = self.location.bucket
        client = self._client()
        with mapped(f"bucket {bucket}"):
            try:
                client.head_bucket(Bucket=bucket)
                return
            except ClientError as exc:
                if error_code(exc) not in MISSING | {"NoSuchBucket"}:
                    raise
            where = {}
            if self.location.region != "us-east-1":  # the one region S3 refuses to be told
                where = {"CreateBucketConfiguration": {"LocationConstraint": self.location.region}}
            try:
                client.create_bucket(Bucket=bucket, **where)
            except ClientError as exc:
                if error_code(exc) != "BucketAlreadyOwnedByYou":  # made concurrently
                    raise

    def close(self) -> None:
        held, self._sync = self._sync, None
        if held is not None and held[0] == os.getpid():
            held[1].close()

    # -- clients ------------------------------------------------------------------------

    def _name(self, key: str) -> str:
        return self.location.name(check_key(key))

    async def _aclient(self) -> Any:
        """This process's and loop's aioboto3 client, made once. Concurrent first callers
        share one opening task, which the shield keeps from a caller's cancellation."""
        loop = asyncio.get_running_loop()
        held = self._async
        if held is None or held.pid != os.getpid() or held.loop is not loop:
            held = _AsyncClient(os.getpid(), loop, loop.create_task(self._open_async()))
            self._async = held
        try:
            return await asyncio.shield(held.opening)
        except Exception:
            if self._async is held:  # let the next call try again
                self._async = None
            raise

    async def _open_async(self) -> Any:
        with mapped("open a client"):
            return await self._session.client(**self._options).__aenter__()

    def _client(self) -> Any:
        """This process's boto3 client, made once (boto3 clients are thread-safe; making
        one is not, hence the lock, itself remade in a forked child)."""
        held = self._sync
        if held is not None and held[0] == os.getpid():
            return held[1]
        pid = os.getpid()
        if self._lock[0] != pid:
            self._lock = (pid, threading.Lock())
        with self._lock[1]:
            if self._sync is None or self._sync[0] != pid:
                session = boto3.session.Session(
                    **self._credentials, region_name=self.location.region
                )
                self._sync = (pid, session.client(**self._options))
            return self._sync[1]


def _total(answer: dict[str, Any]) -> int:
    """An object's size from a GET's answer: after the `/` of a ranged answer's
    `Content-Range: bytes 0-99/1234`, else its length."""
    content_range = answer.get("ContentRange")
    if content_range:
        return int(str(content_range).rpartition("/")[2])
    return int(answer["ContentLength"])
