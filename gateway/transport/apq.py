"""Apollo automatic persisted queries: clients send a query's SHA-256 instead of its text.

Hashes map to documents in Redis (shared by every replica) with an in-process LRU in
front, so a hot document costs no round trip. Two keyspaces hold them: documents clients
sent through APQ are a cache and expire (`NOVA_PERSISTED_QUERY_TTL_S`, refreshed on use);
documents an operator registered (`nova queries add`) never expire, because clients that
only send hashes break the day a registered document disappears. In persisted-only mode
(`NOVA_PERSISTED_QUERIES_ONLY`) only registered documents run; clients can neither send
ad-hoc documents nor register new ones.

Resolving a request's document writes nothing: a document a client sends with its hash is
stored (`store_sent_query`) only once it parsed and validated and the caller was charged
for it, so nobody can fill Redis with text that never runs.
"""

from __future__ import annotations

import hashlib
import logging
import re
import time
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import redis.asyncio as aioredis

from storage.errors import NovaError, classify

log = logging.getLogger(__name__)

APQ_VERSION = 1
PERSISTED_QUERY_NOT_FOUND = "PERSISTED_QUERY_NOT_FOUND"
PERSISTED_QUERY_NOT_SUPPORTED = "PERSISTED_QUERY_NOT_SUPPORTED"
PERSISTED_QUERY_REQUIRED = "PERSISTED_QUERY_REQUIRED"
BAD_USER_INPUT = "BAD_USER_INPUT"

_HASH = re.compile(r"[0-9a-f]{64}")
# A document served from the LRU is re-read from Redis this often: an APQ document to
# refresh its TTL (otherwise a query hot enough never to leave the LRU would expire in
# Redis for every other replica), a registered one to notice an operator deleted it.
_MAX_REFRESH_S = 300.0


class PersistedQueryError(Exception):
    """A request the APQ protocol answers with an error; `status` is the HTTP status."""

    status: int
    code: str
    message: str

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message


def query_hash(query: str) -> str:
    """The APQ hash of a document: SHA-256 hex of its UTF-8 text."""
    return hashlib.sha256(query.encode("utf-8")).hexdigest()


def _text(raw: object) -> str:
    return raw.decode("utf-8") if isinstance(raw, bytes) else str(raw)


@dataclass(frozen=True, slots=True)
class _Local:
    """A document in the LRU, whether it came from the registry, and when Redis last had it."""

    query: str
    registered: bool
    checked_at: float


class PersistedQueryStore:
    """Documents by hash: an in-process LRU, then Redis.

    APQ documents (`put`) live under `prefix` with a TTL refreshed on use; registered ones
    (`register`) live under `registry_prefix` with none. `get` serves either kind,
    `get_registered` only the registered kind (persisted-only mode).

        store = PersistedQueryStore(redis, ttl_s=30 * 86400)
        await store.register(query_hash(text), text)  # `nova queries add`
        await store.get_registered(query_hash(text))  # -> text, forever
    """

    def __init__(
        self,
        redis: aioredis.Redis,
        *,
        ttl_s: int,
        local_cache_size: int = 1000,
        prefix: str = "nova:apq",
        registry_prefix: str = "nova:persisted-queries",
    ) -> None:
        if ttl_s < 1:
            raise ValueError("ttl_s must be at least 1")
        if registry_prefix == prefix:
            raise ValueError(
                "registry_prefix must differ from prefix: registered documents "
                "would expire with the APQ cache"
            )
        self._redis = redis
        self._ttl_s = ttl_s
        self._prefix = prefix
        self._registry_prefix = registry_prefix
        self._local_size = max(0, local_cache_size)
        self._refresh_s = min(ttl_s / 2, _MAX_REFRESH_S)
        self._local: OrderedDict[str, _Local] = OrderedDict()

    def key(self, sha256_hex: str) -> str:
        """The Redis key of an APQ (expiring) document."""
        return f"{self._prefix}:{sha256_hex}"

    def registered_key(self, sha256_hex: str) -> str:
        """The Redis key of a registered (never expiring) document."""
        return f"{self._registry_prefix}:{sha256_hex}"

    def _remember(self, sha256_hex: str, query: str, *, registered: bool) -> str:
        if self._local_size > 0:
            self._local[sha256_hex] = _Local(query, registered, time.monotonic())
            self._local.move_to_end(sha256_hex)
            while len(self._local) > self._local_size:
                self._local.popitem(last=False)
        return query

    async def _read(self, sha256_hex: str, *, registered: bool) -> Any:
        """One document from Redis; reading an APQ one pushes its expiry back (GETEX)."""
        if registered:
            return await self._redis.get(self.registered_key(sha256_hex))
        return await self._redis.getex(self.key(sha256_hex), ex=self._ttl_s)

    async def get(self, sha256_hex: str) -> str | None:
        """The APQ or registered document for a hash, or None.

        Raises `Unavailable` if only Redis could say.
        """
        return await self._lookup(sha256_hex, registered_only=False)

    async def get_registered(self, sha256_hex: str) -> str | None:
        """The registered document for a hash, or None; APQ documents do not count."""
        return await self._lookup(sha256_hex, registered_only=True)

    async def _lookup(self, sha256_hex: str, *, registered_only: bool) -> str | None:
        cached = self._local.get(sha256_hex)
        if cached is None or (registered_only and not cached.registered):
            return await self._fetch(sha256_hex, registered_only=registered_only)
        self._local.move_to_end(sha256_hex)
        if time.monotonic() - cached.checked_at < self._refresh_s:
            return cached.query
        try:
            raw = await self._read(sha256_hex, registered=cached.registered)
        except Exception as exc:  # the document is in hand; refresh next time
            log.warning("could not refresh persisted query %s: %s", sha256_hex[:12], exc)
            return cached.query
        if raw is None:  # expired, or deleted by an operator: every replica forgets it
            del self._local[sha256_hex]
            if cached.registered:
                return None
            # The APQ copy is gone, but the document may be registered as well.
            return await self._fetch(sha256_hex, registered_only=False)
        return self._remember(sha256_hex, cached.query, registered=cached.registered)

    async def _fetch(self, sha256_hex: str, *, registered_only: bool) -> str | None:
        """From Redis: the APQ document unless `registered_only`, else the registered one."""
        try:
            if not registered_only:
                raw = await self._read(sha256_hex, registered=False)
                if raw is not None:
                    return self._remember(sha256_hex, _text(raw), registered=False)
            raw = await self._read(sha256_hex, registered=True)
        except Exception as exc:
            raise classify(exc, "redis") from exc
        if raw is None:
            return None
        return self._remember(sha256_hex, _text(raw), registered=True)

    async def put(self, sha256_hex: str, query: str) -> None:
        """Cache an APQ document under its hash, for `ttl_s` after its last use.

        A hash that does not match is a caller bug.
        """
        _check_hash(sha256_hex, query)
        try:
            await self._redis.set(self.key(sha256_hex), query.encode("utf-8"), ex=self._ttl_s)
        except Exception as exc:
            raise classify(exc, "redis") from exc
        cached = self._local.get(sha256_hex)
        # A registered document stays registered in the LRU: it outlives the APQ copy.
        registered = cached is not None and cached.registered
        self._remember(sha256_hex, query, registered=registered)

    async def register(self, sha256_hex: str, query: str) -> None:
        """Register a document for persisted-only mode; it never expires.

        Idempotent. A hash that does not match is a caller bug.
        """
        _check_hash(sha256_hex, query)
        try:
            # A plain SET: no expiry, and none kept from an earlier value.
            await self._redis.set(self.registered_key(sha256_hex), query.encode("utf-8"))
        except Exception as exc:
            raise classify(exc, "redis") from exc
        self._remember(sha256_hex, query, registered=True)

    async def contains(self, sha256_hex: str) -> bool:
        return await self.get(sha256_hex) is not None

    async def is_registered(self, sha256_hex: str) -> bool:
        return await self.get_registered(sha256_hex) is not None


