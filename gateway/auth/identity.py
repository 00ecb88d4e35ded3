"""Accounts and sessions: register, login, refresh, logout, password reset, verification.

Every change commits with its outbox events in one transaction; effects outside
PostgreSQL (Redis revocations, cache write-through) follow the commit. Errors are Nova
errors (`InvalidInput`, `Unauthenticated`, ...) that the schema maps onto GraphQL codes.
"""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
from email_validator import EmailNotValidError, validate_email

from gateway.auth.passwords import Passwords, check_policy
from gateway.auth.revocation import Revocations
from gateway.auth.sessions import revoke, set_password
from gateway.auth.tokens import AccessClaims, KeyRing, new_opaque_token, token_digest
from gateway.errors import Unauthenticated
from gateway.services.users import UserCache
from gateway.settings import GatewaySettings
from storage.db import Database
from storage.errors import AlreadyExists, InvalidInput
from storage.events import Event
from storage.outbox.rows import add_event
from storage.repositories.users import USER_COLUMNS, UserRecord
from storage.rows import from_row
from storage.secrets import Sealer

USERNAME = re.compile(r"^[A-Za-z0-9_]{3,30}$")
REFRESH_PREFIX = "nrt"
ONE_TIME_PREFIX = "nott"
PASSWORD_RESET = "password_reset"
EMAIL_VERIFICATION = "email_verification"
_EVENT_FOR_PURPOSE = {
    PASSWORD_RESET: "identity.password_reset.requested",
    EMAIL_VERIFICATION: "identity.email_verification.requested",
}


@dataclass(frozen=True)
class AuthResult:
    access_token: str
    refresh_token: str
    expires_in: int
    user: UserRecord


@dataclass(frozen=True)
class ClientInfo:
    """Where a session was opened from, for the user's session list and for audits."""

    ip: str | None = None
    user_agent: str | None = None


def normalize_username(username: str) -> str:
    username = username.strip()
    if not USERNAME.fullmatch(username):
        raise InvalidInput("username must be 3-30 characters of letters, digits and _")
    return username


def normalize_email(email: str) -> str:
    try:
        checked = validate_email(email.strip(), check_deliverability=False)
    except EmailNotValidError as exc:
        raise InvalidInput(f"email is not valid: {exc}") from exc
    return str(checked.normalized)


def _now() -> datetime:
    return datetime.now(UTC)


