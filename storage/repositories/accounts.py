"""Accounts: registration, the login lookup, password hashes, one-time tokens and roles.

Every write here is one transaction with its outbox events. Secrets never arrive plain:
the gateway hashes passwords (Argon2) and hands over token digests; the events that mail a
token carry it sealed. Where the gateway must decide something inside a transaction
(signing the access token of a new session, checking a new password against the account),
it passes a callable that runs there, so its failure undoes the whole write as before.
"""

from __future__ import annotations

import enum
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime
from typing import TypeVar

import asyncpg

from storage.db import Database
from storage.events import Event
from storage.outbox.rows import add_event
from storage.repositories.audit import Audit, add_audit
from storage.repositories.erasure import CANCELLED_EVENT
from storage.repositories.sessions import NewSession, open_session, set_password
from storage.repositories.users import USER_COLUMNS, UserRecord, fetch_user
from storage.rows import from_row

T = TypeVar("T")

# A login names the account by its email or its username (case-insensitively unique).
_BY_EMAIL = f"SELECT {USER_COLUMNS}, password_hash FROM users WHERE lower(email) = lower($1)"
_BY_USERNAME = f"SELECT {USER_COLUMNS}, password_hash FROM users WHERE lower(username) = lower($1)"

_GRANT_ROLE = """
UPDATE users
SET roles = CASE WHEN $2 = ANY(roles) THEN roles ELSE array_append(roles, $2) END,
    version = version + 1, updated_at = now()
WHERE lower({column}) = lower($1)
RETURNING {columns}
"""

_REVOKE_ROLE = """
UPDATE users SET roles = array_remove(roles, $2), version = version + 1, updated_at = now()
WHERE lower({column}) = lower($1)
RETURNING {columns}
"""

Audited = Callable[[UserRecord], Audit]


@dataclass(frozen=True)
class NewAccount:
    id: uuid.UUID
    username: str
    email: str
    password_hash: str


@dataclass(frozen=True)
class AccountNames:
    """What a password must not contain."""

    username: str
    email: str


@dataclass(frozen=True)
class Credentials(AccountNames):
    password_hash: str


@dataclass(frozen=True)
class LoginRecord:
    user: UserRecord
    password_hash: str


@dataclass(frozen=True)
class OneTimeToken:
    """A one-time token to store (password reset, email verification): its digest, and
    the event that mails the secret, made from the account it is for."""

    digest: bytes
    purpose: str
    expires_at: datetime
    event: Callable[[UserRecord], Event]


class Verification(enum.Enum):
    """What asking for a new email-verification token came to."""

    ISSUED = "issued"
    NO_ACCOUNT = "no_account"
    ALREADY_VERIFIED = "already_verified"


# -- in the caller's transaction ---------------------------------------------------------


async def issue_one_time(conn: asyncpg.Connection, user: UserRecord, token: OneTimeToken) -> None:
    """Store `token` for `user`, replacing older unused ones of its purpose, with its event."""
    await conn.execute(
        """
        UPDATE one_time_tokens SET used_at = now()
        WHERE user_id = $1 AND purpose = $2 AND used_at IS NULL
        """,
        user.id,
        token.purpose,
    )
    await conn.execute(
        """
        INSERT INTO one_time_tokens (token_hash, user_id, purpose, expires_at)
        VALUES ($1, $2, $3, $4)
        """,
        token.digest,
        user.id,
        token.purpose,
        token.expires_at,
    )
    await add_event(conn, token.event(user))


async def use_one_time(conn: asyncpg.Connection, digest: bytes, purpose: str) -> uuid.UUID | None:
    """Consume a live token of `purpose`; its user, or None if it is unknown, expired or used."""
    user_id: uuid.UUID | None = await conn.fetchval(
        """
        UPDATE one_time_tokens SET used_at = now()
        WHERE token_hash = $1 AND purpose = $2 AND used_at IS NULL AND expires_at > now()
        RETURNING user_id
        """,
        digest,
        purpose,
    )
    return user_id


# -- the store ---------------------------------------------------------------------------


