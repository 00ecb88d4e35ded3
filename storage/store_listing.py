"""Every key a media store holds, for a backup to copy: the files of a directory store, or
the objects of a bucket under the store's prefix.

The stores themselves never list (the database says which media exist), and a listing is
no snapshot: keys written while it runs may or may not appear. Names that are not media
keys (a directory store's hidden partial files, objects of someone else's sharing the
bucket) are left out.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import boto3

from storage.errors import InvalidInput
from storage.media_store import S3Limits, S3Location
from storage.media_store.keys import check_key
from storage.media_store.s3_errors import mapped
from storage.media_store.s3_location import SCHEME, client_options


def stored_keys(
    location: str, *, access_key: str | None = None, secret_key: str | None = None
) -> Iterator[str]:
    """The media keys (`<media id>/<name>`) stored at `location` (`NOVA_MEDIA_STORE`)."""
    if location.startswith(SCHEME):
        return _bucket_keys(S3Location.parse(location), access_key, secret_key)
    return _directory_keys(Path(location))


def _is_key(name: str) -> bool:
    try:
        check_key(name)
    except InvalidInput:
        return False
    return True


def _directory_keys(root: Path) -> Iterator[str]:
    if not root.is_dir():
        return
    for folder in sorted(os.scandir(root), key=lambda entry: entry.name):
        if not folder.is_dir(follow_symlinks=False):
            continue
        for entry in sorted(os.scandir(folder.path), key=lambda entry: entry.name):
            key = f"{folder.name}/{entry.name}"
            if entry.is_file(follow_symlinks=False) and _is_key(key):
                yield key


def _bucket_keys(
    location: S3Location, access_key: str | None, secret_key: str | None
) -> Iterator[str]:
    session = boto3.session.Session(
        aws_access_key_id=access_key,
        aws_secret_access_key=secret_key,
        region_name=location.region,
    )
    client = session.client(**client_options(location, S3Limits()))
    try:
        with mapped(f"list {location}"):
            pages = client.get_paginator("list_objects_v2").paginate(
                Bucket=location.bucket, Prefix=location.prefix
            )
            for page in pages:
                for item in page.get("Contents", []):
                    key = str(item["Key"])[len(location.prefix) :]
                    if _is_key(key):
                        yield key
    finally:
        client.close()
