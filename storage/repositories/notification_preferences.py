"""Notification preferences in PostgreSQL: which kinds notify in the app and by email, the
email switch an unsubscribe link turns off, and the users and rooms someone muted.

A user without a row has the defaults (`DEFAULT_IN_APP`, `DEFAULT_EMAIL`); the first change
writes the whole row. The notifications consumer reads many users' preferences in one
query per batch (`preferences_of`), in its ledger's transaction.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace

import asyncpg

from storage.db import Database
from storage.repositories.notifications import KINDS

DEFAULT_IN_APP: frozenset[str] = frozenset(KINDS)
# Likes and shares come in numbers and are the least personal: app only, by default.
DEFAULT_EMAIL: frozenset[str] = frozenset({"follow", "comment", "mention", "message"})


@dataclass(frozen=True)
class Preferences:
    user_id: uuid.UUID
    in_app: frozenset[str] = DEFAULT_IN_APP
    email: frozenset[str] = DEFAULT_EMAIL
    email_enabled: bool = True
    muted_users: frozenset[uuid.UUID] = frozenset()
    muted_rooms: frozenset[uuid.UUID] = frozenset()

    def wants_in_app(self, kind: str, actor: uuid.UUID, room: uuid.UUID | None) -> bool:
        """Whether a notification of `kind` by `actor` (in `room`) goes to the inbox."""
        return (
            kind in self.in_app
            and actor not in self.muted_users
            and (room is None or room not in self.muted_rooms)
        )


_SELECT = """
SELECT u.id AS user_id, p.in_app_kinds, p.email_kinds,
       coalesce(p.email_enabled, true) AS email_enabled,
       ARRAY(SELECT m.muted_id FROM notification_muted_users m
             WHERE m.user_id = u.id ORDER BY m.created_at DESC) AS muted_users,
       ARRAY(SELECT r.room_id FROM notification_muted_rooms r
             WHERE r.user_id = u.id ORDER BY r.created_at DESC) AS muted_rooms
FROM unnest($1::uuid[]) AS u(id)
LEFT JOIN notification_preferences p ON p.user_id = u.id
"""


def _preferences(row: asyncpg.Record) -> Preferences:
    in_app, email = row["in_app_kinds"], row["email_kinds"]
    return Preferences(
        user_id=row["user_id"],
        in_app=DEFAULT_IN_APP if in_app is None else frozenset(in_app),
        email=DEFAULT_EMAIL if email is None else frozenset(email),
        email_enabled=row["email_enabled"],
        muted_users=frozenset(row["muted_users"]),
        muted_rooms=frozenset(row["muted_rooms"]),
    )


async def preferences_of(
    conn: asyncpg.Connection, user_ids: Iterable[uuid.UUID]
) -> dict[uuid.UUID, Preferences]:
    """Each user's preferences (the defaults for those who never changed them)."""
    ids = sorted(set(user_ids))
    if not ids:
        return {}
    rows = await conn.fetch(_SELECT, ids)
    return {row["user_id"]: _preferences(row) for row in rows}


async def muted_user_order(conn: asyncpg.Connection, user_id: uuid.UUID) -> list[uuid.UUID]:
    """Muted users, most recently muted first (as the API lists them)."""
    rows = await conn.fetch(
        "SELECT muted_id FROM notification_muted_users WHERE user_id = $1"
        " ORDER BY created_at DESC, muted_id",
        user_id,
    )
    return [row["muted_id"] for row in rows]


async def save_kinds(
    conn: asyncpg.Connection,
    user_id: uuid.UUID,
    in_app: Iterable[str],
    email: Iterable[str],
    email_enabled: bool,
) -> None:
    await conn.execute(
        """
        INSERT INTO notification_preferences (user_id, in_app_kinds, email_kinds, email_enabled)
        VALUES ($1, $2, $3, $4)
        ON CONFLICT (user_id) DO UPDATE SET in_app_kinds = EXCLUDED.in_app_kinds,
            email_kinds = EXCLUDED.email_kinds, email_enabled = EXCLUDED.email_enabled,
            updated_at = clock_timestamp()
        """,
        user_id,
        sorted(in_app),
        sorted(email),
        email_enabled,
    )


