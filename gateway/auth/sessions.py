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
from datetime import UTC, datetime

from gateway.auth.passwords import Passwords, check_policy
from gateway.auth.revocation import Revocations
from gateway.auth.tokens import AccessClaims
from storage.db import Database
from storage.errors import InvalidInput, NotFound
from storage.events import Event
from storage.repositories.accounts import AccountStore
from storage.repositories.sessions import Ended, SessionRecord, SessionStore

PASSWORD_CHANGED = "identity.password.changed"


class Sessions:
    def __init__(self, db: Database, passwords: Passwords, revocations: Revocations) -> None:
        self._sessions = SessionStore(db)
        self._accounts = AccountStore(db)
        self._passwords = passwords
        self._revocations = revocations

    async def active(
        self, user_id: uuid.UUID, limit: int, before: tuple[datetime, uuid.UUID] | None
    ) -> list[SessionRecord]:
        """Live sessions, newest sign-in first; `limit + 1` rows tell if more exist."""
        return await self._sessions.active(user_id, limit + 1, before)

    async def revoke_one(self, user_id: uuid.UUID, session_id: uuid.UUID) -> bool:
        """End one of the user's sessions; False if it had already ended."""
        ended = await self._sessions.end(user_id, session_id, "revoked by the user")
        if ended is Ended.NOT_FOUND:
            raise NotFound("session not found")
        if ended is Ended.ALREADY:
            return False
        await self._revocations.revoke_sessions([session_id])
        return True

    async def change_password(self, claims: AccessClaims, current: str, new: str) -> int:
        """Set a new password if `current` is right; end the user's other sessions.

        Returns how many other sessions were ended."""
        user_id = claims.user_id
        account = await self._accounts.credentials(user_id)
        if account is None:
            raise NotFound("account not found")
        if not await self._passwords.verify(account.password_hash, current):
            raise InvalidInput("the current password is wrong")
        if new == current:
            raise InvalidInput("the new password must differ from the current one")
        check_policy(new, username=account.username, email=account.email)
        new_hash = await self._passwords.hash(new)
        notice = Event(
            PASSWORD_CHANGED,
            str(user_id),
            # Ids only: anyone who can read the broker reads this (the mail consumer looks
            # the address up).
            {"user_id": str(user_id), "changed_at": datetime.now(UTC).isoformat()},
        )
        ended = await self._sessions.change_password(
            user_id,
            new_hash,
            expected_hash=account.password_hash,  # not if another device or a reset won
            keep=claims.session_id,
            reason="password changed",
            event=notice,
        )
        await self._revocations.revoke_sessions(ended)
        return len(ended)
