"""Access tokens (RS256 JWTs with rotating keys) and opaque secrets (refresh, one-time).

Signing keys live in PostgreSQL, sealed with `NOVA_SECRET_KEY`, so every gateway replica
signs and verifies with the same set. The newest key signs; a superseded key keeps
verifying (and stays in the JWKS) until the last token it signed has expired, so a
rotation never logs anyone out. Replicas reload the set periodically and whenever a
token names a `kid` they do not know yet.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import secrets
import time
import uuid
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from jwt.algorithms import RSAAlgorithm

from gateway.errors import Unauthenticated
from gateway.settings import GatewaySettings
from storage.db import Database
from storage.repositories.signing_keys import NewSigningKey, SigningKeyStore
from storage.secrets import Sealer
from storage.tasks import SingleFlight

ALGORITHM = "RS256"
RSA_KEY_BITS = 2048
# A token naming an unknown kid triggers at most one reload per this many seconds.
_UNKNOWN_KID_RELOAD_S = 1.0


def new_opaque_token(prefix: str) -> str:
    """A random bearer secret; the prefix lets secret scanners recognize leaked ones."""
    return f"{prefix}_{secrets.token_urlsafe(32)}"


def token_digest(token: str) -> bytes:
    """What is stored instead of an opaque token: its SHA-256."""
    return hashlib.sha256(token.encode()).digest()


@dataclass(frozen=True)
class AccessClaims:
    """A verified access token."""

    user_id: uuid.UUID
    roles: tuple[str, ...]
    jti: str
    session_id: uuid.UUID
    issued_at: int
    expires_at: int

    def live(self, leeway_s: float) -> bool:
        """Not yet expired, allowing `leeway_s` of clock skew."""
        return time.time() < self.expires_at + leeway_s


@dataclass(frozen=True)
class IssuedToken:
    token: str
    jti: str
    expires_in: int


@dataclass(frozen=True)
class _Key:
    kid: str
    public_key: rsa.RSAPublicKey
    public_jwk: Mapping[str, Any]
    private_key: rsa.RSAPrivateKey | None  # only the signing key is unsealed


def _generate_key(sealer: Sealer) -> NewSigningKey:
    private = rsa.generate_private_key(public_exponent=65537, key_size=RSA_KEY_BITS)
    kid = uuid.uuid4().hex[:16]
    pem = private.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    jwk: dict[str, Any] = json.loads(RSAAlgorithm.to_jwk(private.public_key()))
    jwk.update({"kid": kid, "alg": ALGORITHM, "use": "sig"})
    return NewSigningKey(kid, sealer.seal(pem), jwk)


async def ensure_signing_key(db: Database, sealer: Sealer) -> str | None:
    """Create the first signing key if there is none; return its kid (None if one existed)."""
    return await SigningKeyStore(db).ensure(lambda: _generate_key(sealer))


async def rotate_signing_key(db: Database, sealer: Sealer) -> str:
    """Add a new signing key; the previous ones keep verifying until their tokens expire."""
    return await SigningKeyStore(db).rotate(lambda: _generate_key(sealer))


_VERIFIED_CACHE = 10_000


class KeyRing:
    """The keys one replica signs and verifies with, reloaded from PostgreSQL."""

    def __init__(self, db: Database, sealer: Sealer, settings: GatewaySettings) -> None:
        self._store = SigningKeyStore(db)
        self._sealer = sealer
        self._settings = settings
        self._keys: dict[str, _Key] = {}
        self._signing: _Key | None = None
        self._loaded_at = 0.0
        # Late-bound, so a reload always runs the `load` the ring has now.
        self._reload = SingleFlight(lambda: self.load())
        # Tokens already verified (an RS256 check costs about a millisecond of CPU): token →
        # (kid, claims). A hit still needs its key loaded and its expiry ahead.
        self._verified: OrderedDict[str, tuple[str, AccessClaims]] = OrderedDict()

    @property
    def signing_kid(self) -> str | None:
        return self._signing.kid if self._signing else None

    async def load(self) -> None:
        """Read the signing key and every key whose tokens may still be alive."""
        # A superseded key signed tokens until `superseded_at`; they live access_ttl more.
        horizon_s = self._settings.access_token_ttl_s + self._settings.jwt_leeway_s
        rows = await self._store.live(float(horizon_s))
        keys: dict[str, _Key] = {}
        signing: _Key | None = None
        for row in rows:
            key = await self._key(row.kid, row.public_jwk, row.private_key, row.signing)
            keys[key.kid] = key
            if key.private_key is not None:
                signing = key  # rows are oldest first: the newest unsuperseded key wins
        self._keys, self._signing = keys, signing
        self._loaded_at = time.monotonic()

    async def _key(
        self, kid: str, public_jwk: Mapping[str, Any], sealed_pem: str, signing: bool
    ) -> _Key:
        """The parsed key, reused from the last load when it is already there: a key's
        material never changes, only whether it signs. Parsing a private key costs about
        40 ms of CPU (cryptography checks the RSA key), so a new one is parsed off the
        event loop; re-parsing every key on each refresh stalled every request in flight
        every `NOVA_SIGNING_KEY_REFRESH_S`."""
        known = self._keys.get(kid)
        if known is not None and (known.private_key is not None) == signing:
            return known
        if known is not None and not signing:  # superseded: it only verifies now
            return _Key(kid, known.public_key, known.public_jwk, None)
        jwk = dict(public_jwk)
        public = RSAAlgorithm.from_jwk(json.dumps(jwk))
        assert isinstance(public, rsa.RSAPublicKey)
        private = None
        if signing:
            pem = self._sealer.open(sealed_pem)
            loaded = await asyncio.to_thread(serialization.load_pem_private_key, pem, None)
            assert isinstance(loaded, rsa.RSAPrivateKey)
            private = loaded
        return _Key(kid, public, jwk, private)

    async def refresh_if_stale(self) -> None:
        """Reload when `NOVA_SIGNING_KEY_REFRESH_S` has passed; requests that find the ring
        stale meanwhile share one reload."""
        if time.monotonic() - self._loaded_at < self._settings.signing_key_refresh_s:
            return
        await self._reload()

    def jwks(self) -> dict[str, Any]:
        return {"keys": [dict(key.public_jwk) for key in self._keys.values()]}

    def issue(self, user_id: uuid.UUID, roles: Sequence[str], session_id: uuid.UUID) -> IssuedToken:
        if self._signing is None or self._signing.private_key is None:
            raise RuntimeError("no signing key loaded (run `nova deploy` or `nova keys rotate`)")
        now = int(time.time())
        ttl = self._settings.access_token_ttl_s
        jti = uuid.uuid4().hex
        claims = {
            "iss": self._settings.jwt_issuer,
            "sub": str(user_id),
            "roles": list(roles),
            "sid": str(session_id),
            "jti": jti,
            "iat": now,
            "nbf": now,
            "exp": now + ttl,
        }
        token = jwt.encode(
            claims,
            self._signing.private_key,
            algorithm=ALGORITHM,
            headers={"kid": self._signing.kid},
        )
        return IssuedToken(token, jti, ttl)

    async def verify(self, token: str) -> AccessClaims:
        """Check signature, algorithm, kid, issuer and times; raise `Unauthenticated`."""
        known = self._verified.get(token)
        if known is not None:
            kid, claims = known
            if kid in self._keys and claims.live(self._settings.jwt_leeway_s):
                self._verified.move_to_end(token)
                return claims
            del self._verified[token]
        kid, claims = await self._verify(token)
        self._verified[token] = (kid, claims)
        if len(self._verified) > _VERIFIED_CACHE:
            self._verified.popitem(last=False)
        return claims

    async def _verify(self, token: str) -> tuple[str, AccessClaims]:
        """The token's key id and claims, once its signature and times check out."""
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError as exc:
            raise Unauthenticated("malformed access token") from exc
        # Only RS256 with a known kid: this refuses `none` and HS256-with-the-public-key.
        if header.get("alg") != ALGORITHM:
            raise Unauthenticated("access token algorithm not accepted")
        kid = header.get("kid")
        if not isinstance(kid, str):
            raise Unauthenticated("access token has no key id")
        key = self._keys.get(kid)
        if key is None and time.monotonic() - self._loaded_at >= _UNKNOWN_KID_RELOAD_S:
            await self._reload()  # a replica that has not seen a fresh rotation yet
            key = self._keys.get(kid)
        if key is None:
            raise Unauthenticated("access token signed with an unknown key")
        try:
            claims = jwt.decode(
                token,
                key.public_key,
                algorithms=[ALGORITHM],
                issuer=self._settings.jwt_issuer,
                leeway=self._settings.jwt_leeway_s,
                options={"require": ["exp", "iat", "sub", "jti", "sid", "iss"]},
            )
        except jwt.ExpiredSignatureError as exc:
            raise Unauthenticated("access token expired") from exc
        except jwt.PyJWTError as exc:
            raise Unauthenticated("access token is not valid") from exc
        try:
            return kid, AccessClaims(
                user_id=uuid.UUID(claims["sub"]),
                roles=tuple(str(role) for role in claims.get("roles", ())),
                jti=str(claims["jti"]),
                session_id=uuid.UUID(claims["sid"]),
                issued_at=int(claims["iat"]),
                expires_at=int(claims["exp"]),
            )
        except (ValueError, TypeError) as exc:
            raise Unauthenticated("access token claims are malformed") from exc
