"""Registered persisted queries never expire; APQ documents do. Against the real test Redis.

Each test works in its own keyspaces (unique `prefix` and `registry_prefix`), reads TTLs
with real TTL/PTTL, and sees which commands the store sent through Redis's MONITOR feed,
narrowed to the test's keys. "Redis is down" is a client whose loopback port is closed:
for a store that must first fill its LRU, the client reaches Redis through a relay that
the test then cuts, the way asyncpg's `test_adversity.py` cuts connections.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import redis.asyncio as aioredis
from redis.asyncio.client import Monitor

from deployments import cli
from deployments.cli import operations
from deployments.settings import Settings
from gateway.transport.apq import (
    PERSISTED_QUERY_NOT_FOUND,
    PERSISTED_QUERY_REQUIRED,
    PersistedQueryError,
    PersistedQueryStore,
    query_hash,
    resolve_query,
)
from storage.errors import Unavailable
from storage.redis_client import make_redis
from tests.conftest import wait_until

pytestmark = pytest.mark.stack

TTL_S = 3600
QUERY = "query Registered { __typename }"
SHA = query_hash(QUERY)
LOOPBACK = "127.0.0.1"
# Longer than `gateway.transport.apq._MAX_REFRESH_S`: the LRU re-reads Redis after this.
PAST_REFRESH_S = 301
# How long MONITOR may take to show a command Redis has already run.
FEED_TIMEOUT_S = 5.0


def _redis_address(settings: Settings) -> tuple[str, int]:
    parts = urlsplit(settings.redis_url)
    # Tests stay on loopback, always (see tests/conftest.py); the URL holds a password.
    assert parts.hostname == LOOPBACK, f"the test Redis is not on {LOOPBACK}: {parts.hostname}"
    assert parts.port is not None, "the test Redis URL names no port"
    return parts.hostname, parts.port


@pytest.fixture
async def redis(settings: Settings) -> AsyncIterator[aioredis.Redis]:
    _redis_address(settings)
    client = make_redis(settings)
    try:
        yield client
    finally:
        await client.aclose()


@dataclass(frozen=True)
class Keyspaces:
    """One test's APQ and registry prefixes on the real Redis; `store()` is a replica."""

    redis: aioredis.Redis
    apq: str = field(default_factory=lambda: f"test:apq:{uuid.uuid4().hex}")
    registry: str = field(default_factory=lambda: f"test:registered:{uuid.uuid4().hex}")

    def store(
        self, *, redis: aioredis.Redis | None = None, local_cache_size: int = 1000
    ) -> PersistedQueryStore:
        """A store with an empty LRU, as a new replica has, on these keyspaces."""
        return PersistedQueryStore(
            self.redis if redis is None else redis,
            ttl_s=TTL_S,
            local_cache_size=local_cache_size,
            prefix=self.apq,
            registry_prefix=self.registry,
        )

    def owns(self, key: str) -> bool:
        return key.startswith((f"{self.apq}:", f"{self.registry}:"))

    async def keys(self) -> list[bytes]:
        return [
            key
            for prefix in (self.apq, self.registry)
            async for key in self.redis.scan_iter(match=f"{prefix}:*")
        ]


@pytest.fixture
async def keyspaces(redis: aioredis.Redis) -> AsyncIterator[Keyspaces]:
    spaces = Keyspaces(redis)
    yield spaces
    # Registered documents never expire: leave nothing behind on the shared server.
    leftover = await spaces.keys()
    if leftover:
        await redis.delete(*leftover)


class Sent:
    """The commands Redis received on one test's keys, from its MONITOR feed.

    MONITOR shows every client of the server; only keys in the test's keyspaces count.
    """

    def __init__(self, client: aioredis.Redis, feed: Monitor, keyspaces: Keyspaces) -> None:
        self._client = client
        self._feed = feed
        self._keyspaces = keyspaces

    async def take(self) -> list[tuple[str, str]]:
        """`(COMMAND, key)` for each command on the test's keys since the last call."""
        # Redis runs commands one at a time and feeds them to MONITOR in that order: once
        # the marker shows up, everything the store sent before it has been seen.
        marker = f"{self._keyspaces.apq}:marker:{uuid.uuid4().hex}"
        await self._client.exists(marker)
        taken: list[tuple[str, str]] = []
        while True:
            info = await asyncio.wait_for(self._feed.next_command(), FEED_TIMEOUT_S)
            name, _, args = info["command"].partition(" ")
            key = args.split(" ", 1)[0]
            if key == marker:
                return taken
            if self._keyspaces.owns(key):
                taken.append((name.upper(), key))


