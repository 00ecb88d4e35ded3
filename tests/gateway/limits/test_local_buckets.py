"""`LocalBuckets`: admitting at once while a bucket is far from its limit, against the test
stack's real Redis. Each test has its own key prefix, so buckets start full."""

from __future__ import annotations

import asyncio
import uuid

import pytest
import redis.asyncio as aioredis

from gateway.limits.local_buckets import LocalBuckets
from gateway.limits.rate_limits import Budget, RateLimiter

pytestmark = pytest.mark.stack

# Refills one token in about 17 minutes: what a test spends stays spent.
SLOW = Budget("slow", rate_per_s=0.001, burst=20)


@pytest.fixture
def limiter(redis: aioredis.Redis) -> RateLimiter:
    return RateLimiter(redis, prefix=f"test:lb:{uuid.uuid4().hex}")


def replica(limiter: RateLimiter, *, max_age_s: float = 60.0) -> LocalBuckets:
    return LocalBuckets(limiter, headroom=0.25, max_age_s=max_age_s)


async def tokens(redis: aioredis.Redis, limiter: RateLimiter, subject: str) -> float:
    return float(await redis.hget(limiter.key(SLOW, subject), "tokens") or "nan")


async def test_a_bucket_not_yet_heard_of_waits_then_admits_at_once(
    redis: aioredis.Redis, limiter: RateLimiter
) -> None:
    buckets = replica(limiter)
    assert not buckets.try_admit(SLOW, "alice")
    assert (await buckets.take(SLOW, "alice")).allowed
    assert buckets.try_admit(SLOW, "alice")
    await buckets.settle()
    # Both reached Redis: the one waited for and the one sent in the background.
    assert await tokens(redis, limiter, "alice") == pytest.approx(SLOW.burst - 2, abs=0.01)
    assert buckets.admitted_at_once == 1
    assert buckets.overruns == 0


async def test_one_replica_admits_exactly_the_burst(limiter: RateLimiter) -> None:
    """At once while a quarter of the burst stays spare, then waiting for Redis, which
    refuses once the burst is spent."""
    buckets = replica(limiter)
    outcomes: list[str] = []
    for _ in range(SLOW.burst + 5):
        if buckets.try_admit(SLOW, "bob"):
            outcomes.append("at once")
            continue
        await buckets.settle()  # the debits sent so far have landed
        outcomes.append("waited" if (await buckets.take(SLOW, "bob")).allowed else "refused")
    admitted = [o for o in outcomes if o != "refused"]
    assert len(admitted) == SLOW.burst
    assert outcomes[SLOW.burst :] == ["refused"] * 5
    # Within the last quarter of the burst, every request waited for Redis.
    assert outcomes[SLOW.burst - 5 : SLOW.burst] == ["waited"] * 5
    assert outcomes.count("at once") >= SLOW.burst // 2


async def test_debits_in_a_burst_of_requests_are_coalesced(
    redis: aioredis.Redis, limiter: RateLimiter
) -> None:
    buckets = replica(limiter)
    await buckets.take(SLOW, "carol")
    at_once = [buckets.try_admit(SLOW, "carol") for _ in range(10)]  # no await between
    await buckets.settle()
    assert at_once.count(True) == 10
    assert buckets.debits_sent == 1  # the ten went to Redis as one debit
    assert buckets.batches_sent == 1
    assert await tokens(redis, limiter, "carol") == pytest.approx(SLOW.burst - 11, abs=0.01)


async def test_debits_for_several_buckets_go_to_redis_in_one_call(
    redis: aioredis.Redis, limiter: RateLimiter
) -> None:
    buckets = replica(limiter)
    for name in ("gina", "hal", "ida"):
        await buckets.take(SLOW, name)
    for name in ("gina", "hal", "ida", "gina"):
        assert buckets.try_admit(SLOW, name)
    await buckets.settle()
    assert (buckets.batches_sent, buckets.debits_sent) == (1, 3)
    assert await tokens(redis, limiter, "gina") == pytest.approx(SLOW.burst - 3, abs=0.01)
    assert await tokens(redis, limiter, "hal") == pytest.approx(SLOW.burst - 2, abs=0.01)
    # A charge admitted while a batch is out goes in the next one.
    assert buckets.try_admit(SLOW, "hal")
    await asyncio.sleep(0)  # hal's batch is on its way
    assert buckets.try_admit(SLOW, "ida")
    await buckets.settle()
    assert buckets.batches_sent == 3
    assert await tokens(redis, limiter, "hal") == pytest.approx(SLOW.burst - 3, abs=0.01)
    assert await tokens(redis, limiter, "ida") == pytest.approx(SLOW.burst - 3, abs=0.01)


async def test_a_bucket_spent_elsewhere_is_seen_one_answer_late_and_put_in_debt(
    redis: aioredis.Redis, limiter: RateLimiter
) -> None:
    here, elsewhere = replica(limiter), replica(limiter)
    assert (await here.take(SLOW, "dave")).allowed  # `here` now believes 19 are left
    while (await elsewhere.take(SLOW, "dave")).allowed:  # another replica spends the rest
        pass
    assert here.try_admit(SLOW, "dave")  # admitted on the old view: the overrun
    await here.settle()
    assert here.overruns == 1
    assert await tokens(redis, limiter, "dave") < 0  # debited all the same, into debt
    assert not here.try_admit(SLOW, "dave")  # the answer corrected the view
    refused = await here.take(SLOW, "dave")
    assert not refused.allowed
    assert refused.retry_after_s > 0


async def test_a_stale_view_waits_for_redis(limiter: RateLimiter) -> None:
    buckets = replica(limiter, max_age_s=0.05)
    await buckets.take(SLOW, "erin")
    assert buckets.try_admit(SLOW, "erin")
    await buckets.settle()
    await asyncio.sleep(0.1)
    assert not buckets.try_admit(SLOW, "erin")


async def test_headroom_of_one_burst_never_admits_at_once(limiter: RateLimiter) -> None:
    buckets = LocalBuckets(limiter, headroom=1.0, max_age_s=60.0)
    await buckets.take(SLOW, "frank")
    assert not buckets.try_admit(SLOW, "frank")