class AccountStore:
    def __init__(self, db: Database) -> None:
        self._db = db

    async def register(
        self,
        account: NewAccount,
        *,
        created: Event,
        verification: OneTimeToken,
        session: NewSession,
        sign: Callable[[UserRecord], Awaitable[T]],
    ) -> T:
        """Insert the account, its `created` event, its email-verification token and its
        opening session, then `sign` the session's access token, all in one transaction.
        A taken username or email raises `AlreadyExists` naming the unique index."""
        async with self._db.transaction() as conn:
            row = await conn.fetchrow(
                f"""
                INSERT INTO users (id, username, email, password_hash)
                VALUES ($1, $2, $3, $4)
                RETURNING {USER_COLUMNS}
                """,
                account.id,
                account.username,
                account.email,
                account.password_hash,
            )
            user = from_row(UserRecord, row)
            await add_event(conn, created)
            await issue_one_time(conn, user, verification)
            await open_session(conn, user.id, session)
            return await sign(user)

    async def find_for_login(self, login: str, *, by_email: bool) -> LoginRecord | None:
        """The account `login` names (case-insensitively), with its password hash."""
        async with self._db.connection() as conn:
            row = await conn.fetchrow(_BY_EMAIL if by_email else _BY_USERNAME, login)
        if row is None:
            return None
        return LoginRecord(from_row(UserRecord, row), row["password_hash"])

    async def sign_in(
        self,
        user: UserRecord,
        *,
        new_hash: str | None,
        session: NewSession,
        sign: Callable[[UserRecord], Awaitable[T]],
    ) -> tuple[T, bool]:
        """Open a session after a verified login (storing `new_hash` when the password was
        rehashed with newer parameters), then `sign` its access token, in one transaction.

        A sign-in cancels a pending account deletion (with `account.deletion.cancelled`,
        which mails a notice); the second value says whether this one did."""
        async with self._db.transaction() as conn:
            if new_hash is not None:
                await conn.execute(
                    "UPDATE users SET password_hash = $2 WHERE id = $1", user.id, new_hash
                )
            pending = await conn.fetchval(
                "SELECT erase_after FROM users WHERE id = $1 FOR UPDATE", user.id
            )
            await conn.execute(
                "UPDATE users SET last_seen_at = now(), erase_after = NULL WHERE id = $1", user.id
            )
            if pending is not None:
                event = Event(CANCELLED_EVENT, str(user.id), {"user_id": str(user.id)})
                await add_event(conn, event)
            await open_session(conn, user.id, session)
            return await sign(user), pending is not None

    async def credentials(self, user_id: uuid.UUID) -> Credentials | None:
        async with self._db.connection() as conn:
            row = await conn.fetchrow(
                "SELECT username, email, password_hash FROM users WHERE id = $1", user_id
            )
        return None if row is None else from_row(Credentials, row)

    async def issue_for(self, user_id: uuid.UUID, token: OneTimeToken) -> bool:
        """Store `token` for the account `user_id`, if it still exists."""
        async with self._db.transaction() as conn:
            user = await fetch_user(conn, user_id)
            if user is None:
                return False
            await issue_one_time(conn, user, token)
        return True

    async def issue_verification(self, user_id: uuid.UUID, token: OneTimeToken) -> Verification:
        """Store an email-verification `token`, unless the email is verified already."""
        async with self._db.transaction() as conn:
            user = await fetch_user(conn, user_id)
            if user is None:
                return Verification.NO_ACCOUNT
            if user.email_verified:
                return Verification.ALREADY_VERIFIED
            await issue_one_time(conn, user, token)
        return Verification.ISSUED

    async def reset_password(
        self,
        digest: bytes,
        purpose: str,
        new_hash: Callable[[AccountNames], Awaitable[str]],
        *,
        reason: str,
    ) -> list[uuid.UUID] | None:
        """Consume the token and set the password `new_hash` makes for the account, ending
        every session, in one transaction. None if the token is not live. `new_hash` runs
        with the token consumed: if it raises (a password the policy refuses), the
        transaction rolls back and the token stays usable. Returns the sessions ended."""
        async with self._db.transaction() as conn:
            user_id = await use_one_time(conn, digest, purpose)
            if user_id is None:
                return None
            row = await conn.fetchrow("SELECT username, email FROM users WHERE id = $1", user_id)
            password_hash = await new_hash(from_row(AccountNames, row))
            return await set_password(conn, user_id, password_hash, reason=reason)

    async def verify_email(self, digest: bytes, purpose: str) -> UserRecord | None:
        """Consume the token and mark the account's email verified; None if it is not live."""
        async with self._db.transaction() as conn:
            user_id = await use_one_time(conn, digest, purpose)
            if user_id is None:
                return None
            row = await conn.fetchrow(
                f"""
                UPDATE users SET email_verified_at = coalesce(email_verified_at, now()),
                                 version = version + 1, updated_at = now()
                WHERE id = $1 RETURNING {USER_COLUMNS}
                """,
                user_id,
            )
        return from_row(UserRecord, row)

    async def grant_role(
        self, login: str, role: str, *, by_email: bool, revoke: bool, audit: Audited
    ) -> UserRecord | None:
        """Add (`revoke`: take) `role` to the account `login` names, with its audit row;
        None if there is none."""
        template = _REVOKE_ROLE if revoke else _GRANT_ROLE
        sql = template.format(column="email" if by_email else "username", columns=USER_COLUMNS)
        async with self._db.transaction() as conn:
            row = await conn.fetchrow(sql, login, role)
            if row is None:
                return None
            user = from_row(UserRecord, row)
            await add_audit(conn, audit(user))
        return user
