"""Accounts and sessions: register, login, refresh, logout, password reset, verification.

Every change commits with its outbox events in one transaction; effects outside
PostgreSQL (Redis revocations, cache write-through) follow the commit. Errors are Nova
errors (`InvalidInput`, `Unauthenticated`, ...) that the schema maps onto GraphQL codes.
"""

from __future__ import annotations

import re
import unicodedata
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Any

from email_validator import EmailNotValidError, validate_email

from gateway.auth.passwords import Passwords, check_policy
from gateway.auth.revocation import Revocations
from gateway.auth.tokens import AccessClaims, KeyRing, new_opaque_token, token_digest
from gateway.errors import Forbidden, Unauthenticated
from gateway.services.users import UserCache
from gateway.settings import GatewaySettings
from storage.db import Database
from storage.errors import AlreadyExists, InvalidInput
from storage.events import Event
from storage.repositories.accounts import (
    AccountNames,
    AccountStore,
    NewAccount,
    OneTimeToken,
    Verification,
)
from storage.repositories.audit import Audit
from storage.repositories.moderation import ModerationStore
from storage.repositories.sessions import (
    Logout,
    NewSession,
    Refresh,
    RefreshToken,
    SessionStore,
)
from storage.repositories.users import UserRecord
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
    deletion_cancelled: bool = False  # this sign-in cancelled a pending account deletion


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


# Takes one attempt from a rate-limit budget for a subject (`attempt_subject`), raising
# when it is spent; the schema passes the gateway's, with the budget chosen.
Charge = Callable[[str], Awaitable[None]]


async def _free(subject: str) -> None:
    """No budget: tools and tests that sign in without rate limits."""


