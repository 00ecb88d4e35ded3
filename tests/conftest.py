"""Session fixtures: one real test stack (PostgreSQL, Redis, broker, Ray + Serve) per run.

The stack lives in its own state dir and on its own ports (`deployments.stack.layout_for_tests`),
so it never touches a dev stack. A part that cannot start fails the run with its log;
nothing is skipped. Unit tests of pure logic request none of these fixtures.
"""

from __future__ import annotations

import os

from deployments.stack import Ray, Stack, layout_for_tests

# Ray reads its environment once, when it is first imported (test modules import it at
# collection): the loopback switch (without it Ray resolves 127.0.0.1 to the machine's
# external address) and token authentication must be set before that. Tests stay on
# loopback, always.
os.environ.update(Ray(layout_for_tests()).environment())

import asyncio
import shutil
import sys
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest

from deployments.settings import Settings
from storage.db import Database
from storage.events import Event
from storage.kafka.clients import TopicAdmin
from storage.kafka.topics import Topic, register_topics
from storage.outbox.rows import add_event

# The S3-API server (moto) the media store's S3 tests run against, started when one asks.
pytest_plugins = ["tests.support.s3"]

TEST_TABLES = """
CREATE TABLE IF NOT EXISTS test_applied (
    seq        bigint GENERATED ALWAYS AS IDENTITY,
    consumer   text NOT NULL,
    event_id   uuid NOT NULL,
    key        text NOT NULL,
    n          integer,
    applied_at timestamptz NOT NULL DEFAULT clock_timestamp()
);
CREATE TABLE IF NOT EXISTS test_fixes (event_id uuid PRIMARY KEY);
CREATE TABLE IF NOT EXISTS test_crash_marks (event_id uuid PRIMARY KEY);
"""


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Tests that seed a demo community run after all others but the chaos suite: its liked
    and trending posts become out-of-network candidates in every later viewer's ranked
    feed, which tests of the ranked feed's exact pages do not expect. The order is
    otherwise kept."""
    items.sort(key=_runs_late)


def _runs_late(item: pytest.Item) -> int:
    """0 for most tests; 1 for those that seed a demo community; 2 for the chaos suite,
    which kills and restarts the stack's parts and runs after everything else."""
    if item.get_closest_marker("chaos") is not None:
        return 2
    return 1 if item.get_closest_marker("seeds_demo") is not None else 0


@pytest.fixture(scope="session")
def stack() -> Iterator[Stack]:
    layout = layout_for_tests()
    stack = Stack(layout)
    stack.down()  # whatever a previous, interrupted run left behind
    if layout.state_dir.exists() and stack.embedded()["postgresql"]:
        shutil.rmtree(layout.state_dir)
    try:
        env = stack.up()
    except BaseException:
        stack.down()  # whatever did start; the error (with the failing part's log) stands
        raise
    os.environ.update(env)
    try:
        yield stack
    finally:
        import ray

        ray.shutdown()
        stack.down()


@pytest.fixture(scope="session")
def settings(stack: Stack) -> Settings:
    return Settings.from_env(stack.environment())


@pytest.fixture(scope="session")
def deployed(stack: Stack, settings: Settings) -> Settings:
    """The Serve app, relays, consumers and shards running on the test cluster; returns
    the settings they run with (`app_settings`)."""
    import ray

    from deployments.app import deploy

    env = stack.environment()
    ray.init(address=env["RAY_ADDRESS"], namespace="nova", log_to_driver=False)
    deployed_settings = app_settings(settings).replace(grpc_port=stack.layout.grpc_port)
    deploy(deployed_settings, http_host="127.0.0.1", http_port=stack.layout.http_port)
    return deployed_settings


def app_settings(settings: Settings) -> Settings:
    """What the test deployment runs with: two gateway replicas (cache invalidation and
    subscriptions must work across them), and per-IP budgets wide enough for a suite whose
    every request comes from 127.0.0.1. Per-account budgets keep production values. The
    per-user query budget is lowered (20/s, burst 100, from 50/s, burst 200) so that the
    rate-limit test can outrun it even on a loaded 2-core machine, where two replicas
    behind Serve's proxy answer only about 100 requests a second. Authors with more than 5
    followers count as celebrities, so hybrid fan-out can be tested with a handful."""
    return settings.replace(
        gateway_replicas=2,
        rate_user_queries_per_s=20.0,
        rate_user_queries_burst=100,
        # A "celebrity" (merged at read time instead of fanned out) within a test's reach.
        fanout_max_followers=5,
        # Fewer shard processes on 2 cores; routing and recovery do not depend on N.
        counter_shards=2,
        timeline_shards=2,
        rate_ip_queries_per_s=2_000.0,
        rate_ip_queries_burst=20_000,
        rate_ip_mutations_per_s=2_000.0,
        rate_ip_mutations_burst=20_000,
        # Key rotations reach every replica's signer quickly enough to test.
        signing_key_refresh_s=2.0,
        # Posts and comments with these are held for review (test_moderation).
        moderation_blocked_words="heldword",
        moderation_blocked_domains="held.example",
        # A deleted post's pictures stop being served within a test's wait.
        media_public_recheck_s=1.0,
        # Erasures and their scrubs run within a test's wait (test_account_deletion).
        erasure_poll_s=1.0,
        erasure_scrub_after_s=3.0,
        # Every LATEST page keeps its features, so a test's one impression has them.
        ranking_latest_feature_sample=1.0,
    )


