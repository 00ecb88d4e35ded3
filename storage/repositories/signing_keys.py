"""The JWT signing keys every gateway replica shares (`signing_keys`).

The newest unsuperseded key signs; a superseded one keeps verifying until the last token
it signed has expired. Private keys are stored sealed; the gateway makes and opens them.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import asyncpg

from storage.db import Database
from storage.rows import from_rows

# Serializes first-key creation and rotation across replicas and operators.
_KEYS_LOCK = 0x4E4B4559  # "NKEY"


@dataclass(frozen=True)
class NewSigningKey:
    kid: str
    private_key: str  # PEM, sealed with NOVA_SECRET_KEY
    public_jwk: dict[str, Any]


@dataclass(frozen=True)
class SigningKeyRecord:
    kid: str
    private_key: str  # sealed
    public_jwk: dict[str, Any]
    signing: bool  # not superseded: the newest such key signs


async def _insert(conn: asyncpg.Connection, key: NewSigningKey) -> str:
    await conn.execute(
        "INSERT INTO signing_keys (kid, private_key, public_jwk) VALUES ($1, $2, $3)",
        key.kid,
        key.private_key,
        key.public_jwk,
    )
    return key.kid


class SigningKeyStore:
    def __init__(self, db: Database) -> None:
        self._db = db

    async def ensure(self, make: Callable[[], NewSigningKey]) -> str | None:
        """Store the key `make` returns if there is none yet; its kid, or None if one
        existed. `make` runs under the keys' lock, only when a key is needed (generating
        an RSA key is slow)."""
        async with self._db.transaction() as conn:
            await conn.execute("SELECT pg_advisory_xact_lock($1)", _KEYS_LOCK)
            if await conn.fetchval("SELECT EXISTS (SELECT 1 FROM signing_keys)"):
                return None
            return await _insert(conn, make())

    async def rotate(self, make: Callable[[], NewSigningKey]) -> str:
        """Supersede the signing key with the one `make` returns (under the keys' lock)."""
        async with self._db.transaction() as conn:
            await conn.execute("SELECT pg_advisory_xact_lock($1)", _KEYS_LOCK)
            await conn.execute(
                "UPDATE signing_keys SET superseded_at = now() WHERE superseded_at IS NULL"
            )
            return await _insert(conn, make())

    async def live(self, horizon_s: float) -> list[SigningKeyRecord]:
        """The signing key and every key superseded less than `horizon_s` ago (its tokens
        may still be alive), oldest first."""
        async with self._db.connection() as conn:
            rows = await conn.fetch(
                """
                SELECT kid, private_key, public_jwk, superseded_at IS NULL AS signing
                FROM signing_keys
                WHERE superseded_at IS NULL
                   OR superseded_at > now() - make_interval(secs => $1)
                ORDER BY created_at
                """,
                horizon_s,
            )
        return from_rows(SigningKeyRecord, rows)
