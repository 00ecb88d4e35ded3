"""Sign-in sessions (`auth_sessions`) and their refresh-token families (`refresh_tokens`).

A session is one sign-in; each refresh rotates its token, and presenting a token that was
already rotated means two holders have it, so the whole session is revoked in the same
transaction that notices. Tokens arrive here as digests (the gateway makes the secrets);
revoking in PostgreSQL is the source of truth, the gateway then refuses the sessions'
access tokens in Redis once the transaction has committed.
"""

from __future__ import annotations

import enum
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime

import asyncpg

from storage.db import Database
from storage.errors import InvalidInput, NotFound
from storage.events import Event
from storage.outbox.rows import add_event
from storage.repositories.users import UserRecord, fetch_user
from storage.rows import columns, from_rows


@dataclass(frozen=True)
class SessionRecord:
    """A live session as its owner lists it."""

    id: uuid.UUID
    created_at: datetime
    last_used_at: datetime
    expires_at: datetime
    user_agent: str | None
    ip: str | None


@dataclass(frozen=True)
class RefreshToken:
    """A refresh token to store: the digest of the secret handed out, and its expiry."""

    digest: bytes
    expires_at: datetime


@dataclass(frozen=True)
class NewSession:
    """A sign-in to open, with the first token of its refresh family."""

    id: uuid.UUID
    expires_at: datetime
    user_agent: str | None
    ip: str | None
    refresh: RefreshToken


class Refresh(enum.Enum):
    """What presenting a refresh token came to."""

    ROTATED = "rotated"  # exchanged: a new token of the family is stored
    UNKNOWN = "unknown"  # no such token
    REVOKED = "revoked"  # its session had been revoked already
    REUSED = "reused"  # it had been exchanged before: the session is revoked now
    EXPIRED = "expired"  # the token or its session has expired


@dataclass(frozen=True)
class Rotation:
    outcome: Refresh
    session_id: uuid.UUID | None = None  # ROTATED and REUSED
    user: UserRecord | None = None  # ROTATED: the session's user, for the access token


class Logout(enum.Enum):
    ENDED = "ended"
    UNKNOWN = "unknown"  # no such refresh token
    OTHER_ACCOUNT = "other_account"  # the token belongs to another account than the caller


@dataclass(frozen=True)
class LogoutResult:
    outcome: Logout
    session_id: uuid.UUID | None = None  # ENDED


class Ended(enum.Enum):
    """What ending one session by its id came to."""

    ENDED = "ended"
    ALREADY = "already"  # revoked or expired before
    NOT_FOUND = "not_found"  # no such session of that user


# -- in the caller's transaction ---------------------------------------------------------


async def open_session(conn: asyncpg.Connection, user_id: uuid.UUID, session: NewSession) -> None:
    """Insert a session and its first refresh token (a sign-in's write)."""
    await conn.execute(
        """
        INSERT INTO auth_sessions (id, user_id, expires_at, user_agent, ip)
        VALUES ($1, $2, $3, $4, $5)
        """,
        session.id,
        user_id,
        session.expires_at,
        session.user_agent,
        session.ip,
    )
    await add_refresh_token(conn, session.id, session.refresh)


