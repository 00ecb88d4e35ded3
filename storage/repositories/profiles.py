"""Profiles and blocks: the parts of a user other users see, and who keeps whom away.

A block and the follows it removes (both ways, with their counters and events) commit in
one transaction: blocks and follows exclude each other.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Mapping

from storage.db import Database
from storage.errors import NotFound
from storage.events import Event
from storage.outbox.rows import add_event
from storage.repositories.counters import CounterRow
from storage.repositories.graph import Change, unfollow_both_ways, user_exists
from storage.repositories.keysets import Bound, Keyed, bound_args
from storage.repositories.users import USER_COLUMNS, UserRecord
from storage.rows import from_row, from_rows

# The profile fields a caller may change; only these names ever reach the SQL text.
PROFILE_FIELDS = frozenset({"display_name", "bio", "avatar_url"})


class ProfileStore:
    def __init__(self, db: Database) -> None:
        self._db = db

    async def find_by_username(self, username: str) -> uuid.UUID | None:
        """The id of the user named `username`, case-insensitively."""
        async with self._db.connection() as conn:
            user_id: uuid.UUID | None = await conn.fetchval(
                "SELECT id FROM users WHERE lower(username) = lower($1)", username
            )
        return user_id

    async def user(self, user_id: uuid.UUID) -> UserRecord | None:
        async with self._db.connection() as conn:
            row = await conn.fetchrow(f"SELECT {USER_COLUMNS} FROM users WHERE id = $1", user_id)
        return from_row(UserRecord, row) if row is not None else None

    async def update(
        self,
        user_id: uuid.UUID,
        fields: Mapping[str, str | None],
        event: Callable[[UserRecord], Event],
    ) -> UserRecord | None:
        """Set profile `fields` (a new user version) and write `event` of the new record.
        None: no such user (nothing written)."""
        names = list(fields)
        unknown = set(names) - PROFILE_FIELDS
        if unknown:
            raise ValueError(f"not profile fields: {sorted(unknown)}")
        assignments = ", ".join(f"{name} = ${i + 2}" for i, name in enumerate(names))
        async with self._db.transaction() as conn:
            row = await conn.fetchrow(
                f"""
                UPDATE users SET {assignments}, version = version + 1, updated_at = now()
                WHERE id = $1 RETURNING {USER_COLUMNS}
                """,
                user_id,
                *fields.values(),
            )
            if row is None:
                return None
            user = from_row(UserRecord, row)
            await add_event(conn, event(user))
        return user

    async def block(self, blocker: uuid.UUID, blocked: uuid.UUID, event: Event) -> Change:
        """Add the block with `event` unless it exists, and remove follows between the two
        (with their counters and events). An unknown `blocked` raises `NotFound`."""
        async with self._db.transaction() as conn:
            if not await user_exists(conn, blocked):
                raise NotFound("no such user")
            inserted = await conn.fetchval(
                """
                INSERT INTO blocks (blocker_id, blocked_id) VALUES ($1, $2)
                ON CONFLICT DO NOTHING RETURNING true
                """,
                blocker,
                blocked,
            )
            rows: list[CounterRow] = []
            if inserted:
                await add_event(conn, event)
                # Neither follows the other any more: blocks and follows exclude each other.
                rows = await unfollow_both_ways(conn, blocker, blocked)
        return Change(bool(inserted), rows)

    async def unblock(self, blocker: uuid.UUID, blocked: uuid.UUID, event: Event) -> bool:
        """Remove the block with `event`; False when there was none (nothing written)."""
        async with self._db.transaction() as conn:
            deleted = await conn.fetchval(
                "DELETE FROM blocks WHERE blocker_id = $1 AND blocked_id = $2 RETURNING true",
                blocker,
                blocked,
            )
            if deleted:
                await add_event(conn, event)
        return bool(deleted)

    async def has_blocked(self, blocker: uuid.UUID, blocked: uuid.UUID) -> bool:
        async with self._db.connection() as conn:
            found: bool = await conn.fetchval(
                "SELECT EXISTS (SELECT 1 FROM blocks WHERE blocker_id = $1 AND blocked_id = $2)",
                blocker,
                blocked,
            )
        return found

    async def blocked_users(
        self, blocker: uuid.UUID, after: Bound | None, limit: int
    ) -> list[Keyed]:
        """Whom `blocker` blocked, newest block first, older than `after`."""
        created_at, blocked = bound_args(after)
        async with self._db.connection() as conn:
            rows = await conn.fetch(
                """
                SELECT blocked_id AS id, created_at FROM blocks
                WHERE blocker_id = $1
                  AND ($2::timestamptz IS NULL OR (created_at, blocked_id) < ($2, $3::uuid))
                ORDER BY created_at DESC, blocked_id DESC
                LIMIT $4
                """,
                blocker,
                created_at,
                blocked,
                limit,
            )
        return from_rows(Keyed, rows)
