"""Apollo automatic persisted queries: clients send a query's SHA-256 instead of its text.

Hashes map to documents in Redis (shared by every replica) with an in-process LRU in
front, so a hot document costs no round trip. In persisted-only mode
(`NOVA_PERSISTED_QUERIES_ONLY`) only documents an operator registered (`nova queries add`)
run; clients can neither send ad-hoc documents nor register new ones.
"""

from __future__ import annotations

import hashlib
import logging
import re
import time
from collections import OrderedDict
from collections.abc import Mapping
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
# A document served from the LRU still refreshes its Redis TTL this often; otherwise a
# query hot enough never to leave the LRU would expire in Redis for every other replica.
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


class PersistedQueryStore:
    """Documents by hash: an in-process LRU, then Redis (with a TTL refreshed on use)."""

    def __init__(
        self,
        redis: aioredis.Redis,
        *,
        ttl_s: int,
        local_cache_size: int = 1000,
        prefix: str = "nova:apq",
    ) -> None:
        if ttl_s < 1:
            raise ValueError("ttl_s must be at least 1")
        self._redis = redis
        self._ttl_s = ttl_s
        self._prefix = prefix
        self._local_size = max(0, local_cache_size)
        self._refresh_s = min(ttl_s / 2, _MAX_REFRESH_S)
        # hash -> (document, monotonic time its Redis TTL was last refreshed)
        self._local: OrderedDict[str, tuple[str, float]] = OrderedDict()

    def key(self, sha256_hex: str) -> str:
        return f"{self._prefix}:{sha256_hex}"

    def _remember(self, sha256_hex: str, query: str) -> None:
        if self._local_size == 0:
            return
        self._local[sha256_hex] = (query, time.monotonic())
        self._local.move_to_end(sha256_hex)
        while len(self._local) > self._local_size:
            self._local.popitem(last=False)

    async def get(self, sha256_hex: str) -> str | None:
        """The document for a hash, or None; raises `Unavailable` if only Redis could say."""
        cached = self._local.get(sha256_hex)
        if cached is not None:
            query, refreshed = cached
            self._local.move_to_end(sha256_hex)
            if time.monotonic() - refreshed < self._refresh_s:
                return query
            try:
                raw = await self._redis.getex(self.key(sha256_hex), ex=self._ttl_s)
            except Exception as exc:  # the document is in hand; refresh next time
                log.warning("could not refresh persisted query %s: %s", sha256_hex[:12], exc)
                return query
            if raw is None:  # deleted in Redis (by an operator): every replica forgets it
                del self._local[sha256_hex]
                return None
            self._remember(sha256_hex, query)
            return query
        try:
            raw = await self._redis.getex(self.key(sha256_hex), ex=self._ttl_s)
        except Exception as exc:
            raise classify(exc, "redis") from exc
        if raw is None:
            return None
        query = raw.decode("utf-8") if isinstance(raw, bytes) else str(raw)
        self._remember(sha256_hex, query)
        return query

    async def put(self, sha256_hex: str, query: str) -> None:
        """Store a document under its hash; a hash that does not match is a caller bug."""
        if query_hash(query) != sha256_hex:
            raise ValueError(f"{sha256_hex} is not the SHA-256 of the given query")
        try:
            await self._redis.set(self.key(sha256_hex), query.encode("utf-8"), ex=self._ttl_s)
        except Exception as exc:
            raise classify(exc, "redis") from exc
        self._remember(sha256_hex, query)

    async def contains(self, sha256_hex: str) -> bool:
        return await self.get(sha256_hex) is not None


async def resolve_query(
    store: PersistedQueryStore,
    query: str | None,
    extensions: Mapping[str, Any] | None,
    *,
    persisted_only: bool,
) -> tuple[str, str | None]:
    """The document to run and its hash (None for an ad-hoc document), per Apollo APQ.

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
        if persisted_only:
            if not await store.contains(sha):
                raise PersistedQueryError(
                    400, PERSISTED_QUERY_REQUIRED, "this server only executes registered queries"
                )
            return query, sha
        try:
            await store.put(sha, query)
        except NovaError as exc:  # the query is in hand; only later hash-only requests miss
            log.warning("could not store persisted query %s: %s", sha[:12], exc)
        return query, sha

    stored = await store.get(sha)
    if stored is None:
        # Apollo clients match this message and code, then resend with the query.
        raise PersistedQueryError(200, PERSISTED_QUERY_NOT_FOUND, "PersistedQueryNotFound")
    return stored, sha
