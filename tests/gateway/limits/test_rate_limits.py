"""Rate limits and persisted queries against the test stack's real Redis."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable

import pytest
import redis.asyncio as aioredis

from deployments.settings import Settings
from gateway.limits.rate_limits import Budget, RateLimiter, budgets
from gateway.transport.apq import (
    PERSISTED_QUERY_NOT_FOUND,
    PersistedQueryError,
    PersistedQueryStore,
    query_hash,
    resolve_query,
    store_sent_query,
)
from storage.errors import Unavailable

pytestmark = pytest.mark.stack

TTL_S = 3600


def _prefix(kind: str) -> str:
    return f"test:{kind}:{uuid.uuid4().hex}"


def _replicas(redis: aioredis.Redis) -> Callable[[], PersistedQueryStore]:
    """Makes stores with empty LRUs, as replicas have, on one test's fresh keyspaces."""
    apq, registry = _prefix("apq"), _prefix("registered")
    return lambda: PersistedQueryStore(redis, ttl_s=TTL_S, prefix=apq, registry_prefix=registry)


def _subject() -> str:
    return uuid.uuid4().hex


def _apq(sha: str, version: object = 1) -> dict[str, object]:
    return {"persistedQuery": {"version": version, "sha256Hash": sha}}


def _query() -> str:
    return f"query Q{uuid.uuid4().hex} {{ __typename }}"


# Rate limits.


async def test_burst_is_allowed_then_denied_with_retry_after(redis: aioredis.Redis) -> None:
    limiter = RateLimiter(redis, prefix=_prefix("rl"))
    budget = Budget("burst", rate_per_s=2.0, burst=5)
    subject = _subject()
    decisions = [await limiter.take(budget, subject) for _ in range(5)]
    assert all(d.allowed and d.retry_after_s == 0 for d in decisions)
    assert [d.remaining for d in decisions] == [4, 3, 2, 1, 0]
    denied = await limiter.take(budget, subject)
    assert not denied.allowed
    assert denied.remaining == 0
    # One token at 2/s: ~0.5 s, less whatever refilled since the last take.
    assert 0.3 < denied.retry_after_s <= 0.5
    assert denied.retry_after_s == round(denied.retry_after_s, 3)


async def test_retry_after_is_time_until_cost_tokens(redis: aioredis.Redis) -> None:
    limiter = RateLimiter(redis, prefix=_prefix("rl"))
    budget = Budget("cost", rate_per_s=1.0, burst=4)
    subject = _subject()
    assert (await limiter.take(budget, subject, cost=4)).allowed
    denied = await limiter.take(budget, subject, cost=3)
    assert not denied.allowed
    assert 2.8 < denied.retry_after_s <= 3.0  # 3 tokens at 1/s


async def test_tokens_refill_over_time(redis: aioredis.Redis) -> None:
    limiter = RateLimiter(redis, prefix=_prefix("rl"))
    budget = Budget("refill", rate_per_s=20.0, burst=4)
    subject = _subject()
    for _ in range(4):
        assert (await limiter.take(budget, subject)).allowed
    assert not (await limiter.take(budget, subject)).allowed
    await asyncio.sleep(0.25)  # 5 tokens' worth at 20/s; the bucket holds 4
    refilled = [await limiter.take(budget, subject) for _ in range(4)]
    assert all(d.allowed for d in refilled)


async def test_denied_requests_consume_nothing(redis: aioredis.Redis) -> None:
    limiter = RateLimiter(redis, prefix=_prefix("rl"))
    budget = Budget("deny", rate_per_s=10.0, burst=3)
    subject = _subject()
    for _ in range(3):
        assert (await limiter.take(budget, subject)).allowed
    first = await limiter.take(budget, subject)
    for _ in range(20):
        assert not (await limiter.take(budget, subject)).allowed
    # Denials took nothing: one token arrives 0.1 s after the bucket emptied, not later.
    await asyncio.sleep(first.retry_after_s + 0.02)
    assert (await limiter.take(budget, subject)).allowed
    # A denied larger request leaves the tokens that are there for smaller ones.
    big = Budget("deny-big", rate_per_s=0.001, burst=5)
    assert (await limiter.take(big, subject, cost=3)).allowed
    assert not (await limiter.take(big, subject, cost=3)).allowed
    assert (await limiter.take(big, subject, cost=2)).allowed


