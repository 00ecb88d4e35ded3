"""The embedded stack heals itself: a server killed with SIGKILL is started again by the
supervisor, and Nova works through it afterwards; a server stopped on purpose stays
stopped."""

from __future__ import annotations

import asyncio
import os
import signal
import time
import uuid
from pathlib import Path
from typing import Any

import pytest

from deployments.settings import Settings
from deployments.stack import Stack, port_open
from deployments.stack.supervisor import pid_in
from storage.db import Database
from tests.conftest import wait_until
from tests.support.social import CREATE_POST, FOLLOW, Member, call, feed_ids, make_members

pytestmark = pytest.mark.stack

RECOVERY_WAIT_S = 60


def _restarts(stack: Stack, part: str) -> int:
    parts = stack.supervision().get("parts", {})
    return int(parts.get(part, {}).get("restarts", 0))


async def _kill_and_wait(stack: Stack, part: str, pid_file: Path, port: int) -> float:
    """SIGKILL the server, wait for the supervisor to have started it again; the seconds
    from the kill until it listens."""
    assert stack.supervision()["running"], "the supervisor should run beside the stack"
    before = _restarts(stack, part)
    pid = pid_in(pid_file)
    assert pid is not None, f"{part} has no pid file at {pid_file}"
    killed_at = time.monotonic()
    os.kill(pid, signal.SIGKILL)

    async def back() -> bool:
        return _restarts(stack, part) > before and port_open(port)

    await wait_until(back, timeout_s=RECOVERY_WAIT_S, message=f"{part} started again")
    state = stack.supervision()["parts"][part]
    assert state["state"] == "running", state
    assert pid_in(pid_file) != pid
    return time.monotonic() - killed_at


async def _post_until_acknowledged(http_url: str, author: Member, text: str) -> str:
    """createPost with one idempotency key, retried while a server comes back: at most one
    post results, whatever the failed attempts did."""
    key = str(uuid.uuid4())
    last: Any = None
    for _ in range(60):
        reply = await call(http_url, author, CREATE_POST, text=text, key=key)
        if not reply.errors:
            return str(reply.data["createPost"]["id"])
        last = reply.errors
        await asyncio.sleep(0.5)
    raise AssertionError(f"createPost not acknowledged after the restart: {last}")


async def _pair(db: Database, deployed: Settings, http_url: str) -> tuple[Member, Member]:
    author, follower = await make_members(db, deployed, 2, prefix="heal")
    (await call(http_url, follower, FOLLOW, id=author.id)).ok()
    return author, follower


async def _reaches_feed(http_url: str, follower: Member, post_id: str) -> None:
    async def there() -> bool:
        return post_id in await feed_ids(http_url, follower)

    await wait_until(there, timeout_s=RECOVERY_WAIT_S, message="the post in the follower's feed")


async def test_a_killed_redis_comes_back_and_posts_reach_feeds(
    stack: Stack, db: Database, deployed: Settings, http_url: str
) -> None:
    author, follower = await _pair(db, deployed, http_url)
    await _kill_and_wait(stack, "redis", stack.redis.pid_file, stack.layout.redis_port)
    post_id = await _post_until_acknowledged(http_url, author, "after redis came back")
    await _reaches_feed(http_url, follower, post_id)


async def test_a_killed_broker_comes_back_and_posts_reach_feeds(
    stack: Stack, db: Database, deployed: Settings, http_url: str
) -> None:
    author, follower = await _pair(db, deployed, http_url)
    await _kill_and_wait(stack, "kafka", stack.broker.pid_file, stack.layout.kafka_port)
    post_id = await _post_until_acknowledged(http_url, author, "after the broker came back")
    await _reaches_feed(http_url, follower, post_id)


async def test_a_killed_postgresql_comes_back_and_writes_are_acknowledged(
    stack: Stack, db: Database, deployed: Settings, http_url: str
) -> None:
    author, follower = await _pair(db, deployed, http_url)
    pid_file = stack.postgres.data / "postmaster.pid"
    await _kill_and_wait(stack, "postgresql", pid_file, stack.layout.pg_port)
    post_id = await _post_until_acknowledged(http_url, author, "after postgresql came back")
    await _reaches_feed(http_url, follower, post_id)
    stored = await wait_until(
        lambda: db.fetchval("SELECT count(*) FROM posts WHERE id = $1", uuid.UUID(post_id)),
        timeout_s=RECOVERY_WAIT_S,
        message="the post in PostgreSQL",
    )
    assert stored == 1


async def test_a_killed_mail_sink_comes_back(stack: Stack) -> None:
    await _kill_and_wait(stack, "smtp", stack.smtp.pid_file, stack.layout.smtp_port)


async def test_a_killed_prometheus_comes_back(stack: Stack) -> None:
    await _kill_and_wait(
        stack, "prometheus", stack.prometheus.pid_file, stack.layout.prometheus_port
    )


async def test_a_server_stopped_on_purpose_stays_stopped(stack: Stack) -> None:
    before = _restarts(stack, "smtp")
    stack.smtp.stop()
    try:
        await asyncio.sleep(2.0)  # four of the supervisor's looks
        assert not stack.smtp.running()
        assert _restarts(stack, "smtp") == before
    finally:
        stack.smtp.start()
    assert stack.smtp.running()