async def add_refresh_token(
    conn: asyncpg.Connection, session_id: uuid.UUID, token: RefreshToken
) -> None:
    await conn.execute(
        "INSERT INTO refresh_tokens (token_hash, session_id, expires_at) VALUES ($1, $2, $3)",
        token.digest,
        session_id,
        token.expires_at,
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


# -- the store ---------------------------------------------------------------------------


class SessionStore:
    def __init__(self, db: Database) -> None:
        self._db = db

    async def rotate(
        self, digest: bytes, successor: RefreshToken, *, reuse_reason: str
    ) -> Rotation:
        """Exchange the token `digest` for `successor`, in one transaction that locks both
        the token and its session. A token already exchanged revokes its session (the
        family) right here, with `reuse_reason`; nothing is written in the other refusals."""
        async with self._db.transaction() as conn:
            row = await conn.fetchrow(
                """
                SELECT t.session_id, t.rotated_at, t.expires_at, s.revoked_at,
                       s.expires_at AS session_expires_at, s.user_id
                FROM refresh_tokens t JOIN auth_sessions s ON s.id = t.session_id
                WHERE t.token_hash = $1
                FOR UPDATE OF t, s
                """,
                digest,
            )
            if row is None:
                return Rotation(Refresh.UNKNOWN)
            now = datetime.now(UTC)
            session_id: uuid.UUID = row["session_id"]
            if row["revoked_at"] is not None:
                return Rotation(Refresh.REVOKED)
            if row["rotated_at"] is not None:
                # Someone presented a token that was already exchanged: one of the two
                # holders is not the user. Revoke the whole family (the session).
                await revoke(conn, [session_id], reuse_reason)
                return Rotation(Refresh.REUSED, session_id)
            if row["expires_at"] <= now or row["session_expires_at"] <= now:
                return Rotation(Refresh.EXPIRED)
            await conn.execute(
                "UPDATE refresh_tokens SET rotated_at = now() WHERE token_hash = $1", digest
            )
            await conn.execute(
                "UPDATE auth_sessions SET last_used_at = now() WHERE id = $1", session_id
            )
            user = await fetch_user(conn, row["user_id"])
            if user is None:  # sessions cascade with their user: cannot happen
                raise NotFound("the session's account does not exist")
            await add_refresh_token(conn, session_id, successor)
        return Rotation(Refresh.ROTATED, session_id, user)

    async def end_by_refresh_token(
        self, digest: bytes, *, owner: uuid.UUID | None, reason: str
    ) -> LogoutResult:
        """Revoke the session of the refresh token `digest` (logout); with `owner`, only if
        the session is that user's."""
        async with self._db.transaction() as conn:
            session = await conn.fetchrow(
                """
                SELECT s.id, s.user_id FROM refresh_tokens t
                JOIN auth_sessions s ON s.id = t.session_id
                WHERE t.token_hash = $1
                """,
                digest,
            )
            if session is None:
                return LogoutResult(Logout.UNKNOWN)
            if owner is not None and owner != session["user_id"]:
                return LogoutResult(Logout.OTHER_ACCOUNT)
            await revoke(conn, [session["id"]], reason)
        return LogoutResult(Logout.ENDED, session["id"])

    async def active(
        self, user_id: uuid.UUID, limit: int, before: tuple[datetime, uuid.UUID] | None
    ) -> list[SessionRecord]:
        """Live sessions, newest sign-in first, at most `limit` rows.

        Paged by when each session began, which never changes: by last use, a session
        refreshed between two pages would move to the front and be skipped."""
        async with self._db.connection() as conn:
            rows = await conn.fetch(
                f"""
                SELECT {columns(SessionRecord)}
                FROM auth_sessions
                WHERE user_id = $1 AND revoked_at IS NULL AND expires_at > now()
                  AND ($2::timestamptz IS NULL OR (created_at, id) < ($2, $3::uuid))
                ORDER BY created_at DESC, id DESC LIMIT $4
                """,
                user_id,
                before[0] if before else None,
                before[1] if before else None,
                limit,
            )
        return from_rows(SessionRecord, rows)

    async def end(self, user_id: uuid.UUID, session_id: uuid.UUID, reason: str) -> Ended:
        """End one of the user's sessions, deciding on the locked row."""
        async with self._db.transaction() as conn:
            row = await conn.fetchrow(
                "SELECT revoked_at IS NULL AND expires_at > now() AS live FROM auth_sessions"
                " WHERE id = $1 AND user_id = $2 FOR UPDATE",
                session_id,
                user_id,
            )
            if row is None:
                return Ended.NOT_FOUND
            if not row["live"]:
                return Ended.ALREADY
            await revoke(conn, [session_id], reason)
        return Ended.ENDED

    async def change_password(
        self,
        user_id: uuid.UUID,
        new_hash: str,
        *,
        expected_hash: str,
        keep: uuid.UUID,
        reason: str,
        event: Event,
    ) -> list[uuid.UUID]:
        """Set the password if the stored hash is still `expected_hash` (else
        `InvalidInput`), end every session but `keep`, and write `event`, in one
        transaction. Returns the sessions ended."""
        async with self._db.transaction() as conn:
            ended = await set_password(
                conn, user_id, new_hash, reason=reason, keep=keep, expected_hash=expected_hash
            )
            await add_event(conn, event)
        return ended

    async def ended(self, session_id: uuid.UUID) -> bool | None:
        """Whether the session was revoked or has expired; None if there is no such one."""
        async with self._db.connection() as conn:
            ended: bool | None = await conn.fetchval(
                "SELECT revoked_at IS NOT NULL OR expires_at < now() FROM auth_sessions"
                " WHERE id = $1",
                session_id,
            )
        return ended