async def test_subjects_and_budgets_are_independent(redis: aioredis.Redis) -> None:
    limiter = RateLimiter(redis, prefix=_prefix("rl"))
    queries = Budget("queries", rate_per_s=0.001, burst=2)
    mutations = Budget("mutations", rate_per_s=0.001, burst=2)
    alice, bob = _subject(), _subject()
    for _ in range(2):
        assert (await limiter.take(queries, alice)).allowed
    assert not (await limiter.take(queries, alice)).allowed
    assert (await limiter.take(queries, bob)).remaining == 1
    assert (await limiter.take(mutations, alice)).remaining == 1


async def test_concurrent_takes_allow_exactly_the_burst(redis: aioredis.Redis) -> None:
    limiter = RateLimiter(redis, prefix=_prefix("rl"))
    budget = Budget("race", rate_per_s=0.001, burst=10)
    subject = _subject()
    decisions = await asyncio.gather(*(limiter.take(budget, subject) for _ in range(50)))
    assert sum(d.allowed for d in decisions) == 10
    assert sorted(d.remaining for d in decisions if d.allowed) == list(range(10))


async def test_idle_key_expires_after_a_full_refill(redis: aioredis.Redis) -> None:
    limiter = RateLimiter(redis, prefix=_prefix("rl"))
    budget = Budget("idle", rate_per_s=10.0, burst=5)  # full refill: 0.5 s
    subject = _subject()
    key = limiter.key(budget, subject)
    await limiter.take(budget, subject, cost=2)
    ttl_ms = await redis.pttl(key)
    assert 0 < ttl_ms <= 500
    await asyncio.sleep(ttl_ms / 1000 + 0.1)
    assert await redis.exists(key) == 0
    # A vanished key is a full bucket.
    assert (await limiter.take(budget, subject, cost=5)).allowed


async def test_reset_restores_the_burst(redis: aioredis.Redis) -> None:
    limiter = RateLimiter(redis, prefix=_prefix("rl"))
    budget = Budget("reset", rate_per_s=0.001, burst=3)
    subject = _subject()
    assert (await limiter.take(budget, subject, cost=3)).allowed
    assert not (await limiter.take(budget, subject)).allowed
    await limiter.reset(budget, subject)
    assert (await limiter.take(budget, subject, cost=3)).allowed


async def test_invalid_cost_is_a_programming_error(redis: aioredis.Redis) -> None:
    limiter = RateLimiter(redis, prefix=_prefix("rl"))
    budget = Budget("cost-check", rate_per_s=1.0, burst=3)
    with pytest.raises(ValueError, match="at least 1"):
        await limiter.take(budget, _subject(), cost=0)
    with pytest.raises(ValueError, match="exceeds the burst"):
        await limiter.take(budget, _subject(), cost=4)
    with pytest.raises(ValueError, match="without ':'"):
        Budget("a:b", 1.0, 1)
    with pytest.raises(ValueError, match="rate_per_s"):
        Budget("zero-rate", 0.0, 1)


def test_budgets_come_from_settings(settings: Settings) -> None:
    configured = budgets(settings)
    assert configured.login.rate_per_s == settings.rate_login_per_s
    assert configured.login.burst == settings.rate_login_burst
    assert configured.user_queries.burst == settings.rate_user_queries_burst
    assert configured.ip_mutations.rate_per_s == settings.rate_ip_mutations_per_s
    names = {
        configured.user_queries.name,
        configured.user_mutations.name,
        configured.ip_queries.name,
        configured.ip_mutations.name,
        configured.login.name,
    }
    assert len(names) == 5


async def test_debit_many_charges_each_bucket_in_one_call_into_debt_if_need_be(
    redis: aioredis.Redis,
) -> None:
    limiter = RateLimiter(redis, prefix=_prefix("rl"))
    slow = Budget("slow", rate_per_s=0.001, burst=5)
    other = Budget("other", rate_per_s=0.001, burst=10)
    full, spent, third = _subject(), _subject(), _subject()
    for _ in range(5):
        await limiter.take(slow, spent)
    decisions = await limiter.debit_many([(slow, full, 2), (slow, spent, 3), (other, third, 4)])
    assert [(d.allowed, d.remaining) for d in decisions] == [(True, 3), (False, -3), (True, 6)]
    assert decisions[1].retry_after_s > 0
    # The bucket in debt refuses until it has refilled; the others were charged their cost.
    assert not (await limiter.take(slow, spent)).allowed
    assert (await limiter.take(slow, full)).remaining == 2
    assert (await limiter.take(other, third)).remaining == 5
    assert await limiter.debit_many([]) == []


async def test_unreachable_redis_raises_unavailable(dead_redis: aioredis.Redis) -> None:
    limiter = RateLimiter(dead_redis, prefix=_prefix("rl"))
    budget = Budget("down", rate_per_s=1.0, burst=1)
    with pytest.raises(Unavailable):
        await limiter.take(budget, _subject())
    with pytest.raises(Unavailable):
        await limiter.reset(budget, _subject())
    with pytest.raises(Unavailable):
        await limiter.debit_many([(budget, _subject(), 1)])


