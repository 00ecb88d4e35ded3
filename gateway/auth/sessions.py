"""A user's own sessions: the devices signed in, ending one, and changing the password.

A session is one sign-in (`auth_sessions`): its refresh-token family and every access
token issued from it carry its id. Revoking it refuses its refresh tokens at once (in
PostgreSQL) and its access tokens at once (`Revocations`, in Redis), not only when they
expire. Changing the password ends every session but the one that changed it, as a
password reset ends them all, and mails the account a notice (`identity.password.changed`),
so a stolen session cannot outlive the owner noticing.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime

import asyncpg

from gateway.auth.passwords import Passwords, check_policy
from gateway.auth.revocation import Revocations
from gateway.auth.tokens import AccessClaims
from storage.db import Database
from storage.errors import InvalidInput, NotFound
from storage.events import Event
from storage.outbox.rows import add_event

PASSWORD_CHANGED = "identity.password.changed"


@dataclass(frozen=True)
class SessionRecord:
    id: uuid.UUID
    created_at: datetime
    last_used_at: datetime
    expires_at: datetime
    user_agent: str | None
    ip: str | None

    @classmethod
    def from_row(cls, row: asyncpg.Record) -> SessionRecord:
        return cls(
            id=row["id"],
            created_at=row["created_at"],
            last_used_at=row["last_used_at"],
            expires_at=row["expires_at"],
            user_agent=row["user_agent"],
            ip=row["ip"],
        )


async def revoke(conn: asyncpg.Connection, session_ids: list[uuid.UUID], reason: str) -> None:
    """Revoke sessions in PostgreSQL; callers then refuse their access tokens in Redis."""
    await conn.execute(
        """
        UPDATE auth_sessions SET revoked_at = now(), revoked_reason = $2
        WHERE id = ANY($1) AND revoked_at IS NULL
        """,
        session_ids,
        reason,
    )


async def set_password(
    conn: asyncpg.Connection,
    user_id: uuid.UUID,
    new_hash: str,
    *,
    reason: str,
    keep: uuid.UUID | None = None,
    expected_hash: str | None = None,
) -> list[uuid.UUID]:
    """Store a new password hash and end the account's sessions (all but `keep`).

    With `expected_hash`, only if the stored hash is still that one: a change raced by
    another is refused. Returns the sessions ended, for the caller to refuse their access
    tokens in Redis once this transaction has committed."""
    status = await conn.execute(
        """
        UPDATE users SET password_hash = $2, password_changed_at = now(),
                         version = version + 1, updated_at = now()
        WHERE id = $1 AND ($3::text IS NULL OR password_hash = $3)
        """,
        user_id,
        new_hash,
        expected_hash,
    )
    if status.split()[-1] != "1":
        raise InvalidInput("the password was changed meanwhile; try again")
    rows = await conn.fetch(
        """
        UPDATE auth_sessions SET revoked_at = now(), revoked_reason = $3
        WHERE user_id = $1 AND revoked_at IS NULL AND id IS DISTINCT FROM $2
        RETURNING id
        """,
        user_id,
        keep,
        reason,
    )
    return [row["id"] for row in rows]


class Sessions:
    def __init__(self, db: Database, passwords: Passwords, revocations: Revocations) -> None:
        self._db = db
        self._passwords = passwords
        self._revocations = revocations

    async def active(
        self, user_id: uuid.UUID, limit: int, before: tuple[datetime, uuid.UUID] | None
    ) -> list[SessionRecord]:
        """Live sessions, newest sign-in first; `limit + 1` rows tell if more exist.

        Paged by when each session began, which never changes: by last use, a session
        refreshed between two pages would move to the front and be skipped."""
        rows = await self._db.fetch(
            """
            SELECT id, created_at, last_used_at, expires_at, user_agent, ip
            FROM auth_sessions
            WHERE user_id = $1 AND revoked_at IS NULL AND expires_at > now()
              AND ($2::timestamptz IS NULL OR (created_at, id) < ($2, $3::uuid))
            ORDER BY created_at DESC, id DESC LIMIT $4
            """,
            user_id,
            before[0] if before else None,
            before[1] if before else None,
            limit + 1,
        )
        return [SessionRecord.from_row(row) for row in rows]

    async def revoke_one(self, user_id: uuid.UUID, session_id: uuid.UUID) -> bool:
        """End one of the user's sessions; False if it had already ended."""
        async with self._db.transaction() as conn:
            row = await conn.fetchrow(
                "SELECT revoked_at IS NULL AND expires_at > now() AS live FROM auth_sessions"
                " WHERE id = $1 AND user_id = $2 FOR UPDATE",
                session_id,
                user_id,
            )
            if row is None:
                raise NotFound("session not found")
            if not row["live"]:
                return False
            await revoke(conn, [session_id], "revoked by the user")
        await self._revocations.revoke_sessions([session_id])
        return True

    async def change_password(self, claims: AccessClaims, current: str, new: str) -> int:
        """Set a new password if `current` is right; end the user's other sessions.

        Returns how many other sessions were ended."""
        user_id = claims.user_id
        row = await self._db.fetchrow(
            "SELECT username, email, password_hash FROM users WHERE id = $1", user_id
        )
        if row is None:
            raise NotFound("account not found")
        if not await self._passwords.verify(row["password_hash"], current):
            raise InvalidInput("the current password is wrong")
        if new == current:
            raise InvalidInput("the new password must differ from the current one")
        check_policy(new, username=row["username"], email=row["email"])
        new_hash = await self._passwords.hash(new)
        async with self._db.transaction() as conn:
            ended = await set_password(
                conn,
                user_id,
                new_hash,
                reason="password changed",
                keep=claims.session_id,
                expected_hash=row["password_hash"],  # not if another device or a reset won
            )
            await add_event(
                conn,
                Event(
                    PASSWORD_CHANGED,
                    str(user_id),
                    {
                        "user_id": str(user_id),
                        "email": row["email"],
                        "username": row["username"],
                        "changed_at": datetime.now(UTC).isoformat(),
                    },
                ),
            )
        await self._revocations.revoke_sessions(ended)
        return len(ended)
