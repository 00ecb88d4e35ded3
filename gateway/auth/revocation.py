"""Which access tokens were revoked before they expired.

A revocation is the token's `jti` (denied at logout) or its session (revoked at logout,
refresh-token reuse or password reset). PostgreSQL is the source of truth for sessions;
Redis holds every revocation until the tokens it concerns have expired, twice over:

- a key per revocation (`nova:auth:deny:<jti>`, `nova:auth:sid:<session>`), which a
  request can check with one MGET;
- a sorted set of them all (`nova:auth:revoked`, scored by expiry), announced on the
  channel `nova:auth:revoked` as they are added.

Access tokens are checked on every request, so each replica keeps a mirror of that set:
it subscribes to the channel, then reads the set, and from then on answers from memory,
with no round trip. The replica that revokes applies it to its own mirror before it
answers; the others apply it when the announcement arrives, which Redis sends before it
answers the revoking replica. While a replica's subscription is down (Redis restarting,
say) it is not trusted: requests check the keys in Redis, and when Redis cannot answer,
the session row in PostgreSQL, so an outage never lets a revoked session in.

What a token has open (a WebSocket and its subscriptions) must end with it: `watch`
registers a callback that the mirror calls once when it learns of the token's revocation,
from this replica's own revocations, the announcements of the others, or the whole set
read again after a lost subscription.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections.abc import Callable, Iterable
from typing import Any, cast

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from gateway.auth.tokens import AccessClaims
from gateway.errors import Unauthenticated
from storage.db import Database
from storage.repositories.sessions import SessionStore

log = logging.getLogger(__name__)

_PREFIX = "nova:auth"
REVOKED = f"{_PREFIX}:revoked"  # the sorted set, and the channel announcing its additions


def _jti_key(jti: str) -> str:
    return f"{_PREFIX}:deny:{jti}"


def _session_key(session_id: uuid.UUID) -> str:
    return f"{_PREFIX}:sid:{session_id}"


def _jti_member(jti: str) -> str:
    return f"jti:{jti}"


def _session_member(session_id: uuid.UUID) -> str:
    return f"sid:{session_id}"


class Revocations:
    """One per replica. `start()` begins mirroring; until the mirror is in sync, and
    whenever it loses its subscription, `check` asks Redis instead."""

    # An entry outlives its token by this much, so that replicas' clocks may differ.
    CLOCK_SLACK_S = 60
    _PRUNE_EVERY_S = 30.0

    def __init__(self, redis: aioredis.Redis, db: Database, *, access_ttl_s: int) -> None:
        self._redis = redis
        self._sessions = SessionStore(db)
        self._ttl_s = access_ttl_s
        self._mirror: dict[str, float] = {}  # member → expiry, Unix seconds
        self._in_sync = False
        self._synced_once = asyncio.Event()
        self._follower: asyncio.Task[None] | None = None
        # Live watches (`watch`): by handle, and the handles watching each member.
        self._watches: dict[int, tuple[tuple[str, str], Callable[[], None]]] = {}
        self._watching: dict[str, set[int]] = {}
        self._next_watch = 0
        self.lost_sync = 0

    @property
    def in_sync(self) -> bool:
        return self._in_sync

    async def start(self, timeout_s: float = 5.0) -> None:
        """Start following revocations; wait up to `timeout_s` for the first sync."""
        if self._follower is None:
            self._follower = asyncio.create_task(self._follow(), name="revocation-mirror")
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._synced_once.wait(), timeout_s)

    async def close(self) -> None:
        if self._follower is not None:
            self._follower.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._follower
            self._follower = None

    def known(self, claims: AccessClaims) -> bool | None:
        """Whether the mirror says this token is revoked; None when it is not in sync."""
        if not self._in_sync:
            return None
        now = time.time()
        for member in (_jti_member(claims.jti), _session_member(claims.session_id)):
            expires = self._mirror.get(member)
            if expires is not None and expires > now:
                return True
        return False

    def watch(self, claims: AccessClaims, on_revoked: Callable[[], None]) -> Callable[[], None]:
        """Call `on_revoked` once, soon after this token or its session is revoked on any
        replica (at once if the mirror knows it already); returns what stops the watch.

        The callback runs in the mirror's task: it must not block (schedule work instead)."""
        if self.known(claims):
            on_revoked()
            return lambda: None
        self._next_watch += 1
        handle = self._next_watch
        members = (_jti_member(claims.jti), _session_member(claims.session_id))
        self._watches[handle] = (members, on_revoked)
        for member in members:
            self._watching.setdefault(member, set()).add(handle)

        def stop() -> None:
            self._unwatch(handle)

        return stop

    def _unwatch(self, handle: int) -> Callable[[], None] | None:
        entry = self._watches.pop(handle, None)
        if entry is None:
            return None
        members, on_revoked = entry
        for member in members:
            handles = self._watching.get(member)
            if handles is not None:
                handles.discard(handle)
                if not handles:
                    del self._watching[member]
        return on_revoked

    def _revoked(self, member: str) -> None:
        """Tell the watchers of `member`, each once (whichever member of its token comes
        first), and forget them."""
        for handle in list(self._watching.get(member, ())):
            on_revoked = self._unwatch(handle)
            if on_revoked is None:
                continue
            try:
                on_revoked()
            except Exception:
                log.exception("a revocation watcher failed")

    async def check(self, claims: AccessClaims) -> None:
        """Raise `Unauthenticated` if the token or its session was revoked."""
        known = self.known(claims)
        if known is not None:
            if known:
                raise Unauthenticated("access token was revoked")
            return
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
        ended = await self._sessions.ended(claims.session_id)
        if ended is None or ended:  # an unknown session is refused too
            raise Unauthenticated("access token was revoked")

    async def deny_token(self, claims: AccessClaims) -> None:
        """Refuse this access token until it expires (logout)."""
        remaining = max(1, claims.expires_at - int(time.time()) + 1)
        await self._publish([(_jti_key(claims.jti), _jti_member(claims.jti), remaining)])

    async def revoke_sessions(self, session_ids: Iterable[uuid.UUID]) -> None:
        """Refuse every access token of these sessions (already revoked in PostgreSQL)."""
        ttl_s = self._ttl_s + 60
        await self._publish(
            [(_session_key(sid), _session_member(sid), ttl_s) for sid in session_ids]
        )

    async def _publish(self, entries: list[tuple[str, str, int]]) -> None:
        """Record revocations: in this replica's mirror at once, then in Redis for the
        request path's keys, the set and the other replicas' mirrors."""
        if not entries:
            return
        now = time.time()
        expiries = {member: now + ttl_s + self.CLOCK_SLACK_S for _, member, ttl_s in entries}
        for member, expires in expiries.items():
            self._remember(member, expires)
        announcement = "\n".join(f"{member} {expires!r}" for member, expires in expiries.items())
        try:
            async with self._redis.pipeline(transaction=False) as pipe:
                for key, _, ttl_s in entries:
                    pipe.set(key, "1", ex=ttl_s)
                pipe.zadd(REVOKED, expiries)
                pipe.zremrangebyscore(REVOKED, "-inf", now)
                pipe.publish(REVOKED, announcement)
                await pipe.execute()
        except (RedisError, OSError, TimeoutError) as exc:
            # The sessions are revoked in PostgreSQL; their access tokens stay usable on
            # other replicas until they expire (at most the access token lifetime).
            log.error("could not record %d revocations in Redis: %s", len(entries), exc)

    def _apply(self, announcement: bytes | str) -> None:
        text = announcement.decode() if isinstance(announcement, bytes) else announcement
        for line in text.splitlines():
            member, _, expires = line.partition(" ")
            with contextlib.suppress(ValueError):
                self._remember(member, float(expires))

    def _remember(self, member: str, expires: float) -> None:
        """Keep the later expiry: an announcement and the set may both carry an entry."""
        self._mirror[member] = max(expires, self._mirror.get(member, 0.0))
        if member in self._watching and expires > time.time():
            self._revoked(member)

    def _prune(self) -> None:
        now = time.time()
        for member in [m for m, expires in self._mirror.items() if expires <= now]:
            del self._mirror[member]

    async def _follow(self) -> None:
        """Subscribe, then read the whole set, then apply announcements, for as long as
        the replica lives. Subscribing first means nothing added meanwhile is missed: an
        addition before the read is in the set, one after is announced."""
        delay_s = 0.1
        while True:
            pubsub = self._redis.pubsub(ignore_subscribe_messages=True)
            try:
                await pubsub.subscribe(REVOKED)
                current = await self._redis.zrange(
                    REVOKED, time.time(), "+inf", byscore=True, withscores=True
                )
                for member, expires in cast(list[tuple[Any, float]], current):
                    name = member.decode() if isinstance(member, bytes) else str(member)
                    self._remember(name, expires)
                self._in_sync = True
                self._synced_once.set()
                delay_s = 0.1
                pruned_at = time.monotonic()
                while True:
                    message: dict[str, Any] | None = await pubsub.get_message(timeout=1.0)
                    if message is not None and message.get("type") == "message":
                        self._apply(message["data"])
                    if time.monotonic() - pruned_at > self._PRUNE_EVERY_S:
                        self._prune()
                        pruned_at = time.monotonic()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                if self._in_sync:
                    self.lost_sync += 1
                log.warning("revocation mirror out of sync (%s); checking Redis meanwhile", exc)
                self._in_sync = False
                await asyncio.sleep(delay_s)
                delay_s = min(delay_s * 2, 5.0)
            finally:
                self._in_sync = False
                with contextlib.suppress(Exception):
                    await pubsub.aclose()  # type: ignore[no-untyped-call]