def attempt_subject(account: UserRecord | None, login: str) -> str:
    """Whose budget an attempt to sign in or reset a password as `login` takes from: the
    account it names, however spelled (PostgreSQL's `lower()` decides which account that
    is, and folds case differently from Python: `İ`); else the login itself, normalized
    (NFKC, case-folded), so an unknown name has one budget too."""
    if account is not None:
        return f"user:{account.id}"
    return "name:" + unicodedata.normalize("NFKC", login.strip()).casefold()[:254]


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
        self._accounts = AccountStore(db)
        self._sessions = SessionStore(db)
        self._suspensions = ModerationStore(db)
        # Set by the runtime: moderation's lifting of an ended suspension (its content back).
        self.lift_ended_suspension: Callable[[uuid.UUID], Awaitable[None]] | None = None
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
        created = Event(
            "identity.user.created",
            str(user_id),
            {"user_id": str(user_id), "username": username},
        )
        refresh, session = self._new_session(client)
        try:
            # The account, its events, its verification token and the session it opens
            # commit together, and only once the access token is signed.
            return await self._accounts.register(
                NewAccount(user_id, username, email, password_hash),
                created=created,
                verification=self._one_time(EMAIL_VERIFICATION),
                session=session,
                sign=self._signer(session.id, refresh),
            )
        except AlreadyExists as exc:
            raise _taken(exc) from exc

    async def login(
        self, login: str, password: str, client: ClientInfo, *, charge: Charge = _free
    ) -> AuthResult:
        """Sign in by email or username. `charge(subject)` takes an attempt from the
        budget of the account the login names (`attempt_subject`), before the password is
        checked: every spelling PostgreSQL takes for the same account shares its budget."""
        login = login.strip()
        if not login or len(login) > 254:
            raise Unauthenticated("invalid login or password")
        found = await self._accounts.find_for_login(login, by_email="@" in login)
        await charge(attempt_subject(found.user if found is not None else None, login))
        stored_hash = found.password_hash if found is not None else None
        # Always verify (against a decoy when there is no account): equal timing.
        if not await self._passwords.verify(stored_hash, password) or found is None:
            raise Unauthenticated("invalid login or password")
        await self._refuse_suspended(found.user.id)
        new_hash = None
        if self._passwords.needs_rehash(found.password_hash):
            new_hash = await self._passwords.hash(password)
        refresh, session = self._new_session(client)
        result, cancelled = await self._accounts.sign_in(
            found.user, new_hash=new_hash, session=session, sign=self._signer(session.id, refresh)
        )
        return replace(result, deletion_cancelled=cancelled)

    async def _refuse_suspended(self, user_id: uuid.UUID) -> None:
        """Refuse a suspended account's login; lift a suspension whose time is up."""
        until = await self._suspensions.suspended_until(user_id)
        if until is None:
            return
        # The driver answers 'infinity' with a naive `datetime.max`.
        if until.year == datetime.max.year:
            raise Forbidden("this account is suspended indefinitely")
        if until <= _now():
            if self.lift_ended_suspension is not None:
                await self.lift_ended_suspension(user_id)
            return
        raise Forbidden(f"this account is suspended until {until.isoformat()}")

    def _new_session(self, client: ClientInfo) -> tuple[str, NewSession]:
        """A session to open, and the secret of its first refresh token."""
        expires_at = _now() + timedelta(seconds=self._settings.refresh_token_ttl_s)
        token, stored = self._new_refresh_token()
        session = NewSession(
            id=uuid.uuid4(),
            expires_at=expires_at,
            user_agent=(client.user_agent or "")[:500] or None,
            ip=client.ip,
            refresh=stored,
        )
        return token, session

    def _new_refresh_token(self) -> tuple[str, RefreshToken]:
        token = new_opaque_token(REFRESH_PREFIX)
        expires_at = _now() + timedelta(seconds=self._settings.refresh_token_ttl_s)
        return token, RefreshToken(token_digest(token), expires_at)

    def _signer(
        self, session_id: uuid.UUID, refresh: str
    ) -> Callable[[UserRecord], Awaitable[AuthResult]]:
        """Signs the new session's access token inside its transaction: without a signing
        key, the sign-in is undone rather than left half made."""

        async def sign(user: UserRecord) -> AuthResult:
            await self._keys.refresh_if_stale()  # sign with the newest key after a rotation
            access = self._keys.issue(user.id, user.roles, session_id)
            return AuthResult(access.token, refresh, access.expires_in, user)

        return sign

    # -- sessions ------------------------------------------------------------------

    async def refresh(self, refresh_token: str) -> AuthResult:
        """Exchange a refresh token for a new pair; a reused one revokes its session."""
        new_refresh, successor = self._new_refresh_token()
        rotation = await self._sessions.rotate(
            token_digest(refresh_token), successor, reuse_reason="refresh token reuse"
        )
        if rotation.outcome is Refresh.UNKNOWN:
            raise Unauthenticated("invalid refresh token")
        if rotation.outcome is Refresh.REVOKED:
            raise Unauthenticated("session was revoked")
        if rotation.outcome is Refresh.EXPIRED:
            raise Unauthenticated("refresh token expired")
        assert rotation.session_id is not None
        if rotation.outcome is Refresh.REUSED:
            # Revoked in PostgreSQL by the transaction that noticed; now its access tokens.
            await self._revocations.revoke_sessions([rotation.session_id])
            raise Unauthenticated("refresh token was already used; the session is revoked")
        user = rotation.user
        assert user is not None
        await self._keys.refresh_if_stale()
        access = self._keys.issue(user.id, user.roles, rotation.session_id)
        return AuthResult(access.token, new_refresh, access.expires_in, user)

    async def logout(self, refresh_token: str, claims: AccessClaims | None) -> bool:
        """Revoke the refresh token's session, and deny the caller's access token."""
        ended = await self._sessions.end_by_refresh_token(
            token_digest(refresh_token),
            owner=claims.user_id if claims is not None else None,
            reason="logout",
        )
        if ended.outcome is Logout.UNKNOWN:
            raise Unauthenticated("invalid refresh token")
        if ended.outcome is Logout.OTHER_ACCOUNT:
            raise Unauthenticated("refresh token belongs to another account")
        assert ended.session_id is not None
        await self._revocations.revoke_sessions([ended.session_id])
        if claims is not None:
            await self._revocations.deny_token(claims)
        return True

    # -- one-time tokens -------------------------------------------------------------

    async def request_password_reset(self, email: str, *, charge: Charge = _free) -> None:
        """Mail a reset token if the account exists; silent either way (no enumeration).
        `charge(subject)` takes a request from the budget of the account the address
        names (`attempt_subject`), whichever way it is spelled."""
        try:
            normalized = normalize_email(email)
        except InvalidInput:
            await charge(attempt_subject(None, email))
            return
        found = await self._accounts.find_for_login(normalized, by_email=True)
        await charge(attempt_subject(found.user if found is not None else None, normalized))
        if found is not None:
            await self._accounts.issue_for(found.user.id, self._one_time(PASSWORD_RESET))

    async def request_email_verification(self, user_id: uuid.UUID) -> bool:
        """Mail a new verification token; False if the email is already verified."""
        issued = await self._accounts.issue_verification(
            user_id, self._one_time(EMAIL_VERIFICATION)
        )
        if issued is Verification.NO_ACCOUNT:
            raise Unauthenticated("account no longer exists")
        return issued is Verification.ISSUED

    def _one_time(self, purpose: str) -> OneTimeToken:
        """A new one-time token; it replaces older unused ones of the same purpose, and its
        event carries the secret sealed to the mail consumer, and the account's id: the
        consumer looks the address up (anyone who can read the broker reads its events)."""
        ttl_s = (
            self._settings.password_reset_ttl_s
            if purpose == PASSWORD_RESET
            else self._settings.email_verification_ttl_s
        )
        token = new_opaque_token(ONE_TIME_PREFIX)
        expires_at = _now() + timedelta(seconds=ttl_s)

        def event(user: UserRecord) -> Event:
            payload: dict[str, Any] = {
                "user_id": str(user.id),
                "token_sealed": self._sealer.seal(token.encode()),
                "expires_at": expires_at.isoformat(),
            }
            return Event(_EVENT_FOR_PURPOSE[purpose], str(user.id), payload)

        return OneTimeToken(token_digest(token), purpose, expires_at, event)

    async def reset_password(self, token: str, new_password: str) -> None:
        """Set a new password and revoke every session of the account."""

        async def new_hash(account: AccountNames) -> str:
            # Inside the transaction that consumed the token: a refused password rolls
            # it back, so the token can be used again with a better one.
            check_policy(new_password, username=account.username, email=account.email)
            return await self._passwords.hash(new_password)

        ended = await self._accounts.reset_password(
            token_digest(token), PASSWORD_RESET, new_hash, reason="password reset"
        )
        if ended is None:
            raise InvalidInput("token is invalid, expired or already used")
        await self._revocations.revoke_sessions(ended)

    async def verify_email(self, token: str) -> UserRecord:
        user = await self._accounts.verify_email(token_digest(token), EMAIL_VERIFICATION)
        if user is None:
            raise InvalidInput("token is invalid, expired or already used")
        await self._users.changed([user])
        return user


ROLES = ("user", "moderator", "admin")


async def grant_role(
    db: Database, login: str, role: str, *, revoke: bool = False, note: str | None = None
) -> UserRecord:
    """Operators' `nova users grant` (or `revoke`): add (remove) a role to an account,
    effective in new tokens, with a row in the audit log."""
    if role not in ROLES:
        raise InvalidInput(f"role must be one of {', '.join(ROLES)}")
    action = "ROLE_REVOKED" if revoke else "ROLE_GRANTED"

    def audit(user: UserRecord) -> Audit:
        details = {"role": role, "roles": list(user.roles), "username": user.username}
        return Audit(None, action, "USER", user.id, note, details)

    user = await AccountStore(db).grant_role(
        login.strip(), role, by_email="@" in login, revoke=revoke, audit=audit
    )
    if user is None:
        raise InvalidInput(f"no account {login!r}")
    return user


def _taken(exc: AlreadyExists) -> InvalidInput:
    text = f"{exc.constraint or ''} {exc}"
    if "users_username_key" in text:
        return InvalidInput("username is already taken")
    if "users_email_key" in text:
        return InvalidInput("email is already registered")
    return InvalidInput("account already exists")