def _check_hash(sha256_hex: str, query: str) -> None:
    if query_hash(query) != sha256_hex:
        raise ValueError(f"{sha256_hex} is not the SHA-256 of the given query")


async def resolve_query(
    store: PersistedQueryStore,
    query: str | None,
    extensions: Mapping[str, Any] | None,
    *,
    persisted_only: bool,
) -> tuple[str, str | None]:
    """The document to run and its hash (None for an ad-hoc document), per Apollo APQ.
    Stores nothing: see `store_sent_query`.

    Raises `PersistedQueryError` for protocol errors and `Unavailable` when a hash-only
    request can be answered by Redis alone and Redis is down.
    """
    persisted = extensions.get("persistedQuery") if isinstance(extensions, Mapping) else None
    if persisted is None:  # absent or JSON null: an ad-hoc document
        if not isinstance(query, str) or not query.strip():
            raise PersistedQueryError(400, BAD_USER_INPUT, "no GraphQL query in the request")
        if persisted_only:
            raise PersistedQueryError(
                400, PERSISTED_QUERY_REQUIRED, "this server only executes persisted queries"
            )
        return query, None

    version = persisted.get("version") if isinstance(persisted, Mapping) else None
    # `type(...) is int`: JSON true and 1.0 compare equal to 1 but are not version 1.
    if not isinstance(persisted, Mapping) or type(version) is not int or version != APQ_VERSION:
        raise PersistedQueryError(
            400,
            PERSISTED_QUERY_NOT_SUPPORTED,
            f"persisted query version {version} is not supported",
        )
    sha = persisted.get("sha256Hash")
    if not isinstance(sha, str) or not _HASH.fullmatch(sha):
        raise PersistedQueryError(
            400, BAD_USER_INPUT, "persistedQuery.sha256Hash must be 64 lowercase hex digits"
        )

    if query is not None and query != "":
        if not isinstance(query, str):
            raise PersistedQueryError(400, BAD_USER_INPUT, "query must be a string")
        try:
            matches = query_hash(query) == sha
        except UnicodeEncodeError:  # a lone surrogate from JSON: no UTF-8 text to hash
            raise PersistedQueryError(400, BAD_USER_INPUT, "query is not valid Unicode") from None
        if not matches:
            raise PersistedQueryError(400, BAD_USER_INPUT, "provided sha does not match query")
        if persisted_only and not await store.is_registered(sha):
            raise PersistedQueryError(
                400, PERSISTED_QUERY_REQUIRED, "this server only executes registered queries"
            )
        return query, sha

    stored = await (store.get_registered(sha) if persisted_only else store.get(sha))
    if stored is None:
        # Apollo clients match this message and code, then resend with the query.
        raise PersistedQueryError(200, PERSISTED_QUERY_NOT_FOUND, "PersistedQueryNotFound")
    return stored, sha


async def store_sent_query(
    store: PersistedQueryStore,
    sent: object,
    sha: str | None,
    *,
    persisted_only: bool,
) -> None:
    """Keep a document the client sent with its hash (`sent` is the request's `query`),
    for later hash-only requests. Call it once the document parsed and validated and the
    caller was charged. Hash-only requests, ad-hoc documents and persisted-only mode store
    nothing; a store that fails is logged, since the request has its document in hand.
    """
    if persisted_only or sha is None or not isinstance(sent, str) or not sent:
        return
    try:
        await store.put(sha, sent)
    except NovaError as exc:  # only later hash-only requests miss
        log.warning("could not store persisted query %s: %s", sha[:12], exc)
