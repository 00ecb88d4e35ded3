"""How many WebSockets one client IP and one account hold, counted across every replica.

Each open socket holds a lease in a Redis sorted set per subject (`nova:ws:ip:<address>`,
`nova:ws:user:<id>`): a member per socket, scored by when the lease lapses. A socket is
admitted only while its subject holds fewer live leases than the cap (one script: drop
the lapsed, count, add). The replica renews all of its leases together, one pipeline
every `BEAT_S`, and drops a socket's lease when the socket ends; the leases of a replica
that died lapse within `LEASE_S`, so a crash never locks a client out for long.

The caps are global, not per replica: behind a load balancer a client's sockets spread
over every replica, and a per-replica cap would let it hold the cap times the replica
count. When Redis does not answer, a socket is admitted if this replica alone holds fewer
than the cap for its subject (the cap per replica, as a floor), and its lease is only
local: the limit protects the service, and refusing every socket while Redis is away
would be the outage it exists to prevent.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from dataclasses import dataclass
from typing import cast

import redis.asyncio as aioredis

from storage.errors import classify

log = logging.getLogger(__name__)

LEASE_S = 30.0
BEAT_S = 10.0  # well inside the lease: two beats may fail before a lease lapses

# KEYS[1] the subject's leases; ARGV: now, lapses at, member, cap, key ttl (s).
_TAKE = """
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', ARGV[1])
if redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[4]) then return 0 end
redis.call('ZADD', KEYS[1], ARGV[2], ARGV[3])
redis.call('EXPIRE', KEYS[1], ARGV[5])
return 1
"""


def lease_key(kind: str, subject: str) -> str:
    """The sorted set of `kind` ("ip" or "user") leases held for `subject`."""
    return f"nova:ws:{kind}:{subject}"


@dataclass(frozen=True)
class Lease:
    key: str
    member: str


class SocketLeases:
    """One per replica: takes, renews and drops the leases of its open sockets."""

    def __init__(self, redis: aioredis.Redis, *, replica: str) -> None:
        self._redis = redis
        self._replica = replica
        self._held: dict[str, set[str]] = {}  # key → members this replica holds
        self._beater: asyncio.Task[None] | None = None
        self.unenforced = 0  # admissions decided without Redis

    async def take(self, kind: str, subject: str, cap: int) -> Lease | None:
        """A lease for one more socket of `subject`, or None when it holds `cap` already."""
        key = lease_key(kind, subject)
        member = f"{self._replica}:{uuid.uuid4().hex[:12]}"
        now = time.time()
        try:
            taken = await self._redis.eval(  # type: ignore[misc]
                _TAKE, 1, key, now, now + LEASE_S, member, cap, int(LEASE_S * 2)
            )
        except Exception as exc:
            self.unenforced += 1
            log.warning(
                "WebSocket cap for %s checked on this replica only: %s", kind, classify(exc)
            )
            if len(self._held.get(key, ())) >= cap:
                return None
        else:
            if not int(cast(int, taken)):
                return None
        self._held.setdefault(key, set()).add(member)
        if self._beater is None or self._beater.done():
            self._beater = asyncio.get_running_loop().create_task(self._beat_while_held())
        return Lease(key, member)

    async def release(self, lease: Lease) -> None:
        """Drop a socket's lease (best effort: a lease not dropped lapses by itself)."""
        members = self._held.get(lease.key)
        if members is not None:
            members.discard(lease.member)
            if not members:
                del self._held[lease.key]
        with contextlib.suppress(Exception):
            await self._redis.zrem(lease.key, lease.member)

    async def renew(self) -> bool:
        """Extend every lease this replica holds, in one pipeline; False if Redis refused."""
        if not self._held:
            return True
        lapses = time.time() + LEASE_S
        try:
            async with self._redis.pipeline(transaction=False) as pipe:
                for key, members in list(self._held.items()):
                    # XX: a lease dropped meanwhile stays dropped.
                    pipe.zadd(key, dict.fromkeys(members, lapses), xx=True)
                    pipe.expire(key, int(LEASE_S * 2))
                await pipe.execute()
        except Exception as exc:
            log.warning("WebSocket leases not renewed: %s", classify(exc, "redis"))
            return False
        return True

    async def close(self) -> None:
        if self._beater is not None:
            self._beater.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._beater

    async def _beat_while_held(self) -> None:
        while self._held:
            await asyncio.sleep(BEAT_S)
            await self.renew()