# Persisted queries.


async def test_hash_only_miss_is_not_found_with_status_200(redis: aioredis.Redis) -> None:
    store = PersistedQueryStore(redis, ttl_s=TTL_S, prefix=_prefix("apq"))
    with pytest.raises(PersistedQueryError) as caught:
        await resolve_query(store, None, _apq(query_hash(_query())), persisted_only=False)
    assert caught.value.status == 200
    assert caught.value.code == PERSISTED_QUERY_NOT_FOUND
    assert caught.value.message == "PersistedQueryNotFound"


async def test_registered_query_is_served_by_hash_from_redis(redis: aioredis.Redis) -> None:
    prefix = _prefix("apq")
    query = _query()
    sha = query_hash(query)
    first = PersistedQueryStore(redis, ttl_s=TTL_S, prefix=prefix)
    assert await resolve_query(first, query, _apq(sha), persisted_only=False) == (query, sha)
    # The endpoint stores it once the document validated and the caller was charged.
    await store_sent_query(first, query, sha, persisted_only=False)
    # A new store has an empty LRU, so this answer comes from Redis.
    second = PersistedQueryStore(redis, ttl_s=TTL_S, prefix=prefix)
    assert await resolve_query(second, None, _apq(sha), persisted_only=False) == (query, sha)


async def test_resolving_a_sent_document_stores_nothing(redis: aioredis.Redis) -> None:
    store = PersistedQueryStore(redis, ttl_s=TTL_S, prefix=_prefix("apq"))
    query = _query()
    sha = query_hash(query)
    assert await resolve_query(store, query, _apq(sha), persisted_only=False) == (query, sha)
    assert await redis.exists(store.key(sha)) == 0
    # Nor does storing what was not sent with its hash, or in persisted-only mode.
    await store_sent_query(store, None, sha, persisted_only=False)
    await store_sent_query(store, query, None, persisted_only=False)
    await store_sent_query(store, query, sha, persisted_only=True)
    assert await redis.exists(store.key(sha), store.registered_key(sha)) == 0


async def test_stored_queries_have_a_ttl(redis: aioredis.Redis) -> None:
    prefix = _prefix("apq")
    store = PersistedQueryStore(redis, ttl_s=TTL_S, prefix=prefix)
    query = _query()
    sha = query_hash(query)
    await resolve_query(store, query, _apq(sha), persisted_only=False)
    await store_sent_query(store, query, sha, persisted_only=False)
    assert 0 < await redis.ttl(store.key(sha)) <= TTL_S
    # A read refreshes the TTL (GETEX).
    await redis.expire(store.key(sha), 60)
    fresh = PersistedQueryStore(redis, ttl_s=TTL_S, prefix=prefix)
    assert await fresh.get(sha) == query
    assert await redis.ttl(store.key(sha)) > 60


async def test_mismatched_hash_is_refused_with_400(redis: aioredis.Redis) -> None:
    store = PersistedQueryStore(redis, ttl_s=TTL_S, prefix=_prefix("apq"))
    with pytest.raises(PersistedQueryError) as caught:
        await resolve_query(store, _query(), _apq(query_hash(_query())), persisted_only=False)
    assert (caught.value.status, caught.value.code) == (400, "BAD_USER_INPUT")
    assert caught.value.message == "provided sha does not match query"


@pytest.mark.parametrize("version", [2, 0, "1", True, 1.0, None])
async def test_unsupported_version_is_refused_with_400(
    redis: aioredis.Redis, version: object
) -> None:
    store = PersistedQueryStore(redis, ttl_s=TTL_S, prefix=_prefix("apq"))
    query = _query()
    with pytest.raises(PersistedQueryError) as caught:
        await resolve_query(store, query, _apq(query_hash(query), version), persisted_only=False)
    assert (caught.value.status, caught.value.code) == (400, "PERSISTED_QUERY_NOT_SUPPORTED")
    assert str(version) in caught.value.message


@pytest.mark.parametrize("sha", ["not-a-hash", "A" * 64, "0" * 63, 42, None])
async def test_malformed_hash_is_refused_with_400(redis: aioredis.Redis, sha: object) -> None:
    store = PersistedQueryStore(redis, ttl_s=TTL_S, prefix=_prefix("apq"))
    extensions = {"persistedQuery": {"version": 1, "sha256Hash": sha}}
    with pytest.raises(PersistedQueryError) as caught:
        await resolve_query(store, None, extensions, persisted_only=False)
    assert (caught.value.status, caught.value.code) == (400, "BAD_USER_INPUT")


