"""Per-replica caches (`gateway.services.caches`): the LRU's own rules as pure logic, then
invalidations between two `Invalidations` (two replicas) through the test stack's Redis."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest

from gateway.services.caches import EVERYTHING, Invalidations, LocalCache
from tests.conftest import wait_until


def cache(max_entries: int = 10, ttl_s: float = 60.0) -> LocalCache[str, str]:
    return LocalCache("test", str, max_entries=max_entries, ttl_s=ttl_s)


def test_a_stored_value_is_served_until_its_ttl_runs_out() -> None:
    lasting, expired = cache(), cache(ttl_s=0)
    for c in (lasting, expired):
        c.put("k", "v", c.generation("k"))
    assert lasting.get("k") == "v"
    assert expired.get("k") is None
    assert (lasting.stats.hits, expired.stats.misses) == (1, 1)


def test_the_least_recently_used_entry_leaves_first() -> None:
    c = cache(max_entries=2)
    for key in ("a", "b"):
        c.put(key, key.upper(), c.generation(key))
    assert c.get("a") == "A"  # "b" is now the least recently used
    c.put("c", "C", c.generation("c"))
    assert (c.get("a"), c.get("b"), c.get("c")) == ("A", None, "C")


def test_a_fill_that_raced_an_invalidation_does_not_land() -> None:
    c = cache()
    read_before = c.generation("k")  # a reader starts loading the old value
    c.forget("k")  # a writer's invalidation arrives meanwhile
    c.put("k", "old", read_before)
    assert c.get("k") is None
    c.put("k", "new", c.generation("k"))
    assert c.get("k") == "new"


def test_clear_drops_every_entry_and_fills_in_flight() -> None:
    c = cache()
    c.put("a", "A", c.generation("a"))
    read_before = {key: c.generation(key) for key in ("a", "never cached")}
    c.clear()
    assert c.get("a") is None
    for key, generation in read_before.items():
        c.put(key, "stale", generation)
        assert c.get(key) is None


def test_invalidations_of_keys_never_cached_are_bounded_by_a_clear() -> None:
    """Each invalidated key keeps a generation, cached or not; past twice the cache's
    size the cache starts over rather than let them grow with every key ever changed."""
    c = cache(max_entries=2)
    c.put("kept", "K", c.generation("kept"))
    for n in range(4):
        c.forget(f"elsewhere {n}")
    assert c.get("kept") == "K"
    c.forget("one too many")
    assert c.get("kept") is None


async def test_load_many_fetches_only_the_misses_in_one_call() -> None:
    c = cache()
    c.put("a", "A", c.generation("a"))
    calls: list[list[str]] = []

    async def fetch(keys: list[str]) -> dict[str, str]:
        calls.append(keys)
        return {key: key.upper() for key in keys if key != "unknown"}

    found = await c.load_many(["a", "b", "unknown", "b"], fetch)
    assert found == {"a": "A", "b": "B"}
    assert calls == [["b", "unknown"]]
    # Known keys are kept; an unknown one is asked again next time (it may exist by then).
    assert await c.load_many(["a", "b", "unknown"], fetch) == {"a": "A", "b": "B"}
    assert calls == [["b", "unknown"], ["unknown"]]


# -- two replicas through Redis ----------------------------------------------------------


@pytest.fixture
async def replicas(redis: Any) -> AsyncIterator[list[tuple[Invalidations, LocalCache[Any, Any]]]]:
    channel = f"nova:test:{uuid.uuid4().hex}"
    pairs: list[tuple[Invalidations, LocalCache[Any, Any]]] = []
    for _ in range(2):
        invalidations = Invalidations(redis)
        pairs.append(
            (invalidations, invalidations.cache(channel, uuid.UUID, max_entries=100, ttl_s=60))
        )
    for invalidations, _ in pairs:
        await invalidations.start()
    try:
        yield pairs
    finally:
        for invalidations, _ in pairs:
            await invalidations.close()


@pytest.mark.stack
async def test_a_change_on_one_replica_drops_the_key_on_both(
    replicas: list[tuple[Invalidations, LocalCache[Any, Any]]],
) -> None:
    (writer, mine), (_, theirs) = replicas
    changed, kept = uuid.uuid4(), uuid.uuid4()
    for c in (mine, theirs):
        for key in (changed, kept):
            c.put(key, "old", c.generation(key))

    await writer.changed(mine, [changed])
    assert mine.get(changed) is None  # at once where the change was made

    async def dropped() -> bool:
        return theirs.get(changed) is None

    await wait_until(
        dropped,
        timeout_s=1,
        interval_s=0.005,
        message="the other replica dropped its copy",
    )
    assert mine.get(kept) == theirs.get(kept) == "old"


@pytest.mark.stack
async def test_a_change_to_everything_clears_both_replicas(
    replicas: list[tuple[Invalidations, LocalCache[Any, Any]]],
) -> None:
    (writer, mine), (_, theirs) = replicas
    keys = [uuid.uuid4() for _ in range(3)]
    for c in (mine, theirs):
        for key in keys:
            c.put(key, "old", c.generation(key))

    await writer.changed_all(mine)
    assert len(mine) == 0

    async def cleared() -> bool:
        return len(theirs) == 0

    await wait_until(
        cleared,
        timeout_s=1,
        interval_s=0.005,
        message=f"the other replica cleared its cache on {EVERYTHING!r}",
    )
