"""Which access tokens were revoked before they expired.

Access tokens are checked on every request, so the check is one Redis round trip: the
token's `jti` (denied at logout) and its session (revoked at logout, refresh-token reuse or
password reset). PostgreSQL is the source of truth for sessions; when Redis cannot answer,
the session row is read instead, so an outage of Redis never lets a revoked session in.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Iterable

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from gateway.errors import Unauthenticated
from gateway.tokens import AccessClaims
from storage.db import Database

log = logging.getLogger(__name__)

_PREFIX = "nova:auth"


def _jti_key(jti: str) -> str:
    return f"{_PREFIX}:deny:{jti}"


def _session_key(session_id: uuid.UUID) -> str:
    return f"{_PREFIX}:sid:{session_id}"


class Revocations:
    def __init__(self, redis: aioredis.Redis, db: Database, *, access_ttl_s: int) -> None:
        self._redis = redis
        self._db = db
        self._ttl_s = access_ttl_s

    async def check(self, claims: AccessClaims) -> None:
        """Raise `Unauthenticated` if the token or its session was revoked."""
        try:
            denied, revoked = await self._redis.mget(
                _jti_key(claims.jti), _session_key(claims.session_id)
            )
        except (RedisError, OSError, TimeoutError) as exc:
            log.warning("revocation check falls back to PostgreSQL: %s", exc)
            await self._check_database(claims)
            return
        if denied is not None or revoked is not None:
            raise Unauthenticated("access token was revoked")

    async def _check_database(self, claims: AccessClaims) -> None:
        revoked = await self._db.fetchval(
            "SELECT revoked_at IS NOT NULL OR expires_at < now() FROM auth_sessions WHERE id = $1",
            claims.session_id,
        )
        if revoked is None or revoked:
            raise Unauthenticated("access token was revoked")

    async def deny_token(self, claims: AccessClaims) -> None:
        """Refuse this access token until it expires (logout)."""
        remaining = max(1, claims.expires_at - int(time.time()) + 1)
        await self._publish([(_jti_key(claims.jti), remaining)])

    async def revoke_sessions(self, session_ids: Iterable[uuid.UUID]) -> None:
        """Refuse every access token of these sessions (already revoked in PostgreSQL)."""
        await self._publish([(_session_key(sid), self._ttl_s + 60) for sid in session_ids])

    async def _publish(self, keys: list[tuple[str, int]]) -> None:
        if not keys:
            return
        try:
            async with self._redis.pipeline(transaction=False) as pipe:
                for key, ttl_s in keys:
                    pipe.set(key, "1", ex=ttl_s)
                await pipe.execute()
        except (RedisError, OSError, TimeoutError) as exc:
            # The sessions are revoked in PostgreSQL; their access tokens stay usable on the
            # Redis fast path until they expire (at most the access token lifetime).
            log.error("could not record %d revocations in Redis: %s", len(keys), exc)