async def test_ad_hoc_queries_run_unless_persisted_only(redis: aioredis.Redis) -> None:
    store = PersistedQueryStore(redis, ttl_s=TTL_S, prefix=_prefix("apq"))
    query = _query()
    assert await resolve_query(store, query, None, persisted_only=False) == (query, None)
    assert await resolve_query(store, query, {}, persisted_only=False) == (query, None)
    for missing in (None, "", "  "):
        with pytest.raises(PersistedQueryError) as caught:
            await resolve_query(store, missing, None, persisted_only=False)
        assert (caught.value.status, caught.value.code) == (400, "BAD_USER_INPUT")


async def test_persisted_only_refuses_ad_hoc_and_unregistered_serves_registered(
    redis: aioredis.Redis,
) -> None:
    replica = _replicas(redis)
    store = replica()
    with pytest.raises(PersistedQueryError) as ad_hoc:
        await resolve_query(store, _query(), None, persisted_only=True)
    assert (ad_hoc.value.status, ad_hoc.value.code) == (400, "PERSISTED_QUERY_REQUIRED")

    unregistered = _query()
    sha = query_hash(unregistered)
    with pytest.raises(PersistedQueryError) as refused:
        await resolve_query(store, unregistered, _apq(sha), persisted_only=True)
    assert (refused.value.status, refused.value.code) == (400, "PERSISTED_QUERY_REQUIRED")
    # Clients cannot register, nor cache a document in persisted-only mode.
    assert await redis.exists(store.key(sha), store.registered_key(sha)) == 0

    registered = _query()
    sha = query_hash(registered)
    operator = replica()
    await operator.register(sha, registered)
    served = replica()
    assert await resolve_query(served, None, _apq(sha), persisted_only=True) == (registered, sha)
    assert await resolve_query(served, registered, _apq(sha), persisted_only=True) == (
        registered,
        sha,
    )


async def test_registered_queries_never_expire(redis: aioredis.Redis) -> None:
    replica = _replicas(redis)
    store = replica()
    query = _query()
    sha = query_hash(query)
    await store.register(sha, query)
    assert await redis.ttl(store.registered_key(sha)) == -1  # exists, no expiry
    assert await redis.exists(store.key(sha)) == 0
    # Reads do not give it one, and registering again removes one an operator set.
    fresh = replica()
    assert await fresh.get_registered(sha) == query
    assert await fresh.get(sha) == query
    assert await redis.ttl(store.registered_key(sha)) == -1
    await redis.expire(store.registered_key(sha), 60)
    await store.register(sha, query)
    assert await redis.ttl(store.registered_key(sha)) == -1


async def test_persisted_only_does_not_run_apq_cached_queries(redis: aioredis.Redis) -> None:
    replica = _replicas(redis)
    query = _query()
    sha = query_hash(query)
    client_sent = replica()
    assert await resolve_query(client_sent, query, _apq(sha), persisted_only=False) == (query, sha)
    await store_sent_query(client_sent, query, sha, persisted_only=False)
    served = replica()
    with pytest.raises(PersistedQueryError) as caught:
        await resolve_query(served, None, _apq(sha), persisted_only=True)
    assert caught.value.code == PERSISTED_QUERY_NOT_FOUND


async def test_registered_queries_are_served_by_hash_in_apq_mode(redis: aioredis.Redis) -> None:
    replica = _replicas(redis)
    query = _query()
    sha = query_hash(query)
    await replica().register(sha, query)
    served = replica()
    assert await resolve_query(served, None, _apq(sha), persisted_only=False) == (query, sha)


async def test_put_refuses_a_hash_that_does_not_match(redis: aioredis.Redis) -> None:
    store = PersistedQueryStore(redis, ttl_s=TTL_S, prefix=_prefix("apq"))
    with pytest.raises(ValueError, match="not the SHA-256"):
        await store.put(query_hash(_query()), _query())


async def test_redis_down_hash_only_raises_unavailable_but_full_query_runs(
    dead_redis: aioredis.Redis,
) -> None:
    store = PersistedQueryStore(dead_redis, ttl_s=TTL_S, prefix=_prefix("apq"))
    query = _query()
    sha = query_hash(query)
    with pytest.raises(Unavailable):
        await resolve_query(store, None, _apq(query_hash(_query())), persisted_only=False)
    # With the text in hand, a failed store is only logged.
    assert await resolve_query(store, query, _apq(sha), persisted_only=False) == (query, sha)
    await store_sent_query(store, query, sha, persisted_only=False)
