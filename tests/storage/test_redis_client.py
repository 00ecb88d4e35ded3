"""Nova's Redis clients: the hiredis command packer sends exactly what redis-py's own packer
sends, bursts wait for a pooled connection, and a connection the server closed is replaced."""

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


@pytest.mark.stack
async def test_a_pooled_connection_the_server_closed_is_replaced_not_failed(
    settings: Settings,
) -> None:
    """What every process meets after Redis restarts: its idle pooled connections are
    dead. The next command goes out on a new connection instead of failing."""
    client = make_redis(settings)
    admin = make_redis(settings)
    try:
        name = f"test-stale-{uuid.uuid4().hex[:8]}"
        await client.client_setname(name)  # the one pooled connection now has a name
        victims = [c["id"] for c in await admin.client_list() if c.get("name") == name]
        assert len(victims) == 1
        await admin.client_kill_filter(_id=victims[0])
        assert await client.ping()
    finally:
        await client.aclose()
        await admin.aclose()
