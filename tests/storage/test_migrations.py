"""The migration runner against a scratch database on the real PostgreSQL."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import asyncpg
import pytest

from deployments.settings import Settings
from storage.errors import StorageError
from storage.migrate import Migration, load_migrations, migrate

pytestmark = pytest.mark.stack


@pytest.fixture
async def scratch(settings: Settings) -> AsyncIterator[asyncpg.Connection]:
    name = f"scratch_{uuid.uuid4().hex[:8]}"
    admin = await asyncpg.connect(settings.database_url)
    await admin.execute(f'CREATE DATABASE "{name}"')
    conn = await asyncpg.connect(settings.database_url.rsplit("/", 1)[0] + f"/{name}")
    try:
        yield conn
    finally:
        await conn.close()
        await admin.execute(f'DROP DATABASE "{name}"')
        await admin.close()


async def test_migrations_apply_once_and_are_recorded(scratch: asyncpg.Connection) -> None:
    first = await migrate(scratch)
    assert first == [f"{m.version:04d}_{m.name}" for m in load_migrations()]
    assert await migrate(scratch) == []
    recorded = await scratch.fetch("SELECT version, checksum FROM schema_migrations ORDER BY 1")
    assert [(r["version"], r["checksum"]) for r in recorded] == [
        (m.version, m.checksum) for m in load_migrations()
    ]
    assert await scratch.fetchval("SELECT epoch FROM broker_state") == 0


async def test_an_edited_applied_migration_is_refused(scratch: asyncpg.Connection) -> None:
    original = Migration(1, "first", "CREATE TABLE t (id int)")
    await migrate(scratch, [original])
    edited = Migration(1, "first", "CREATE TABLE t (id bigint)")
    with pytest.raises(StorageError, match="edited after it was applied"):
        await migrate(scratch, [edited])


async def test_a_failing_migration_leaves_nothing_behind(scratch: asyncpg.Connection) -> None:
    broken = Migration(1, "broken", "CREATE TABLE half (id int); SELECT no_such_function();")
    with pytest.raises(asyncpg.PostgresError):
        await migrate(scratch, [broken])
    assert await scratch.fetchval("SELECT to_regclass('half')") is None
    assert await scratch.fetchval("SELECT count(*) FROM schema_migrations") == 0