@pytest.fixture
async def sent(settings: Settings, keyspaces: Keyspaces) -> AsyncIterator[Sent]:
    client = make_redis(settings)
    try:
        async with client.monitor() as feed:
            yield Sent(client, feed, keyspaces)
    finally:
        await client.aclose()


class Relay:
    """A loopback TCP relay to the test Redis; after `cut()` its port is closed."""

    def __init__(self, target: tuple[str, int]) -> None:
        self._target = target
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self._links: set[asyncio.Task[Any]] = set()

    async def start(self) -> int:
        self._server = await asyncio.start_server(self._link, LOOPBACK, 0)
        port: int = self._server.sockets[0].getsockname()[1]
        return port

    async def _link(self, client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._links.add(task)
        self._writers.add(client_w)
        redis_r, redis_w = await asyncio.open_connection(*self._target)
        self._writers.add(redis_w)
        await asyncio.gather(_pipe(client_r, redis_w), _pipe(redis_r, client_w))

    async def cut(self) -> None:
        """Stop listening and drop every relayed connection, both ways."""
        if self._server is not None:
            self._server.close()
        for writer in self._writers:
            writer.close()
        await asyncio.gather(*self._links, return_exceptions=True)
        if self._server is not None:
            # After the links: from 3.12 this also waits for every connection to close.
            await self._server.wait_closed()


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    except ConnectionError:
        pass  # the other side went away: this direction of the link is over
    finally:
        writer.close()


@dataclass(frozen=True)
class Cuttable:
    """A real Redis client, built by `make_redis`, whose connection to Redis can be cut."""

    client: aioredis.Redis
    relay: Relay

    async def cut(self) -> None:
        await self.relay.cut()


@pytest.fixture
async def cuttable(settings: Settings) -> AsyncIterator[Cuttable]:
    relay = Relay(_redis_address(settings))
    port = await relay.start()
    parts = urlsplit(settings.redis_url)
    auth, _, _ = parts.netloc.rpartition("@")
    netloc = f"{auth}@{LOOPBACK}:{port}" if auth else f"{LOOPBACK}:{port}"
    # Short timeouts: once cut, each command fails fast instead of waiting out 2 s.
    relayed = settings.replace(
        redis_url=parts._replace(netloc=netloc).geturl(), redis_timeout_s=0.5
    )
    client = make_redis(relayed)
    try:
        yield Cuttable(client, relay)
    finally:
        await client.aclose()
        await relay.cut()


class Clock:
    """Stands in for the `time` module inside `gateway.transport.apq` (no server is involved)."""

    def __init__(self) -> None:
        self.now = 1000.0

    def monotonic(self) -> float:
        return self.now


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    clock = Clock()
    monkeypatch.setattr("gateway.transport.apq.time", clock)
    return clock


def apq(sha: str) -> dict[str, Any]:
    return {"persistedQuery": {"version": 1, "sha256Hash": sha}}


async def expire_now(redis: aioredis.Redis, key: str) -> None:
    """Let Redis expire `key` itself: a 1 ms TTL, then wait until it is gone."""
    assert await redis.pexpire(key, 1)

    async def gone() -> bool:
        return await redis.exists(key) == 0

    await wait_until(gone, timeout_s=5, interval_s=0.005, message=f"{key} to expire")


async def assert_apq_ttl(redis: aioredis.Redis, key: str) -> None:
    ttl_ms = await redis.pttl(key)
    assert (TTL_S - 5) * 1000 < ttl_ms <= TTL_S * 1000, ttl_ms


async def test_registered_documents_get_no_ttl_and_apq_documents_keep_theirs(
    redis: aioredis.Redis, keyspaces: Keyspaces
) -> None:
    store = keyspaces.store()
    other = "query Sent { __typename }"
    await store.register(SHA, QUERY)
    await store.put(query_hash(other), other)
    assert store.registered_key(SHA) != store.key(SHA)
    assert await redis.get(store.registered_key(SHA)) == QUERY.encode()
    assert await redis.ttl(store.registered_key(SHA)) == -1  # exists, no expiry
    assert await redis.exists(store.key(SHA)) == 0
    await assert_apq_ttl(redis, store.key(query_hash(other)))


async def test_reregistering_removes_a_ttl_left_on_the_key(
    redis: aioredis.Redis, keyspaces: Keyspaces
) -> None:
    store = keyspaces.store()
    await redis.set(store.registered_key(SHA), QUERY.encode(), ex=60)
    assert 0 < await redis.ttl(store.registered_key(SHA)) <= 60
    await store.register(SHA, QUERY)
    assert await redis.ttl(store.registered_key(SHA)) == -1


async def test_register_refuses_a_hash_that_does_not_match(keyspaces: Keyspaces) -> None:
    with pytest.raises(ValueError, match="not the SHA-256"):
        await keyspaces.store().register(SHA, "{ other }")
    assert await keyspaces.keys() == []


async def test_the_two_keyspaces_must_differ(redis: aioredis.Redis) -> None:
    with pytest.raises(ValueError, match="registry_prefix"):
        PersistedQueryStore(redis, ttl_s=TTL_S, prefix="a", registry_prefix="a")


async def test_persisted_only_serves_registered_documents_from_the_registry(
    redis: aioredis.Redis, keyspaces: Keyspaces, sent: Sent
) -> None:
    await keyspaces.store().register(SHA, QUERY)
    await sent.take()
    served = keyspaces.store()  # an empty LRU: the answer comes from Redis
    assert await resolve_query(served, None, apq(SHA), persisted_only=True) == (QUERY, SHA)
    assert await resolve_query(served, QUERY, apq(SHA), persisted_only=True) == (QUERY, SHA)
    # Only the registry was read (GET, never GETEX), and nothing touched a TTL.
    assert set(await sent.take()) == {("GET", served.registered_key(SHA))}
    assert await redis.ttl(served.registered_key(SHA)) == -1
    assert await redis.exists(served.key(SHA)) == 0


async def test_persisted_only_does_not_serve_apq_documents(keyspaces: Keyspaces) -> None:
    text = "query Sent { __typename }"
    sha = query_hash(text)
    store = keyspaces.store()
    assert await resolve_query(store, text, apq(sha), persisted_only=False) == (text, sha)
    # Same replica (the document is in its LRU) and a fresh one: neither runs it.
    for replica in (store, keyspaces.store()):
        with pytest.raises(PersistedQueryError) as hash_only:
            await resolve_query(replica, None, apq(sha), persisted_only=True)
        assert (hash_only.value.status, hash_only.value.code) == (200, PERSISTED_QUERY_NOT_FOUND)
        with pytest.raises(PersistedQueryError) as with_text:
            await resolve_query(replica, text, apq(sha), persisted_only=True)
        assert (with_text.value.status, with_text.value.code) == (400, PERSISTED_QUERY_REQUIRED)


async def test_persisted_only_requests_register_nothing(keyspaces: Keyspaces) -> None:
    store = keyspaces.store()
    with pytest.raises(PersistedQueryError):
        await resolve_query(store, QUERY, apq(SHA), persisted_only=True)
    assert await keyspaces.keys() == []


async def test_registered_documents_are_served_by_hash_without_persisted_only(
    keyspaces: Keyspaces,
) -> None:
    await keyspaces.store().register(SHA, QUERY)
    served = keyspaces.store()
    assert await resolve_query(served, None, apq(SHA), persisted_only=False) == (QUERY, SHA)
    assert await served.contains(SHA)


async def test_a_registered_document_outlives_the_apq_ttl(
    redis: aioredis.Redis, keyspaces: Keyspaces, clock: Clock
) -> None:
    store = keyspaces.store()
    await store.register(SHA, QUERY)
    await store.put(SHA, QUERY)  # a client sent it through APQ too
    # The APQ copy expires; the LRU re-checks Redis and still finds the registered one.
    await expire_now(redis, store.key(SHA))
    clock.now += TTL_S
    assert await resolve_query(store, None, apq(SHA), persisted_only=False) == (QUERY, SHA)
    assert await resolve_query(store, None, apq(SHA), persisted_only=True) == (QUERY, SHA)
    assert await redis.ttl(store.registered_key(SHA)) == -1


async def test_an_expired_apq_document_is_looked_for_in_the_registry(
    redis: aioredis.Redis, keyspaces: Keyspaces, clock: Clock
) -> None:
    store = keyspaces.store()
    await store.put(SHA, QUERY)
    await keyspaces.store().register(SHA, QUERY)  # by another process: this LRU says APQ
    await expire_now(redis, store.key(SHA))
    clock.now += TTL_S
    assert await store.get(SHA) == QUERY


async def test_the_lru_rechecks_a_registered_document_without_touching_ttls(
    redis: aioredis.Redis, keyspaces: Keyspaces, sent: Sent, clock: Clock
) -> None:
    store = keyspaces.store()
    await store.register(SHA, QUERY)
    await sent.take()
    assert await store.get_registered(SHA) == QUERY
    assert await sent.take() == []  # fresh in the LRU: no round trip
    clock.now += PAST_REFRESH_S
    assert await store.get_registered(SHA) == QUERY
    assert await sent.take() == [("GET", store.registered_key(SHA))]
    assert await redis.ttl(store.registered_key(SHA)) == -1


async def test_a_registered_document_an_operator_deleted_is_forgotten(
    redis: aioredis.Redis, keyspaces: Keyspaces, clock: Clock
) -> None:
    store = keyspaces.store()
    await store.register(SHA, QUERY)
    assert await redis.delete(store.registered_key(SHA)) == 1
    clock.now += PAST_REFRESH_S
    assert await store.get_registered(SHA) is None
    assert await store.get(SHA) is None


async def test_redis_down_with_the_document_in_the_lru_still_serves_it(
    keyspaces: Keyspaces, cuttable: Cuttable, clock: Clock
) -> None:
    store = keyspaces.store(redis=cuttable.client)
    await store.register(SHA, QUERY)
    await cuttable.cut()  # from here on the client's loopback port is closed
    clock.now += PAST_REFRESH_S
    assert await store.get_registered(SHA) == QUERY
    with pytest.raises(Unavailable):
        await keyspaces.store(redis=cuttable.client).get_registered(SHA)


async def test_without_an_lru_every_lookup_reads_redis(keyspaces: Keyspaces, sent: Sent) -> None:
    store = keyspaces.store(local_cache_size=0)
    await store.register(SHA, QUERY)
    await sent.take()
    assert await store.get_registered(SHA) == QUERY
    assert await store.get_registered(SHA) == QUERY
    assert await sent.take() == [("GET", store.registered_key(SHA))] * 2


async def test_queries_add_registers_each_file_without_a_ttl(
    redis: aioredis.Redis,
    settings: Settings,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    # `nova queries add` writes to the default keyspaces: unique documents keep this test's
    # keys apart from everyone else's there.
    monkeypatch.setattr(operations, "load_settings", lambda: settings)
    texts = [f"query Registered{uuid.uuid4().hex} {{ __typename }}" for _ in range(2)]
    files = [tmp_path / "registered.graphql", tmp_path / "other.graphql"]
    for path, text in zip(files, texts, strict=True):
        path.write_text(text)
    store = PersistedQueryStore(redis, ttl_s=settings.persisted_query_ttl_s)
    keys = [store.registered_key(query_hash(text)) for text in texts]

    args = cli.build_parser().parse_args(["queries", "add", *map(str, files)])
    try:
        # The command runs its own event loop (`asyncio.run`), so not on this one.
        assert await asyncio.to_thread(args.func, args) == 0
        for key, text in zip(keys, texts, strict=True):
            assert await redis.get(key) == text.encode()
            assert await redis.ttl(key) == -1
            assert await redis.exists(store.key(query_hash(text))) == 0
    finally:
        await redis.delete(*keys)
    printed = capsys.readouterr().out.splitlines()
    assert printed == [
        f"{query_hash(text)}  {path}" for text, path in zip(texts, files, strict=True)
    ]
