"""What a backup and a restore ask of the database beyond pg_dump and pg_restore.

A backup records the schema version it was taken at and a few counts, so an operator can
tell backups apart and a restore can refuse one made by a newer Nova. A restore empties
the database before pg_restore fills it, and afterwards forgets what belonged to the stack
the backup came from rather than to the data:

* its JWT signing keys: they are sealed with that stack's `NOVA_SECRET_KEY`, and the
  revocations of the tokens they signed lived in that stack's Redis, which a backup does not
  hold. Without them every earlier access token is refused and clients refresh once
  (sessions and refresh tokens are rows, restored with the rest);
* its broker: the floors under the old log's offsets mean nothing to the new broker, so a
  new broker epoch starts and every retained event is sent again
  (`storage.outbox.broker_loss.start_new_epoch`). Consumers' ledgers are restored with the
  events, so each consumer applies only what it had not applied when the backup was taken;
* its topic catalogue's partition counts: they describe the old broker's topics.

These run on an administrative connection of their own (`admin_connection`), without the
pool's statement timeout: re-driving a week of events is one long UPDATE.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

import asyncpg

from storage.errors import classify
from storage.outbox.broker_loss import start_new_epoch
from storage.settings import StorageSettings

# How long emptying the database waits for another session's locks before it gives up:
# a client still connected mid-transaction (a psql left open, a worker not stopped).
LOCK_TIMEOUT = "30s"


@dataclass(frozen=True)
class SchemaVersion:
    version: int
    name: str


@asynccontextmanager
async def admin_connection(settings: StorageSettings) -> AsyncIterator[asyncpg.Connection]:
    """A direct connection (`NOVA_DATABASE_DIRECT_URL`) with no statement timeout."""
    try:
        conn = await asyncpg.connect(
            settings.direct_database_url,
            timeout=settings.pg_connect_timeout_s,
            command_timeout=None,
        )
    except Exception as exc:
        raise classify(exc) from exc
    try:
        await conn.execute("SET statement_timeout = 0")
        yield conn
    finally:
        await conn.close()


async def schema_version(conn: asyncpg.Connection) -> SchemaVersion | None:
    """The newest migration applied, or None for a database Nova never migrated."""
    if await conn.fetchval("SELECT to_regclass('schema_migrations') IS NULL"):
        return None
    row = await conn.fetchrow(
        "SELECT version, name FROM schema_migrations ORDER BY version DESC LIMIT 1"
    )
    return None if row is None else SchemaVersion(row["version"], row["name"])


async def user_count(conn: asyncpg.Connection) -> int:
    """Accounts in the database; 0 when it has no `users` table yet."""
    if await conn.fetchval("SELECT to_regclass('users') IS NULL"):
        return 0
    count: int = await conn.fetchval("SELECT count(*) FROM users")
    return count


async def contents(conn: asyncpg.Connection) -> dict[str, int]:
    """A few counts that say what a database holds, for a backup's manifest."""
    if await conn.fetchval("SELECT to_regclass('users') IS NULL"):
        return {}
    row = await conn.fetchrow(
        """
        SELECT (SELECT count(*) FROM users) AS users,
               (SELECT count(*) FROM posts WHERE deleted_at IS NULL) AS posts,
               (SELECT count(*) FROM follows) AS follows,
               (SELECT count(*) FROM likes) AS likes,
               (SELECT count(*) FROM comments) AS comments,
               (SELECT count(*) FROM chat_messages) AS messages,
               (SELECT count(*) FROM media) AS media,
               (SELECT count(*) FROM outbox WHERE published_at IS NULL) AS unpublished_events
        """
    )
    return dict(row)


async def empty_database(conn: asyncpg.Connection) -> None:
    """Drop everything in the `public` schema (tables, their rows, pg_trgm) and make it
    again, empty: what pg_restore expects to fill."""
    async with conn.transaction():
        await conn.execute(f"SET LOCAL lock_timeout = '{LOCK_TIMEOUT}'")
        await conn.execute("DROP SCHEMA public CASCADE")
        await conn.execute("CREATE SCHEMA public")


async def forget_signing_keys(conn: asyncpg.Connection) -> int:
    """Delete every JWT signing key; the gateway makes a new one sealed with this stack's
    `NOVA_SECRET_KEY` (`gateway.auth.tokens.ensure_signing_key`)."""
    result: str = await conn.execute("DELETE FROM signing_keys")
    return int(result.split()[-1])


async def adopt_topic_partitions(conn: asyncpg.Connection, partitions: dict[str, int]) -> None:
    """Set the catalogue's partition counts to this stack's (`partitions`, by topic)."""
    await conn.execute(
        """
        UPDATE kafka_topics SET partitions = wanted.partitions
        FROM unnest($1::text[], $2::int[]) AS wanted (name, partitions)
        WHERE kafka_topics.name = wanted.name
        """,
        list(partitions),
        list(partitions.values()),
    )


async def start_event_log_again(conn: asyncpg.Connection, reason: str) -> int:
    """A new broker epoch, no floors, every retained event unpublished; how many events
    the relays will send again."""
    async with conn.transaction():
        _, redriven = await start_new_epoch(conn, None, reason)
    return redriven or 0