@pytest.fixture(scope="session")
async def db(deployed: Settings) -> AsyncIterator[Database]:
    database = await Database.connect(deployed, application_name="nova-tests")
    async with database.connection() as conn:
        await conn.execute(TEST_TABLES)
    yield database
    await database.close()


@pytest.fixture(scope="session")
def http_url(stack: Stack, deployed: Settings) -> str:
    return f"http://127.0.0.1:{stack.layout.http_port}"


class Topics:
    """Creates test topics, registered like catalogue topics (the stack is new each run)."""

    def __init__(self, db: Database, settings: Settings) -> None:
        self._db = db
        self._settings = settings

    async def create(self, name: str, partitions: int = 3) -> str:
        async with self._db.transaction() as conn:
            await register_topics(conn, [Topic(name, partitions, "test key")])
        admin = TopicAdmin(self._settings)
        try:
            mismatched = await admin.ensure({name: partitions})
        finally:
            await admin.close()
        assert not mismatched, mismatched
        return name


@pytest.fixture
async def topics(db: Database, deployed: Settings) -> Topics:
    return Topics(db, deployed)


class Consumers:
    """Starts test consumer actors and kills them when the test ends."""

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self.handles: list[Any] = []

    def start(self, path: str) -> Any:
        from deployments.workers import ensure_consumer

        handle = ensure_consumer(self._settings, path)[0]
        self.handles.append(handle)
        return handle

    def kill_all(self) -> None:
        import ray

        for handle in self.handles:
            ray.kill(handle, no_restart=True)


@pytest.fixture
def consumers(deployed: Settings) -> Iterator[Consumers]:
    started = Consumers(deployed)
    yield started
    started.kill_all()


async def write_events(
    db: Database, topic: str, keys_and_numbers: list[tuple[str, int]], **payload: Any
) -> list[Event]:
    """Commit one event per `(key, n)` in its own transaction, in list order."""
    events = []
    for key, n in keys_and_numbers:
        event = Event(type="test.event", aggregate_id=key, payload={"n": n, **payload})
        async with db.transaction() as conn:
            await add_event(conn, event, topic=topic)
        events.append(event)
    return events


async def wait_until(
    predicate: Any, *, timeout_s: float, interval_s: float = 0.2, message: str = "condition"
) -> Any:
    """Poll an async predicate until it returns a truthy value; fail with `message`."""
    deadline = asyncio.get_running_loop().time() + timeout_s
    last: Any = None
    while asyncio.get_running_loop().time() < deadline:
        last = await predicate()
        if last:
            return last
        await asyncio.sleep(interval_s)
    raise AssertionError(f"timed out after {timeout_s}s waiting for {message} (last: {last!r})")


async def applied(db: Database, consumer: str) -> list[Any]:
    async with db.connection() as conn:
        rows: list[Any] = await conn.fetch(
            "SELECT event_id, key, n FROM test_applied WHERE consumer = $1 ORDER BY seq",
            consumer,
        )
    return rows


async def nova_cli(*args: str, timeout_s: float = 60) -> tuple[int, str, str]:
    """Run the real `nova` command line against the test stack: exit code, stdout, stderr."""
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "deployments.cli",
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=os.environ.copy(),
    )
    stdout, stderr = await asyncio.wait_for(process.communicate(), timeout_s)
    return process.returncode or 0, stdout.decode(), stderr.decode()


async def nova(*args: str, timeout_s: float = 60) -> str:
    """Run the real `nova` command line against the test stack; its stdout, once it
    succeeded."""
    code, stdout, stderr = await nova_cli(*args, timeout_s=timeout_s)
    assert code == 0, f"nova {' '.join(args)} failed: {stderr}"
    return stdout


@pytest.fixture
async def redis(settings: Settings) -> AsyncIterator[Any]:
    """A client of the test stack's Redis, as replicas make them (`make_redis`)."""
    from storage.redis_client import make_redis

    client = make_redis(settings)
    try:
        yield client
    finally:
        await client.aclose()


@pytest.fixture
async def dead_redis() -> AsyncIterator[Any]:
    """A Redis client for 127.0.0.1 on a port nothing listens on: short timeouts, no
    retries, for tests of what happens when Redis does not answer."""
    import socket

    import redis.asyncio as aioredis
    from redis.asyncio.retry import Retry
    from redis.backoff import NoBackoff

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    client = aioredis.Redis(
        host="127.0.0.1",
        port=port,
        socket_timeout=0.5,
        socket_connect_timeout=0.5,
        retry=Retry(NoBackoff(), 0),
    )
    try:
        yield client
    finally:
        await client.aclose()
