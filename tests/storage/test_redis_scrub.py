"""What the erasure's Redis scrub takes for a trace of an account, and what it leaves: the
account's id anywhere, as text or packed bytes; its username or email only standing alone
(a key's `:` part, a quoted JSON string), never inside someone else's id or word. Then a
pass over a real Redis removes exactly those."""

from __future__ import annotations

import json
import uuid
from typing import Any

import pytest

from storage.redis_scrub import Needles, scrub

USER = uuid.UUID("0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0")
OTHER = uuid.UUID("cafe0000-0000-4000-8000-00000000cafe")
NEEDLES = Needles([USER], ["cafe", "cafe@example.org"])


def test_the_id_is_found_as_text_without_case_and_as_packed_bytes() -> None:
    assert NEEDLES.in_member(f"{USER}:{OTHER}".encode())
    assert NEEDLES.in_member(str(USER).upper())
    assert NEEDLES.in_member(b"\x00" + USER.bytes + b"\x01")
    assert not NEEDLES.in_member(f"{OTHER}:{OTHER}".encode())


def test_a_username_counts_only_where_it_stands_alone() -> None:
    assert NEEDLES.in_key(b"nova:rl:login:cafe")
    assert not NEEDLES.in_key(f"nova:tl:{OTHER}".encode())  # "cafe" inside a hex id
    assert not NEEDLES.in_member(f"{OTHER}".encode())
    assert NEEDLES.in_value(json.dumps({"username": "Cafe"}).encode())
    assert not NEEDLES.in_value(json.dumps({"bio": "a cafe downtown"}).encode())
    assert NEEDLES.in_value(b'{"email": "cafe@example.org"}')


@pytest.mark.stack
async def test_a_pass_removes_the_traces_and_keeps_the_rest(redis: Any) -> None:
    prefix = f"test:scrub:{uuid.uuid4().hex}:"
    await redis.set(f"{prefix}user:{USER}", b"{}")
    await redis.set(f"{prefix}record:a", b"\x00" + USER.bytes)
    await redis.set(f"{prefix}record:b", OTHER.bytes)
    await redis.zadd(f"{prefix}tl", {f"p1:{USER}": 1, f"p2:{OTHER}": 2})
    await redis.sadd(f"{prefix}follows", str(USER), str(OTHER))
    await redis.hset(f"{prefix}affinity", mapping={str(USER): 1.5, str(OTHER): 2.5})
    await redis.rpush(f"{prefix}list", str(USER), "kept")

    done = await scrub(redis, NEEDLES, match=f"{prefix}*")

    assert done.keys_deleted == 2
    assert done.items_removed == 4
    assert await redis.exists(f"{prefix}user:{USER}", f"{prefix}record:a") == 0
    assert await redis.get(f"{prefix}record:b") == OTHER.bytes
    assert await redis.zrange(f"{prefix}tl", 0, -1) == [f"p2:{OTHER}".encode()]
    assert await redis.smembers(f"{prefix}follows") == {str(OTHER).encode()}
    assert await redis.hkeys(f"{prefix}affinity") == [str(OTHER).encode()]
    assert await redis.lrange(f"{prefix}list", 0, -1) == [b"kept"]
