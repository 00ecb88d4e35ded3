"""The hiredis command packer sends exactly what redis-py's own packer sends."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import pytest
from redis.asyncio.connection import Connection
from redis.exceptions import DataError

from deployments.settings import Settings
from storage.redis_client import HiredisPackingConnection, make_redis

COMMANDS = [
    ("MGET", *(f"nova:f:post:{n}" for n in range(500))),
    ("SET", "k", 1.5),
    ("SET", "k", 0.1 + 0.2),
    ("SET", "k", 10**20),
    ("SETRANGE", b"k", 16, b"\x00\xff" * 8),
    ("HSET", "é", "ü", memoryview(b"xy")),
    ("CONFIG GET", "maxmemory"),
]


@pytest.mark.parametrize("command", COMMANDS, ids=lambda c: str(c[0]))
def test_packed_bytes_are_redis_pys(command: tuple[Any, ...]) -> None:
    ours = b"".join(HiredisPackingConnection().pack_command(*command))
    theirs = b"".join(bytes(part) for part in Connection().pack_command(*command))
    assert ours == theirs


def test_what_hiredis_refuses_gets_redis_pys_error() -> None:
    with pytest.raises(DataError):
        HiredisPackingConnection().pack_command("SET", "k", None)


def test_only_plain_tcp_urls_get_the_packer() -> None:
    tcp = make_redis(Settings(redis_url="redis://127.0.0.1:1/0"))
    tls = make_redis(Settings(redis_url="rediss://127.0.0.1:1/0"))
    assert tcp.connection_pool.connection_class is HiredisPackingConnection
    assert tls.connection_pool.connection_class is not HiredisPackingConnection


@pytest.mark.stack
async def test_a_burst_beyond_the_pool_waits_for_connections_instead_of_failing(
    settings: Settings,
) -> None:
    client = make_redis(settings.replace(redis_max_connections=4))
    try:
        key = f"test:pool:{uuid.uuid4().hex}"
        replies = await asyncio.gather(*(client.incr(key) for _ in range(200)))
        assert sorted(replies) == list(range(1, 201))
    finally:
        await client.aclose()
