"""Each replica's mirror of the revocations, against the test stack's real Redis and
PostgreSQL: two `Revocations` are two replicas, each with its own Redis connections."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest
import redis.asyncio as aioredis

from deployments.settings import Settings
from gateway.auth.revocation import REVOKED, Revocations
from gateway.auth.tokens import AccessClaims
from gateway.errors import Unauthenticated
from storage.db import Database

pytestmark = pytest.mark.stack


def claims() -> AccessClaims:
    now = int(time.time())
    return AccessClaims(
        user_id=uuid.uuid4(),
        roles=("user",),
        jti=uuid.uuid4().hex,
        session_id=uuid.uuid4(),
        issued_at=now,
        expires_at=now + 900,
    )


async def eventually(condition: Callable[[], bool], timeout_s: float = 5.0) -> None:
    """Poll `condition` every 10 ms, for at most `timeout_s`."""
    for _ in range(int(timeout_s * 100)):
        if condition():
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"not true within {timeout_s} s")


@pytest.fixture
async def replicas(
    deployed: Settings, db: Database
) -> AsyncIterator[Callable[..., Awaitable[Revocations]]]:
    """Starts `Revocations` on their own Redis clients, named so a test can find their
    connections; all are closed at the end."""
    opened: list[tuple[Revocations, aioredis.Redis]] = []

    async def start(name: str = "", *, started: bool = True) -> Revocations:
        client = aioredis.Redis.from_url(
            deployed.redis_url, client_name=name or f"mirror-{uuid.uuid4().hex[:8]}"
        )
        revocations = Revocations(client, db, access_ttl_s=deployed.access_token_ttl_s)
        opened.append((revocations, client))
        if started:
            await revocations.start()
            assert revocations.in_sync
        return revocations

    yield start
    for revocations, client in opened:
        await revocations.close()
        await client.aclose()


async def test_a_logout_reaches_another_replicas_mirror(
    replicas: Callable[..., Awaitable[Revocations]],
) -> None:
    here, there = await replicas(), await replicas()
    token = claims()
    assert here.known(token) is False
    assert there.known(token) is False
    await here.deny_token(token)
    assert here.known(token) is True  # the replica that revoked knows before it answers
    await eventually(lambda: there.known(token) is True)
    with pytest.raises(Unauthenticated):
        await there.check(token)


async def test_a_revoked_session_refuses_every_token_of_it(
    replicas: Callable[..., Awaitable[Revocations]],
) -> None:
    here, there = await replicas(), await replicas()
    first = claims()
    second = AccessClaims(**{**first.__dict__, "jti": uuid.uuid4().hex})
    await here.revoke_sessions([first.session_id])
    await eventually(lambda: there.known(second) is True)
    assert here.known(second) is True


async def test_a_replica_that_starts_later_loads_what_was_revoked_before(
    replicas: Callable[..., Awaitable[Revocations]],
) -> None:
    here = await replicas()
    token = claims()
    await here.deny_token(token)
    later = await replicas()
    assert later.known(token) is True


async def test_before_its_first_sync_a_replica_asks_redis(
    replicas: Callable[..., Awaitable[Revocations]],
) -> None:
    here = await replicas()
    cold = await replicas(started=False)
    revoked, clean = claims(), claims()
    await here.deny_token(revoked)
    assert cold.known(revoked) is None  # no mirror yet: it cannot say
    with pytest.raises(Unauthenticated):
        await cold.check(revoked)
    await cold.check(clean)


async def test_a_replica_that_lost_its_subscription_resyncs_from_the_set(
    deployed: Settings, replicas: Callable[..., Awaitable[Revocations]]
) -> None:
    """A revocation whose announcement the replica missed (written to the set alone, as if
    published while its connection was down) is known once it has reconnected."""
    name = f"mirror-{uuid.uuid4().hex[:8]}"
    mirror = await replicas(name)
    missed = claims()
    admin = aioredis.Redis.from_url(deployed.redis_url)
    try:
        await admin.zadd(REVOKED, {f"jti:{missed.jti}": time.time() + 600})
        assert mirror.known(missed) is False  # nothing was announced
        subscribed = [
            client for client in await admin.client_list(_type="pubsub") if client["name"] == name
        ]
        assert len(subscribed) == 1
        await admin.client_kill_filter(_id=subscribed[0]["id"])
    finally:
        await admin.aclose()
    await eventually(lambda: mirror.lost_sync == 1 and mirror.in_sync)
    assert mirror.known(missed) is True


async def test_a_revocation_reaches_whoever_watches_its_token_on_every_replica(
    replicas: Callable[..., Awaitable[Revocations]],
) -> None:
    """What ends a revoked token's open WebSockets: a watch on the token hears its own
    revocation (by jti or by session) on any replica, once; other tokens' watches do not."""
    here, there = await replicas(), await replicas()
    session_token, jti_token, bystander, gone = claims(), claims(), claims(), claims()
    heard: list[str] = []
    there.watch(session_token, lambda: heard.append("session"))
    there.watch(jti_token, lambda: heard.append("jti"))
    there.watch(bystander, lambda: heard.append("bystander"))
    stop = there.watch(gone, lambda: heard.append("unwatched"))
    stop()
    await here.revoke_sessions([session_token.session_id, gone.session_id])
    await here.deny_token(jti_token)
    await eventually(lambda: sorted(heard) == ["jti", "session"])
    await here.revoke_sessions([session_token.session_id])  # again: heard once
    await here.deny_token(bystander)
    await eventually(lambda: "bystander" in heard)
    assert sorted(heard) == ["bystander", "jti", "session"]
    # Watching a token revoked already is heard at once.
    there.watch(jti_token, lambda: heard.append("late"))
    assert heard[-1] == "late"
