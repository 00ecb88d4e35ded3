"""Deleting one's own account: the password, then a grace period, then erasure.

The request ends every session at once (so the account's tokens stop working on every
replica) and schedules the erasure `NOVA_ACCOUNT_DELETION_GRACE_S` ahead; signing in before
then cancels it. The erasure itself is the erasure job's (`actors.erasure`).
"""

from __future__ import annotations

from gateway.auth.passwords import Passwords
from gateway.auth.revocation import Revocations
from gateway.auth.tokens import AccessClaims
from storage.db import Database
from storage.errors import InvalidInput, NotFound
from storage.repositories.accounts import AccountStore
from storage.repositories.erasure import DeletionRequest, ErasureStore


class AccountDeletions:
    def __init__(
        self, db: Database, passwords: Passwords, revocations: Revocations, grace_s: float
    ) -> None:
        self._accounts = AccountStore(db)
        self._erasures = ErasureStore(db)
        self._passwords = passwords
        self._revocations = revocations
        self._grace_s = grace_s

    async def request(self, claims: AccessClaims, password: str) -> DeletionRequest:
        account = await self._accounts.credentials(claims.user_id)
        if account is None:
            raise NotFound("account not found")
        if not await self._passwords.verify(account.password_hash, password):
            raise InvalidInput("the password is wrong")
        request = await self._erasures.request(claims.user_id, self._grace_s)
        if request is None:
            raise NotFound("account not found")
        await self._revocations.revoke_sessions(request.sessions)
        return request
