"""Media keys (`<media id>/<name>`), byte ranges, and the errors every store raises.

A key is checked before any store touches it: a name with a slash or `..` could reach
outside its media's folder (a directory store) or another media's objects (an S3 prefix).
"""

from __future__ import annotations

import re
import uuid

from storage.errors import InvalidInput

# An upload's bytes as they arrived; never served (they may carry metadata).
ORIGINAL = "original"

# What a download streams per chunk: large enough that a video segment is a few dozen
# reads, small enough that many concurrent downloads stay cheap in memory.
CHUNK_BYTES = 64 * 1024

_KEY = re.compile(r"^[0-9a-f-]{36}/[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")


class TooLarge(InvalidInput):
    """More bytes arrived than the write allows."""


class RangeNotSatisfiable(InvalidInput):
    """A byte range that starts past the end of the object (HTTP 416); `total` is its size,
    for the `Content-Range: bytes */<total>` the answer carries."""

    def __init__(self, message: str, total: int) -> None:
        super().__init__(message)
        self.total = total


def media_key(media_id: uuid.UUID, name: str) -> str:
    return check_key(f"{media_id}/{name}")


def check_key(key: str) -> str:
    """`key` if it is a media key; `InvalidInput` otherwise."""
    if not _KEY.match(key):
        raise InvalidInput(f"not a media key: {key!r}")
    return key


def resolve_range(start: int | None, end: int | None, total: int) -> tuple[int, int]:
    """The first and last byte (inclusive, as in HTTP) that `open_read(key, start, end)`
    serves of an object of `total` bytes; `(0, -1)` for a whole empty object.

    `start=None` reads from the beginning, `end=None` (or an end past the object) to the
    end; a negative `start` is HTTP's suffix range (`bytes=-N`: the last N bytes), with
    `end=None`. A range that starts past the end raises `RangeNotSatisfiable`.
    """
    check_range(start, end)
    if start is not None and start < 0:
        if total == 0:
            raise RangeNotSatisfiable("a suffix range of an empty object", total)
        return max(0, total + start), total - 1
    if start is None and end is None:
        return 0, total - 1
    first = start or 0
    if first >= total:
        raise RangeNotSatisfiable(f"byte {first} is past the end of {total} bytes", total)
    return first, total - 1 if end is None else min(end, total - 1)


def range_header(start: int | None, end: int | None) -> str | None:
    """The `Range` header asking an HTTP server (S3) for what `resolve_range` resolves;
    None for the whole object."""
    check_range(start, end)
    if start is None and end is None:
        return None
    if start is not None and start < 0:
        return f"bytes={start}"
    return f"bytes={start or 0}-{'' if end is None else end}"


def check_range(start: int | None, end: int | None) -> None:
    """`InvalidInput` for what no HTTP range means: a suffix with an end, an end before
    the start, a negative end."""
    if start is not None and start < 0 and end is not None:
        raise InvalidInput("a suffix range (negative start) takes no end")
    if end is not None and end < max(start or 0, 0):
        raise InvalidInput(f"a byte range must not end ({end}) before it starts ({start or 0})")
