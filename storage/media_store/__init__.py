"""The media store: uploads and the variants made of them, by key (`<media id>/<name>`).

`NOVA_MEDIA_STORE` says where (`open_store`): a directory every gateway replica and media
task reaches (`DirectoryStore`), or an S3 bucket (`S3Store`,
`s3://bucket[/prefix]?endpoint=…`). Both offer the same `MediaStore`: coroutines for the
gateway, blocking calls for media tasks.

- `keys`: media keys, byte ranges, `TooLarge` and `RangeNotSatisfiable`.
- `protocol`: `MediaStore`, what every store offers and what each method promises.
- `directory`: files under a directory, written by rename.
- `s3`, `s3_location`, `s3_streams`, `s3_errors`: a bucket through aioboto3 and boto3,
  the `s3://` URL and client limits, multipart uploads and streamed bodies, and botocore's
  errors as Nova's.
"""

from __future__ import annotations

from storage.media_store.directory import DirectoryStore
from storage.media_store.keys import (
    ORIGINAL,
    RangeNotSatisfiable,
    TooLarge,
    media_key,
    resolve_range,
)
from storage.media_store.protocol import ByteChunks, MediaStore
from storage.media_store.s3 import S3Store
from storage.media_store.s3_location import SCHEME, S3Limits, S3Location

__all__ = [
    "ORIGINAL",
    "ByteChunks",
    "DirectoryStore",
    "MediaStore",
    "RangeNotSatisfiable",
    "S3Limits",
    "S3Location",
    "S3Store",
    "TooLarge",
    "media_key",
    "open_store",
    "resolve_range",
    "upload_origins",
]


def open_store(
    location: str,
    *,
    access_key: str | None = None,
    secret_key: str | None = None,
    region: str = "us-east-1",
) -> MediaStore:
    """The store `location` names: an `s3://` URL (its `region=` option over `region`) or
    a directory. Without keys, an S3 store takes credentials the way boto3 does (AWS's
    environment variables, `~/.aws`, an instance role). Nothing is contacted here. For
    example, `open_store("/var/lib/nova/media")`, or
    `open_store("s3://media/nova?endpoint=http://127.0.0.1:9000", access_key=…, secret_key=…)`
    and once at start `store.ensure_bucket()`.
    """
    if location.startswith(SCHEME):
        where = S3Location.parse(location, region=region)
        return S3Store(where, access_key=access_key, secret_key=secret_key)
    return DirectoryStore(location)


def upload_origins(location: str) -> tuple[str, ...]:
    """Origins other than Nova's own that browsers upload media to: a bucket's, for
    presigned PUTs; none for a directory (uploads go through Nova)."""
    if location.startswith(SCHEME):
        return S3Location.parse(location).upload_origins()
    return ()
