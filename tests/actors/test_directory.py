"""The key → shard directory: stable, balanced, and minimal movement when N grows."""

from __future__ import annotations

import uuid
from collections import Counter

import pytest

from actors.directory import jump_hash, key_hash, shard_name, shard_of


def test_the_same_key_always_goes_to_the_same_shard() -> None:
    key = uuid.UUID("6f1c1f3e-6a55-4d2b-9f37-0a3b1c9d2e11")
    assert shard_of(key, 8) == shard_of(uuid.UUID(str(key)), 8)
    assert key_hash(key) == key_hash(uuid.UUID(str(key)))  # not Python's salted hash
    assert shard_of(key, 1) == 0


def test_keys_spread_evenly_over_shards() -> None:
    counts = Counter(shard_of(uuid.uuid4(), 4) for _ in range(8_000))
    assert set(counts) == {0, 1, 2, 3}
    assert all(1_600 < n < 2_400 for n in counts.values()), counts


def test_growing_from_n_to_n_plus_one_moves_only_keys_to_the_new_shard() -> None:
    keys = [uuid.uuid4() for _ in range(5_000)]
    moved = [k for k in keys if shard_of(k, 4) != shard_of(k, 5)]
    assert all(shard_of(k, 5) == 4 for k in moved)
    assert 0.1 < len(moved) / len(keys) < 0.3  # about 1/5


def test_bad_bucket_counts_are_refused_and_names_follow_the_convention() -> None:
    with pytest.raises(ValueError, match="buckets"):
        jump_hash(1, 0)
    assert shard_name("counter", 3) == "counter-shard-3"
