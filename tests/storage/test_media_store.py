"""The media store's promises, kept by both stores: a directory, and a bucket on a real
S3-API server (moto's, in its own process: `tests.support.s3`)."""

from __future__ import annotations

import asyncio
import socket
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

from storage.errors import ConfigError, InvalidInput, NotFound, Unavailable
from storage.media_store import (
    ORIGINAL,
    DirectoryStore,
    MediaStore,
    RangeNotSatisfiable,
    S3Limits,
    S3Location,
    S3Store,
    TooLarge,
    media_key,
    open_store,
    resolve_range,
)
from storage.media_store.s3 import PART_BYTES
from storage.media_store.s3_streams import MIN_PART_BYTES
from tests.support.s3 import S3Server, free_port, unique_bucket

MiB = 1024 * 1024


@pytest.fixture(scope="module")
def bucket(s3_server: S3Server) -> str:
    """A fresh bucket for this module, made the way the stack makes it."""
    name = unique_bucket("media")
    store = open_store(
        s3_server.location(name), access_key=s3_server.access_key, secret_key=s3_server.secret_key
    )
    store.ensure_bucket()
    store.ensure_bucket()  # again: a no-op
    store.close()
    return name


def s3_store(
    server: S3Server, bucket: str, *, limits: S3Limits | None = None, part_bytes: int = PART_BYTES
) -> S3Store:
    return S3Store(
        S3Location.parse(server.location(bucket)),
        access_key=server.access_key,
        secret_key=server.secret_key,
        limits=limits,
        part_bytes=part_bytes,
    )


@pytest.fixture(params=["directory", "s3"])
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[MediaStore]:
    made: MediaStore
    if request.param == "directory":
        made = open_store(str(tmp_path / "media"))
        made.ensure_bucket()
    else:
        server: S3Server = request.getfixturevalue("s3_server")
        made = s3_store(server, request.getfixturevalue("bucket"))
    try:
        yield made
    finally:
        await made.aclose()
        made.close()


@pytest.fixture
async def s3(s3_server: S3Server, bucket: str) -> AsyncIterator[S3Store]:
    """The S3 store with the smallest parts S3 allows, so multipart uploads stay small."""
    made = s3_store(s3_server, bucket, part_bytes=MIN_PART_BYTES)
    try:
        yield made
    finally:
        await made.aclose()
        made.close()


def new_key(name: str = ORIGINAL) -> str:
    return media_key(uuid.uuid4(), name)


async def chunks_of(data: bytes, size: int = 1000) -> AsyncIterator[bytes]:
    for at in range(0, len(data), size):
        yield data[at : at + size]


async def failing_after(data: bytes, size: int = 64 * 1024) -> AsyncIterator[bytes]:
    async for chunk in chunks_of(data, size):
        yield chunk
    raise ConnectionResetError("the client went away")


async def read_all(store: MediaStore, key: str, start: int | None, end: int | None) -> bytes:
    opened = await store.open_read(key, start, end)
    assert opened is not None
    chunks, _ = opened
    return b"".join([chunk async for chunk in chunks])


def pending_uploads(server: S3Server, bucket: str) -> list[object]:
    uploads: list[object] = server.client().list_multipart_uploads(Bucket=bucket).get("Uploads", [])
    return uploads


DATA = bytes(range(256)) * 800  # 204,800 bytes: several download chunks


# -- writes from the gateway ------------------------------------------------------------


async def test_write_stream_round_trip(store: MediaStore) -> None:
    key = new_key()
    assert await store.write_stream(key, chunks_of(DATA), max_bytes=len(DATA)) == len(DATA)
    assert store.read(key) == DATA
    assert await store.size(key) == len(DATA)


async def test_write_stream_past_max_bytes_keeps_nothing(store: MediaStore) -> None:
    fresh, kept = new_key(), new_key()
    store.write(kept, b"before")
    for key in (fresh, kept):
        with pytest.raises(TooLarge):
            await store.write_stream(key, chunks_of(DATA), max_bytes=len(DATA) - 1)
    assert await store.size(fresh) is None
    assert store.read(kept) == b"before"
    assert_no_partial_files(store, fresh)


async def test_a_stream_that_fails_midway_keeps_nothing(store: MediaStore) -> None:
    fresh, kept = new_key(), new_key()
    store.write(kept, b"before")
    for key in (fresh, kept):
        with pytest.raises(ConnectionResetError):
            await store.write_stream(key, failing_after(DATA), max_bytes=10 * len(DATA))
    assert await store.size(fresh) is None
    assert store.read(kept) == b"before"
    assert_no_partial_files(store, fresh)


def assert_no_partial_files(store: MediaStore, key: str) -> None:
    if isinstance(store, DirectoryStore):
        folder = store.path(key).parent
        assert not folder.exists() or list(folder.iterdir()) == []


