"""Which shard owns a key: jump consistent hash of the key over N shards.

Jump hash (Lamping and Veach, 2014) moves only 1/N of the keys when N grows by one, needs
no table, and is the same in every process, so the gateway, consumers and tools agree on
the owner of a key without asking anyone.
"""

from __future__ import annotations

import hashlib
import uuid

_MULTIPLIER = 2862933555777941757
_MASK = (1 << 64) - 1


def jump_hash(key: int, buckets: int) -> int:
    """The bucket in `[0, buckets)` for a 64-bit `key`."""
    if buckets <= 0:
        raise ValueError("buckets must be > 0")
    bucket, candidate = -1, 0
    while candidate < buckets:
        bucket = candidate
        key = (key * _MULTIPLIER + 1) & _MASK
        candidate = int((bucket + 1) * ((1 << 31) / ((key >> 33) + 1)))
    return bucket


def key_hash(key: uuid.UUID | str) -> int:
    """A stable 64-bit hash (Python's `hash` is salted per process)."""
    raw = key.bytes if isinstance(key, uuid.UUID) else key.encode()
    return int.from_bytes(hashlib.blake2b(raw, digest_size=8).digest(), "big")


def shard_of(key: uuid.UUID | str, shards: int) -> int:
    return jump_hash(key_hash(key), shards)


def shard_name(kind: str, index: int) -> str:
    """`counter-shard-3`, `timeline-shard-0`: the Ray actor name of a shard."""
    return f"{kind}-shard-{index}"
