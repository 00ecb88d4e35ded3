"""Password policy and Argon2id hashing.

Hashing is deliberately slow (tens of milliseconds of CPU and 64 MiB), so it runs in a
worker thread: the event loop keeps serving other requests while a login hashes.
"""

from __future__ import annotations

import asyncio

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

from gateway.settings import GatewaySettings
from storage.errors import InvalidInput

MIN_LENGTH = 10
MAX_LENGTH = 256  # bounds the hashing work an attacker can ask for


def check_policy(password: str, *, username: str, email: str) -> None:
    """Refuse weak passwords with a message the client can show."""
    if len(password) < MIN_LENGTH:
        raise InvalidInput(f"password must be at least {MIN_LENGTH} characters")
    if len(password) > MAX_LENGTH:
        raise InvalidInput(f"password must be at most {MAX_LENGTH} characters")
    lowered = password.casefold()
    if lowered == username.casefold() or lowered == email.casefold():
        raise InvalidInput("password must not be your username or email")
    if lowered == email.partition("@")[0].casefold():
        raise InvalidInput("password must not be your email's name")


class Passwords:
    """Hashes and verifies passwords with the configured Argon2id parameters."""

    def __init__(self, settings: GatewaySettings) -> None:
        self._hasher = PasswordHasher(
            time_cost=settings.argon2_time_cost,
            memory_cost=settings.argon2_memory_kib,
            parallelism=settings.argon2_parallelism,
        )
        # Verifying against this when an account does not exist keeps "no such user" and
        # "wrong password" equally slow, so timing does not reveal which accounts exist.
        self._decoy = self._hasher.hash("decoy password that matches nothing")

    async def hash(self, password: str) -> str:
        return await asyncio.to_thread(self._hasher.hash, password)

    async def verify(self, stored_hash: str | None, password: str) -> bool:
        return await asyncio.to_thread(self._verify, stored_hash, password)

    def needs_rehash(self, stored_hash: str) -> bool:
        """True when the hash was made with other parameters than today's."""
        return self._hasher.check_needs_rehash(stored_hash)

    def _verify(self, stored_hash: str | None, password: str) -> bool:
        try:
            return self._hasher.verify(stored_hash or self._decoy, password) and (
                stored_hash is not None
            )
        except (VerifyMismatchError, VerificationError, InvalidHashError):
            return False