async def test_s3_streams_a_large_upload_in_parts(
    s3: S3Store, s3_server: S3Server, bucket: str
) -> None:
    data = bytes(range(251)) * (11 * MiB // 251)  # three parts: 5 MiB, 5 MiB, the rest
    key = new_key()
    assert await s3.write_stream(key, chunks_of(data, MiB), max_bytes=len(data)) == len(data)
    assert s3.read(key) == data
    assert pending_uploads(s3_server, bucket) == []


async def test_s3_a_large_upload_stopped_midway_is_aborted(
    s3: S3Store, s3_server: S3Server, bucket: str
) -> None:
    data = b"v" * (7 * MiB)  # one part sent before each failure
    too_large, cut = new_key(), new_key()
    with pytest.raises(TooLarge):
        await s3.write_stream(too_large, chunks_of(data, MiB), max_bytes=6 * MiB)
    with pytest.raises(ConnectionResetError):
        await s3.write_stream(cut, failing_after(data, MiB), max_bytes=len(data) * 2)
    assert await s3.size(too_large) is None
    assert await s3.size(cut) is None
    assert pending_uploads(s3_server, bucket) == []


# -- reads from the gateway -------------------------------------------------------------


async def test_head_and_size(store: MediaStore) -> None:
    key, empty = new_key(), new_key("empty.webp")
    store.write(key, DATA)
    store.write(empty, b"")
    assert await store.head(key, 16) == DATA[:16]
    assert await store.head(key, 10 * len(DATA)) == DATA  # shorter than asked
    assert await store.head(empty, 16) == b""
    assert await store.head(new_key(), 16) == b""  # missing: nothing to sniff
    assert await store.size(empty) == 0
    assert await store.size(new_key()) is None


RANGES = [
    pytest.param(None, None, id="whole"),
    pytest.param(0, 99, id="first-bytes"),
    pytest.param(1000, 70_000, id="middle"),
    pytest.param(len(DATA) - 10, None, id="to-the-end"),
    pytest.param(-10, None, id="suffix"),
    pytest.param(100, 10 * len(DATA), id="end-past-the-object"),
    pytest.param(None, 9, id="no-start"),
]


@pytest.mark.parametrize(("start", "end"), RANGES)
async def test_open_read_serves_the_range_and_the_total(
    store: MediaStore, start: int | None, end: int | None
) -> None:
    key = new_key("large.webp")
    store.write(key, DATA)
    opened = await store.open_read(key, start, end)
    assert opened is not None
    chunks, total = opened
    got = [chunk async for chunk in chunks]
    first, last = resolve_range(start, end, len(DATA))
    assert total == len(DATA)
    assert b"".join(got) == DATA[first : last + 1]
    if start is None and end is None:
        assert len(got) > 1  # streamed, not read whole


async def test_open_read_refuses_a_range_past_the_end(store: MediaStore) -> None:
    key, empty = new_key("large.webp"), new_key("empty.webp")
    store.write(key, DATA)
    store.write(empty, b"")
    with pytest.raises(RangeNotSatisfiable) as refused:
        await store.open_read(key, len(DATA), None)
    assert refused.value.total == len(DATA)
    with pytest.raises(InvalidInput):
        await store.open_read(key, 10, 5)
    assert await read_all(store, empty, None, None) == b""


async def test_open_read_of_a_missing_key_is_none(store: MediaStore) -> None:
    assert await store.open_read(new_key("large.webp")) is None
    assert await store.open_read(new_key("large.webp"), 0, 10) is None


async def test_s3_closing_unread_downloads_frees_their_connections(
    s3_server: S3Server, bucket: str
) -> None:
    store = s3_store(s3_server, bucket, limits=S3Limits(max_connections=2))
    key = new_key("large.webp")
    store.write(key, b"z" * (4 * MiB))  # more than aiohttp reads ahead: the answer waits
    held = []  # kept, so only aclose() (not the garbage collector) can free a connection
    try:
        for _ in range(5):  # a leaked connection would leave the third waiting for one
            opened = await asyncio.wait_for(store.open_read(key), 5)
            assert opened is not None
            held.append(opened[0])
            await opened[0].aclose()
        assert await read_all(store, key, 0, 3) == b"zzzz"
    finally:
        await store.aclose()
        store.close()


# -- media tasks (sync) -----------------------------------------------------------------


async def test_sync_write_read_download_and_upload(store: MediaStore, tmp_path: Path) -> None:
    key, copied = new_key("large.webp"), new_key("hls.m3u8")
    store.write(key, DATA, "image/webp")
    assert store.read(key) == DATA
    store.download_to(key, tmp_path / "local")
    assert (tmp_path / "local").read_bytes() == DATA
    (tmp_path / "out").write_bytes(DATA[::-1])
    store.upload_from(tmp_path / "out", copied, "application/vnd.apple.mpegurl")
    assert store.read(copied) == DATA[::-1]
    store.delete(copied)
    store.delete(copied)  # missing: nothing happens
    assert await store.size(copied) is None


async def test_sync_reads_of_a_missing_key_are_not_found(store: MediaStore, tmp_path: Path) -> None:
    with pytest.raises(NotFound):
        store.read(new_key())
    with pytest.raises(NotFound):
        store.download_to(new_key(), tmp_path / "local")
    assert not (tmp_path / "local").exists()


async def test_delete_media_removes_that_media_only(store: MediaStore) -> None:
    gone, kept = uuid.uuid4(), uuid.uuid4()
    names = [ORIGINAL, "large.webp", "thumb.jpeg"]
    for media_id in (gone, kept):
        for name in names:
            store.write(media_key(media_id, name), name.encode())
    await store.delete_media(gone)
    await store.delete_media(uuid.uuid4())  # nothing stored: nothing happens
    assert [await store.size(media_key(gone, name)) for name in names] == [None] * 3
    assert [store.read(media_key(kept, name)) for name in names] == [n.encode() for n in names]


# -- keys -----------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["a/b", "..", "../x", ".hidden", "", "x" * 65, "a b"])
def test_media_key_refuses_names_that_could_escape(name: str) -> None:
    with pytest.raises(InvalidInput):
        media_key(uuid.uuid4(), name)


async def test_stores_refuse_keys_that_are_not_media_keys(store: MediaStore) -> None:
    media_id = uuid.uuid4()
    for key in (f"{media_id}/../x", f"{media_id}/a/b", "../../etc/passwd"):
        with pytest.raises(InvalidInput):
            store.read(key)
        with pytest.raises(InvalidInput):
            await store.size(key)
        with pytest.raises(InvalidInput):
            await store.write_stream(key, chunks_of(b"x"), max_bytes=1)


# -- direct uploads ---------------------------------------------------------------------


async def test_a_directory_takes_no_direct_uploads(tmp_path: Path) -> None:
    assert await DirectoryStore(tmp_path).presigned_put(new_key(), "image/png", 5, 60) is None


async def test_s3_presigned_put_takes_a_plain_http_put(s3: S3Store) -> None:
    key, body = new_key(), b"\x89PNG\r\n\x1a\n" + b"p" * 100
    presigned = await s3.presigned_put(key, "image/png", len(body), 300)
    assert presigned is not None
    url, headers = presigned
    assert headers == {"Content-Type": "image/png", "Content-Length": str(len(body))}
    async with httpx.AsyncClient(trust_env=False) as client:
        answer = await client.put(url, content=body, headers=headers)
    assert answer.status_code == 200, answer.text
    assert s3.read(key) == body
    head = s3._client().head_object(Bucket=s3.location.bucket, Key=s3.location.name(key))
    assert head["ContentType"] == "image/png"


async def test_s3_presigned_put_signs_the_type_and_length(s3: S3Store) -> None:
    """moto accepts any signature, so a server's refusal of another type or length cannot be
    shown here; what makes S3 refuse it can: the headers are in the signature (SigV4)."""
    presigned = await s3.presigned_put(new_key(), "image/jpeg", 1234, 600)
    assert presigned is not None
    query = parse_qs(urlsplit(presigned[0]).query)
    assert query["X-Amz-Algorithm"] == ["AWS4-HMAC-SHA256"]
    assert query["X-Amz-SignedHeaders"] == ["content-length;content-type;host"]
    assert query["X-Amz-Expires"] == ["600"]
    assert "x-amz-acl" not in presigned[0].lower()  # private: no ACL granted


# -- failures -------------------------------------------------------------------------------


async def test_s3_unreachable_is_unavailable_within_the_bound() -> None:
    """A refused connection, tried twice (`S3Limits.max_attempts`) with a jittered backoff
    below a second between: each call gives up well within seconds."""
    closed = free_port()  # nothing listens there
    location = S3Location.parse(f"s3://media?endpoint=http://127.0.0.1:{closed}")
    store = S3Store(location, access_key="a", secret_key="b")
    calls: list[Callable[[], Awaitable[object]]] = [
        lambda: store.size(new_key()),
        lambda: store.write_stream(new_key(), chunks_of(b"x" * 10), max_bytes=10),
        lambda: asyncio.to_thread(store.read, new_key()),
    ]
    try:
        for call in calls:
            started = time.monotonic()
            with pytest.raises(Unavailable):
                await call()
            assert time.monotonic() - started < 3
    finally:
        await store.aclose()
        store.close()


async def test_s3_a_server_that_never_answers_times_out() -> None:
    """Connections are accepted (by the kernel, into the backlog) and never answered: the
    read timeout bounds each attempt."""
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(16)
        port = silent.getsockname()[1]
        location = S3Location.parse(f"s3://media?endpoint=http://127.0.0.1:{port}")
        limits = S3Limits(read_timeout_s=0.5, max_attempts=2)
        store = S3Store(location, access_key="a", secret_key="b", limits=limits)
        try:
            started = time.monotonic()
            with pytest.raises(Unavailable):
                await store.open_read(new_key("large.webp"))
            assert time.monotonic() - started < 4  # two 0.5 s attempts and a backoff
        finally:
            await store.aclose()
            store.close()


async def test_s3_a_missing_bucket_is_a_config_error(s3_server: S3Server) -> None:
    store = s3_store(s3_server, unique_bucket("never-made"))
    try:
        with pytest.raises(ConfigError):
            store.read(new_key())
        with pytest.raises(ConfigError):
            await store.open_read(new_key("large.webp"))
    finally:
        await store.aclose()
        store.close()


def test_s3_ensure_bucket_makes_it_in_the_store_region(s3_server: S3Server) -> None:
    name = unique_bucket("regional")
    store = open_store(
        s3_server.location(name) + "&region=eu-west-1",
        access_key=s3_server.access_key,
        secret_key=s3_server.secret_key,
    )
    store.ensure_bucket()
    store.ensure_bucket()
    store.close()
    where = s3_server.client().get_bucket_location(Bucket=name)
    assert where["LocationConstraint"] == "eu-west-1"


async def test_s3_prefix_keeps_objects_apart(s3_server: S3Server, bucket: str) -> None:
    media_id = uuid.uuid4()
    key = media_key(media_id, "large.webp")
    keys = {"access_key": s3_server.access_key, "secret_key": s3_server.secret_key}
    tenant = open_store(s3_server.location(bucket, "tenant-a"), **keys)
    plain = open_store(s3_server.location(bucket), **keys)
    tenant.write(key, b"a")
    plain.write(key, b"plain")
    await tenant.delete_media(media_id)
    names = s3_server.client().list_objects_v2(Bucket=bucket, Prefix=str(media_id))
    assert [item["Key"] for item in names.get("Contents", [])] == [key]
    assert plain.read(key) == b"plain"
    for store in (tenant, plain):
        await store.aclose()
        store.close()


# -- opening a store ------------------------------------------------------------------------


def test_open_store_reads_the_location() -> None:
    assert isinstance(open_store("/var/lib/nova/media"), DirectoryStore)
    store = open_store(
        "s3://media/nova/a?endpoint=http://127.0.0.1:9000&region=eu-west-1&path_style=1"
    )
    assert isinstance(store, S3Store)
    assert store.location == S3Location(
        bucket="media",
        prefix="nova/a/",
        endpoint="http://127.0.0.1:9000",
        region="eu-west-1",
        path_style=True,
    )
    regional = open_store("s3://media", region="eu-north-1")
    assert isinstance(regional, S3Store)
    assert regional.location == S3Location(bucket="media", region="eu-north-1")


@pytest.mark.parametrize(
    "url",
    [
        "s3://",
        "s3://Bad_Bucket",
        "s3://media?endpoint=127.0.0.1:9000",
        "s3://media?unknown=1",
        "s3://media?path_style=maybe",
    ],
)
def test_open_store_refuses_bad_urls(url: str) -> None:
    with pytest.raises(ConfigError):
        open_store(url)


def test_open_store_wants_both_keys_or_neither() -> None:
    with pytest.raises(ConfigError):
        open_store("s3://media", access_key="only-one")


def iter_ranges() -> Iterator[tuple[int | None, int | None, int, tuple[int, int]]]:
    yield None, None, 0, (0, -1)
    yield None, None, 10, (0, 9)
    yield 2, None, 10, (2, 9)
    yield 2, 4, 10, (2, 4)
    yield -3, None, 10, (7, 9)
    yield -30, None, 10, (0, 9)
    yield 0, 100, 10, (0, 9)


@pytest.mark.parametrize(("start", "end", "total", "expected"), list(iter_ranges()))
def test_resolve_range(
    start: int | None, end: int | None, total: int, expected: tuple[int, int]
) -> None:
    assert resolve_range(start, end, total) == expected


@pytest.mark.parametrize(("start", "end", "total"), [(10, None, 10), (0, None, 0), (-1, None, 0)])
def test_resolve_range_past_the_end(start: int | None, end: int | None, total: int) -> None:
    with pytest.raises(RangeNotSatisfiable):
        resolve_range(start, end, total)
