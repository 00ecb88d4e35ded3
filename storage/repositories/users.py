"""Users as every layer reads them: the record, its columns, and lookups by id or name.

Every change to a user bumps `users.version`, which caches use to refuse stale copies
(`gateway.services.users`).
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from datetime import datetime

import asyncpg

from storage.db import Database
from storage.rows import from_row, from_rows

USER_COLUMNS = (
    "id, username, email, display_name, bio, avatar_url, roles, "
    "email_verified_at IS NOT NULL AS email_verified, created_at, version"
)


@dataclass(frozen=True)
class UserRecord:
    id: uuid.UUID
    username: str
    email: str
    display_name: str | None
    bio: str | None
    avatar_url: str | None
    roles: tuple[str, ...]
    email_verified: bool
    created_at: datetime
    version: int

    def to_json(self) -> str:
        data = asdict(self)
        data["id"] = str(self.id)
        data["created_at"] = self.created_at.isoformat()
        return json.dumps(data)

    @classmethod
    def from_json(cls, raw: bytes | str) -> UserRecord:
        data = json.loads(raw)
        data["id"] = uuid.UUID(data["id"])
        data["created_at"] = datetime.fromisoformat(data["created_at"])
        data["roles"] = tuple(data["roles"])
        return cls(**data)


async def fetch_users(conn: asyncpg.Connection, ids: Sequence[uuid.UUID]) -> list[UserRecord]:
    rows = await conn.fetch(f"SELECT {USER_COLUMNS} FROM users WHERE id = ANY($1)", list(ids))
    return from_rows(UserRecord, rows)


async def fetch_user(conn: asyncpg.Connection, user_id: uuid.UUID) -> UserRecord | None:
    """One user, in the caller's transaction (identity reads it beside its writes)."""
    row = await conn.fetchrow(f"SELECT {USER_COLUMNS} FROM users WHERE id = $1", user_id)
    return None if row is None else from_row(UserRecord, row)


class UserStore:
    """User lookups on a pooled connection of their own (caches fill from these)."""

    def __init__(self, db: Database) -> None:
        self._db = db

    async def fetch(self, ids: Sequence[uuid.UUID]) -> list[UserRecord]:
        """The users among `ids` that exist, in no particular order."""
        async with self._db.connection() as conn:
            return await fetch_users(conn, ids)

    async def outside_domain(self, domain: str, limit: int) -> list[str]:
        """Usernames of up to `limit` accounts whose email is not at `domain`, newest first."""
        async with self._db.connection() as conn:
            rows = await conn.fetch(
                """
                SELECT username FROM users
                WHERE lower(email) NOT LIKE '%@' || lower($1)
                ORDER BY created_at DESC LIMIT $2
                """,
                domain,
                limit,
            )
        return [row["username"] for row in rows]