async def lock_preferences(conn: asyncpg.Connection, user_id: uuid.UUID) -> None:
    """Hold the user's row (written with the defaults if they had none) until commit."""
    await conn.execute(
        "INSERT INTO notification_preferences (user_id, in_app_kinds, email_kinds)"
        " VALUES ($1, $2, $3) ON CONFLICT DO NOTHING",
        user_id,
        sorted(DEFAULT_IN_APP),
        sorted(DEFAULT_EMAIL),
    )
    await conn.execute(
        "SELECT 1 FROM notification_preferences WHERE user_id = $1 FOR UPDATE", user_id
    )


async def user_exists(conn: asyncpg.Connection, user_id: uuid.UUID) -> bool:
    found: bool = await conn.fetchval("SELECT EXISTS (SELECT 1 FROM users WHERE id = $1)", user_id)
    return found


async def is_room_member(conn: asyncpg.Connection, user_id: uuid.UUID, room_id: uuid.UUID) -> bool:
    found: bool = await conn.fetchval(
        "SELECT EXISTS (SELECT 1 FROM chat_members"
        " WHERE room_id = $1 AND user_id = $2 AND left_at IS NULL)",
        room_id,
        user_id,
    )
    return found


async def set_user_muted(
    conn: asyncpg.Connection, user_id: uuid.UUID, other: uuid.UUID, muted: bool
) -> None:
    if muted:
        await conn.execute(
            "INSERT INTO notification_muted_users (user_id, muted_id) VALUES ($1, $2)"
            " ON CONFLICT DO NOTHING",
            user_id,
            other,
        )
    else:
        await conn.execute(
            "DELETE FROM notification_muted_users WHERE user_id = $1 AND muted_id = $2",
            user_id,
            other,
        )


async def set_room_muted(
    conn: asyncpg.Connection, user_id: uuid.UUID, room_id: uuid.UUID, muted: bool
) -> None:
    if muted:
        await conn.execute(
            "INSERT INTO notification_muted_rooms (user_id, room_id) VALUES ($1, $2)"
            " ON CONFLICT DO NOTHING",
            user_id,
            room_id,
        )
    else:
        await conn.execute(
            "DELETE FROM notification_muted_rooms WHERE user_id = $1 AND room_id = $2",
            user_id,
            room_id,
        )


class PreferenceStore:
    """Preferences as the gateway reads and changes them; each method one transaction."""

    def __init__(self, db: Database) -> None:
        self._db = db

    async def get(self, user_id: uuid.UUID) -> Preferences:
        async with self._db.connection() as conn:
            return (await preferences_of(conn, [user_id]))[user_id]

    async def muted_users(self, user_id: uuid.UUID) -> list[uuid.UUID]:
        async with self._db.connection() as conn:
            return await muted_user_order(conn, user_id)

    async def update(
        self, user_id: uuid.UUID, change: Callable[[Preferences], Preferences]
    ) -> Preferences:
        """Apply `change` to the current preferences under a row lock, so concurrent
        changes (an update and an unsubscribe link, say) never undo each other."""
        async with self._db.transaction() as conn:
            await lock_preferences(conn, user_id)
            wanted = change((await preferences_of(conn, [user_id]))[user_id])
            await save_kinds(conn, user_id, wanted.in_app, wanted.email, wanted.email_enabled)
            return (await preferences_of(conn, [user_id]))[user_id]

    async def email_off(self, user_id: uuid.UUID, kind: str | None) -> bool:
        """Unsubscribe: email off altogether (`kind` None) or for one kind. False if the
        account is gone."""
        async with self._db.connection() as conn:
            if not await user_exists(conn, user_id):
                return False

        def off(current: Preferences) -> Preferences:
            if kind is None:
                return replace(current, email_enabled=False)
            return replace(current, email=current.email - {kind})

        await self.update(user_id, off)
        return True

    async def mute_user(self, user_id: uuid.UUID, other: uuid.UUID, muted: bool) -> bool:
        """False if `other` does not exist."""
        async with self._db.transaction() as conn:
            if not await user_exists(conn, other):
                return False
            await set_user_muted(conn, user_id, other, muted)
            return True

    async def mute_room(self, user_id: uuid.UUID, room_id: uuid.UUID, muted: bool) -> bool:
        """False if the user is not a member of the room (muting); unmuting always works."""
        async with self._db.transaction() as conn:
            if muted and not await is_room_member(conn, user_id, room_id):
                return False
            await set_room_muted(conn, user_id, room_id, muted)
            return True
