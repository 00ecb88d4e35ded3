"""PostgreSQL access: one asyncpg pool with bounded connect, acquire and statement times.

`Database.transaction()` is the unit of work: repositories, the outbox and consumers all
write inside it, and driver errors leave it already classified (see `storage.errors`).

TLS is the URL's: `?sslmode=verify-full&sslrootcert=CA` (and `sslcert`, `sslkey` for a
client certificate), which asyncpg reads as libpq does. A connection that fails on TLS
says which of them to look at.
"""

from __future__ import annotations

import asyncio
import json
import ssl
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import asyncpg

from storage.errors import NovaError, Unavailable, classify
from storage.settings import StorageSettings

Connection = asyncpg.Connection

_DRIVER_ERRORS = (asyncpg.PostgresError, asyncpg.InterfaceError, OSError, TimeoutError)


async def _init_connection(conn: asyncpg.Connection) -> None:
    # JSON columns come back as Python objects and go in from them.
    for type_name in ("json", "jsonb"):
        await conn.set_type_codec(
            type_name, encoder=json.dumps, decoder=json.loads, schema="pg_catalog"
        )


QueryLogger = Callable[[Any], None]


def _classified(exc: BaseException) -> NovaError:
    """`classify`, except that a TLS failure names the URL parameter to look at."""
    problem = _tls_problem(exc)
    return Unavailable("postgresql", problem) if problem else classify(exc)


def _tls_problem(exc: BaseException) -> str | None:
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, ssl.SSLCertVerificationError):
            return (
                f"TLS: the server's certificate did not verify ({seen.verify_message}): "
                "`sslrootcert` in the database URL must be the CA that signed it, and with "
                "`sslmode=verify-full` it must name the URL's host"
            )
        if isinstance(seen, ssl.SSLError):
            return (
                f"TLS failed ({seen.reason or seen}): check `sslcert`, `sslkey` and "
                "`sslrootcert` in the database URL"
            )
        if isinstance(seen, ConnectionError) and "rejected SSL upgrade" in str(seen):
            return "TLS: the server does not offer TLS (`ssl = on`), which `sslmode` requires"
        seen = seen.__cause__ or seen.__context__
    return None


async def _keep_session(_: asyncpg.Connection) -> None:
    """Release without asyncpg's reset query (`CLOSE ALL; UNLISTEN *; RESET ALL; ...`).

    That query is one more round trip on every release. Pooled connections never change
    session state: settings are fixed at connect, locks are transaction-scoped, LISTEN and
    migrations use dedicated connections (`connect_raw`). asyncpg still rolls back an open
    transaction and drops listeners before a connection goes back to the pool.
    """


class Database:
    """A connection pool plus the timeouts that bound every wait on PostgreSQL."""

    def __init__(self, pool: asyncpg.Pool, settings: StorageSettings) -> None:
        self._pool = pool
        self._settings = settings

    @classmethod
    async def connect(
        cls,
        settings: StorageSettings,
        *,
        application_name: str = "nova",
        query_logger: QueryLogger | None = None,
    ) -> Database:
        """Open the pool. `query_logger` sees every statement run (tests count them)."""

        async def init(conn: asyncpg.Connection) -> None:
            await _init_connection(conn)
            if query_logger is not None:
                conn.add_query_logger(query_logger)

        try:
            pool = await asyncio.wait_for(
                asyncpg.create_pool(
                    settings.database_url,
                    min_size=settings.pg_pool_min_size,
                    max_size=settings.pg_pool_max_size,
                    timeout=settings.pg_connect_timeout_s,
                    command_timeout=settings.pg_command_timeout_s,
                    statement_cache_size=settings.pg_statement_cache_size,
                    init=init,
                    reset=_keep_session,
                    server_settings={
                        "application_name": application_name,
                        "statement_timeout": str(settings.pg_statement_timeout_ms),
                    },
                ),
                timeout=settings.pg_connect_timeout_s * 2,
            )
        except Exception as exc:
            raise Unavailable("postgresql", f"cannot open pool: {_classified(exc)}") from exc
        return cls(pool, settings)

    @property
    def settings(self) -> StorageSettings:
        return self._settings

    @asynccontextmanager
    async def connection(self) -> AsyncIterator[asyncpg.Connection]:
        """A pooled connection; driver errors (from acquiring or from the body) are classified."""
        try:
            async with self._pool.acquire(timeout=self._settings.pg_acquire_timeout_s) as conn:
                yield conn
        except _DRIVER_ERRORS as exc:
            raise _classified(exc) from exc

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[asyncpg.Connection]:
        """A connection inside a transaction; commit on exit, rollback on error."""
        async with self.connection() as conn:
            tx = conn.transaction()
            await tx.start()
            try:
                yield conn
            except BaseException:
                await tx.rollback()
                raise
            else:
                await tx.commit()

    async def fetchval(self, query: str, *args: Any) -> Any:
        async with self.connection() as conn:
            return await conn.fetchval(query, *args)

    async def fetchrow(self, query: str, *args: Any) -> asyncpg.Record:
        async with self.connection() as conn:
            return await conn.fetchrow(query, *args)

    async def fetch(self, query: str, *args: Any) -> list[asyncpg.Record]:
        async with self.connection() as conn:
            rows: list[asyncpg.Record] = await conn.fetch(query, *args)
            return rows

    async def ping(self, timeout_s: float) -> None:
        """Raise `Unavailable` unless PostgreSQL answers `SELECT 1` within `timeout_s`."""
        try:
            await asyncio.wait_for(self.fetchval("SELECT 1"), timeout_s)
        except Exception as exc:
            raise classify(exc) from exc

    async def close(self) -> None:
        try:
            await asyncio.wait_for(self._pool.close(), 5)
        except TimeoutError:
            self._pool.terminate()

    async def connect_raw(self) -> asyncpg.Connection:
        """A dedicated direct connection outside the pool, for `LISTEN` and migrations."""
        try:
            return await asyncpg.connect(
                self._settings.direct_database_url,
                timeout=self._settings.pg_connect_timeout_s,
                command_timeout=self._settings.pg_command_timeout_s,
            )
        except Exception as exc:
            raise _classified(exc) from exc
