"""The audit log: every moderation action and role change, who made it, on what, when and
why. The table is append-only (a trigger refuses UPDATE, DELETE and TRUNCATE)."""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import asyncpg

from storage.db import Database


@dataclass(frozen=True)
class AuditEntry:
    id: int
    at: datetime
    actor_id: uuid.UUID | None
    action: str
    target_type: str
    target_id: uuid.UUID | None
    note: str | None
    details: dict[str, Any]


@dataclass(frozen=True)
class Audit:
    """An audit row to write with an action."""

    actor_id: uuid.UUID | None
    action: str
    target_type: str
    target_id: uuid.UUID | None
    note: str | None = None
    details: dict[str, Any] = field(default_factory=dict)


async def add_audit(conn: asyncpg.Connection, entry: Audit) -> None:
    await conn.execute(
        """
        INSERT INTO audit_log (actor_id, action, target_type, target_id, note, details)
        VALUES ($1, $2, $3, $4, $5, $6::jsonb)
        """,
        entry.actor_id,
        entry.action,
        entry.target_type,
        entry.target_id,
        entry.note,
        json.dumps(entry.details),
    )


class AuditStore:
    def __init__(self, db: Database) -> None:
        self._db = db

    async def record(self, entry: Audit) -> None:
        async with self._db.transaction() as conn:
            await add_audit(conn, entry)

    async def page(self, before_id: int | None, limit: int) -> list[AuditEntry]:
        """The log, newest first, older than `before_id`."""
        async with self._db.connection() as conn:
            rows = await conn.fetch(
                """
                SELECT id, at, actor_id, action, target_type, target_id, note, details
                FROM audit_log WHERE $1::bigint IS NULL OR id < $1
                ORDER BY id DESC LIMIT $2
                """,
                before_id,
                limit,
            )
        return [AuditEntry(**{**dict(row), "details": json.loads(row["details"])}) for row in rows]