class Identity:
    """The identity service one gateway replica uses."""

    def __init__(
        self,
        db: Database,
        settings: GatewaySettings,
        *,
        keys: KeyRing,
        passwords: Passwords,
        sealer: Sealer,
        revocations: Revocations,
        users: UserCache,
    ) -> None:
        self._db = db
        self._settings = settings
        self._keys = keys
        self._passwords = passwords
        self._sealer = sealer
        self._revocations = revocations
        self._users = users

    # -- accounts ------------------------------------------------------------------

    async def register(
        self, email: str, username: str, password: str, client: ClientInfo
    ) -> AuthResult:
        username = normalize_username(username)
        email = normalize_email(email)
        check_policy(password, username=username, email=email)
        password_hash = await self._passwords.hash(password)
        user_id = uuid.uuid4()
        try:
            async with self._db.transaction() as conn:
                row = await conn.fetchrow(
                    f"""
                    INSERT INTO users (id, username, email, password_hash)
                    VALUES ($1, $2, $3, $4)
                    RETURNING {USER_COLUMNS}
                    """,
                    user_id,
                    username,
                    email,
                    password_hash,
                )
                user = from_row(UserRecord, row)
                await add_event(
                    conn,
                    Event(
                        "identity.user.created",
                        str(user_id),
                        {"user_id": str(user_id), "username": username},
                    ),
                )
                await self._issue_one_time(conn, user, EMAIL_VERIFICATION)
                result = await self._open_session(conn, user, client)
        except (asyncpg.UniqueViolationError, AlreadyExists) as exc:
            raise _taken(exc) from exc
        return result

    async def login(self, login: str, password: str, client: ClientInfo) -> AuthResult:
        login = login.strip()
        if not login or len(login) > 254:
            raise Unauthenticated("invalid login or password")
        column = "email" if "@" in login else "username"
        row = await self._db.fetchrow(
            f"SELECT {USER_COLUMNS}, password_hash FROM users WHERE lower({column}) = lower($1)",
            login,
        )
        stored_hash = row["password_hash"] if row is not None else None
        # Always verify (against a decoy when there is no account): equal timing.
        if not await self._passwords.verify(stored_hash, password) or row is None:
            raise Unauthenticated("invalid login or password")
        user = from_row(UserRecord, row)
        async with self._db.transaction() as conn:
            if self._passwords.needs_rehash(stored_hash or ""):
                await conn.execute(
                    "UPDATE users SET password_hash = $2 WHERE id = $1",
                    user.id,
                    await self._passwords.hash(password),
                )
            await conn.execute("UPDATE users SET last_seen_at = now() WHERE id = $1", user.id)
            return await self._open_session(conn, user, client)

    async def _open_session(
        self, conn: asyncpg.Connection, user: UserRecord, client: ClientInfo
    ) -> AuthResult:
        session_id = uuid.uuid4()
        expires_at = _now() + timedelta(seconds=self._settings.refresh_token_ttl_s)
        await conn.execute(
            """
            INSERT INTO auth_sessions (id, user_id, expires_at, user_agent, ip)
            VALUES ($1, $2, $3, $4, $5)
            """,
            session_id,
            user.id,
            expires_at,
            (client.user_agent or "")[:500] or None,
            client.ip,
        )
        refresh = await self._new_refresh_token(conn, session_id)
        await self._keys.refresh_if_stale()  # sign with the newest key after a rotation
        access = self._keys.issue(user.id, user.roles, session_id)
        return AuthResult(access.token, refresh, access.expires_in, user)

    async def _new_refresh_token(self, conn: asyncpg.Connection, session_id: uuid.UUID) -> str:
        token = new_opaque_token(REFRESH_PREFIX)
        await conn.execute(
            "INSERT INTO refresh_tokens (token_hash, session_id, expires_at) VALUES ($1, $2, $3)",
            token_digest(token),
            session_id,
            _now() + timedelta(seconds=self._settings.refresh_token_ttl_s),
        )
        return token

    # -- sessions ------------------------------------------------------------------

    async def refresh(self, refresh_token: str) -> AuthResult:
        """Exchange a refresh token for a new pair; a reused one revokes its session."""
        reused_session: uuid.UUID | None = None
        async with self._db.transaction() as conn:
            row = await conn.fetchrow(
                """
                SELECT t.session_id, t.rotated_at, t.expires_at, s.revoked_at,
                       s.expires_at AS session_expires_at, s.user_id
                FROM refresh_tokens t JOIN auth_sessions s ON s.id = t.session_id
                WHERE t.token_hash = $1
                FOR UPDATE OF t, s
                """,
                token_digest(refresh_token),
            )
            if row is None:
                raise Unauthenticated("invalid refresh token")
            now = _now()
            if row["revoked_at"] is not None:
                raise Unauthenticated("session was revoked")
            if row["rotated_at"] is not None:
                # Someone presented a token that was already exchanged: one of the two
                # holders is not the user. Revoke the whole family (the session).
                await revoke(conn, [row["session_id"]], "refresh token reuse")
                reused_session = row["session_id"]
            elif row["expires_at"] <= now or row["session_expires_at"] <= now:
                raise Unauthenticated("refresh token expired")
            else:
                await conn.execute(
                    "UPDATE refresh_tokens SET rotated_at = now() WHERE token_hash = $1",
                    token_digest(refresh_token),
                )
                await conn.execute(
                    "UPDATE auth_sessions SET last_used_at = now() WHERE id = $1",
                    row["session_id"],
                )
                user_row = await conn.fetchrow(
                    f"SELECT {USER_COLUMNS} FROM users WHERE id = $1", row["user_id"]
                )
                user = from_row(UserRecord, user_row)
                new_refresh = await self._new_refresh_token(conn, row["session_id"])
        if reused_session is not None:
            await self._revocations.revoke_sessions([reused_session])
            raise Unauthenticated("refresh token was already used; the session is revoked")
        await self._keys.refresh_if_stale()
        access = self._keys.issue(user.id, user.roles, row["session_id"])
        return AuthResult(access.token, new_refresh, access.expires_in, user)

    async def logout(self, refresh_token: str, claims: AccessClaims | None) -> bool:
        """Revoke the refresh token's session, and deny the caller's access token."""
        async with self._db.transaction() as conn:
            session = await conn.fetchrow(
                """
                SELECT s.id, s.user_id FROM refresh_tokens t
                JOIN auth_sessions s ON s.id = t.session_id
                WHERE t.token_hash = $1
                """,
                token_digest(refresh_token),
            )
            if session is None:
                raise Unauthenticated("invalid refresh token")
            if claims is not None and claims.user_id != session["user_id"]:
                raise Unauthenticated("refresh token belongs to another account")
            await revoke(conn, [session["id"]], "logout")
        await self._revocations.revoke_sessions([session["id"]])
        if claims is not None:
            await self._revocations.deny_token(claims)
        return True

    # -- one-time tokens -------------------------------------------------------------

    async def request_password_reset(self, email: str) -> None:
        """Mail a reset token if the account exists; silent either way (no enumeration)."""
        try:
            email = normalize_email(email)
        except InvalidInput:
            return
        async with self._db.transaction() as conn:
            row = await conn.fetchrow(
                f"SELECT {USER_COLUMNS} FROM users WHERE lower(email) = lower($1)", email
            )
            if row is not None:
                await self._issue_one_time(conn, from_row(UserRecord, row), PASSWORD_RESET)

    async def request_email_verification(self, user_id: uuid.UUID) -> bool:
        """Mail a new verification token; False if the email is already verified."""
        async with self._db.transaction() as conn:
            row = await conn.fetchrow(f"SELECT {USER_COLUMNS} FROM users WHERE id = $1", user_id)
            if row is None:
                raise Unauthenticated("account no longer exists")
            user = from_row(UserRecord, row)
            if user.email_verified:
                return False
            await self._issue_one_time(conn, user, EMAIL_VERIFICATION)
        return True

    async def _issue_one_time(
        self, conn: asyncpg.Connection, user: UserRecord, purpose: str
    ) -> None:
        ttl_s = (
            self._settings.password_reset_ttl_s
            if purpose == PASSWORD_RESET
            else self._settings.email_verification_ttl_s
        )
        token = new_opaque_token(ONE_TIME_PREFIX)
        expires_at = _now() + timedelta(seconds=ttl_s)
        # A new token replaces older unused ones of the same purpose.
        await conn.execute(
            """
            UPDATE one_time_tokens SET used_at = now()
            WHERE user_id = $1 AND purpose = $2 AND used_at IS NULL
            """,
            user.id,
            purpose,
        )
        await conn.execute(
            """
            INSERT INTO one_time_tokens (token_hash, user_id, purpose, expires_at)
            VALUES ($1, $2, $3, $4)
            """,
            token_digest(token),
            user.id,
            purpose,
            expires_at,
        )
        payload: dict[str, Any] = {
            "user_id": str(user.id),
            "email": user.email,
            "username": user.username,
            "token_sealed": self._sealer.seal(token.encode()),
            "expires_at": expires_at.isoformat(),
        }
        await add_event(conn, Event(_EVENT_FOR_PURPOSE[purpose], str(user.id), payload))

    async def _use_one_time(self, conn: asyncpg.Connection, token: str, purpose: str) -> uuid.UUID:
        row = await conn.fetchrow(
            """
            UPDATE one_time_tokens SET used_at = now()
            WHERE token_hash = $1 AND purpose = $2 AND used_at IS NULL AND expires_at > now()
            RETURNING user_id
            """,
            token_digest(token),
            purpose,
        )
        if row is None:
            raise InvalidInput("token is invalid, expired or already used")
        user_id: uuid.UUID = row["user_id"]
        return user_id

    async def reset_password(self, token: str, new_password: str) -> None:
        """Set a new password and revoke every session of the account."""
        async with self._db.transaction() as conn:
            user_id = await self._use_one_time(conn, token, PASSWORD_RESET)
            row = await conn.fetchrow("SELECT username, email FROM users WHERE id = $1", user_id)
            check_policy(new_password, username=row["username"], email=row["email"])
            new_hash = await self._passwords.hash(new_password)
            ended = await set_password(conn, user_id, new_hash, reason="password reset")
        await self._revocations.revoke_sessions(ended)

    async def verify_email(self, token: str) -> UserRecord:
        async with self._db.transaction() as conn:
            user_id = await self._use_one_time(conn, token, EMAIL_VERIFICATION)
            row = await conn.fetchrow(
                f"""
                UPDATE users SET email_verified_at = coalesce(email_verified_at, now()),
                                 version = version + 1, updated_at = now()
                WHERE id = $1 RETURNING {USER_COLUMNS}
                """,
                user_id,
            )
        user = from_row(UserRecord, row)
        await self._users.changed([user])
        return user


ROLES = ("user", "moderator", "admin")


async def grant_role(db: Database, login: str, role: str) -> UserRecord:
    """Operators' `nova users grant`: add a role to an account (effective in new tokens)."""
    if role not in ROLES:
        raise InvalidInput(f"role must be one of {', '.join(ROLES)}")
    column = "email" if "@" in login else "username"
    async with db.transaction() as conn:
        row = await conn.fetchrow(
            f"""
            UPDATE users
            SET roles = CASE WHEN $2 = ANY(roles) THEN roles ELSE array_append(roles, $2) END,
                version = version + 1, updated_at = now()
            WHERE lower({column}) = lower($1)
            RETURNING {USER_COLUMNS}
            """,
            login.strip(),
            role,
        )
    if row is None:
        raise InvalidInput(f"no account {login!r}")
    return from_row(UserRecord, row)


def _taken(exc: BaseException) -> InvalidInput:
    text = str(exc)
    if "users_username_key" in text:
        return InvalidInput("username is already taken")
    if "users_email_key" in text:
        return InvalidInput("email is already registered")
    return InvalidInput("account already exists")
