"""Redis: one client per process with bounded connect and command times.

TLS is the URL's: `rediss://` with redis-py's query parameters, `ssl_ca_certs` (the CA that
signed the server's certificate) and, for a server that asks for one, `ssl_certfile` and
`ssl_keyfile`. The server's certificate must name the URL's host.
"""

from __future__ import annotations

import asyncio
from typing import Any
from urllib.parse import urlparse

import hiredis
import redis.asyncio as aioredis
from redis.asyncio.connection import Connection, SSLConnection
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import ConnectionError as RedisConnectionError

from storage.errors import classify
from storage.settings import StorageSettings


class HiredisPacking(Connection):
    """A connection that encodes commands with hiredis (C) rather than in Python.

    redis-py's sync client already does this when hiredis is installed; its asyncio client
    does not yet (redis/redis-py#4176). Packing a 500-key MGET in Python cost about 2 ms of
    the gateway's event loop, more than Redis took to answer it. The bytes sent are the
    same; anything hiredis refuses (memoryviews, invalid types) goes through redis-py's own
    packer, which keeps its behaviour and its errors. Drop this when redis-py ships it.
    """

    def pack_command(self, *args: Any) -> list[bytes]:
        if args and isinstance(args[0], str) and " " in args[0]:  # "CONFIG GET" and the like
            args = (*args[0].split(), *args[1:])
        try:
            return [hiredis.pack_command(args)]
        except Exception:
            return super().pack_command(*args)


class HiredisPackingConnection(HiredisPacking):
    """TCP (`redis://`), commands packed by hiredis."""


class HiredisPackingSSLConnection(HiredisPacking, SSLConnection):
    """TLS (`rediss://`), commands packed by hiredis."""


# Each scheme's connection class; unix:// keeps redis-py's own.
_PACKING = {"redis": HiredisPackingConnection, "rediss": HiredisPackingSSLConnection}


def make_redis(settings: StorageSettings) -> aioredis.Redis:
    """A client whose pool waits (up to `redis_timeout_s`) for a free connection.

    redis-py's default pool raises `MaxConnectionsError` the moment its 100 connections are
    busy: a burst of concurrent operations on one replica (80 pipelined WebSocket
    mutations, each charging two rate limits and checking revocation) made commands fail,
    and the rate limiter fail open. Waiting briefly is what a burst needs.

    A command whose pooled connection the server has closed (Redis restarted while the
    connection sat idle) is sent once more on a new connection, as redis-py's own clients
    do, instead of failing the request that drew the stale connection. Timeouts are not
    retried: every wait stays bounded by `redis_timeout_s`.
    """
    options: dict[str, Any] = {}
    connection_class = _PACKING.get(urlparse(settings.redis_url).scheme)
    if connection_class is not None:
        options["connection_class"] = connection_class
    pool = aioredis.BlockingConnectionPool.from_url(
        settings.redis_url,
        max_connections=settings.redis_max_connections,
        timeout=settings.redis_timeout_s,
        socket_timeout=settings.redis_timeout_s,
        socket_connect_timeout=settings.redis_timeout_s,
        health_check_interval=30,
        retry=Retry(NoBackoff(), 1, supported_errors=(RedisConnectionError,)),
        decode_responses=False,
        **options,
    )
    return aioredis.Redis.from_pool(pool)


async def ping(client: aioredis.Redis, timeout_s: float) -> None:
    """Raise `Unavailable` unless Redis answers PING within `timeout_s`."""
    try:
        await asyncio.wait_for(client.ping(), timeout_s)
    except Exception as exc:
        raise classify(exc, "redis") from exc
