"""One-click unsubscribe tokens for notification mail (RFC 8058).

A token names a user, what to stop (`all` email, or one kind) and when it expires, signed
with HMAC-SHA256 under a key derived from `NOVA_SECRET_KEY` for this use alone. The digest
job signs (`actors.notification_digest`), the gateway verifies (`GET` and `POST
/unsubscribe?token=…`); no sign-in is needed, so the signature is the whole authority.

`<user id hex>.<all|kind>.<expires, unix s>.<signature, base64url>`
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import time
import uuid
from dataclasses import dataclass

from storage.errors import ConfigError
from storage.settings import env_name

ALL = "all"


class BadToken(Exception):
    """A token that does not verify; `status` is the HTTP answer (400 malformed, 403
    tampered or expired)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class Unsubscribe:
    user_id: uuid.UUID
    kind: str | None  # None: every notification mail
    expires_at: int


class UnsubscribeTokens:
    """Signs and verifies unsubscribe tokens.

    >>> tokens = UnsubscribeTokens("k" * 44)
    >>> user = uuid.UUID(int=1)
    >>> tokens.verify(tokens.sign(user, None, ttl_s=60)).user_id == user
    True
    """

    def __init__(self, secret_key: str | None) -> None:
        if not secret_key:
            raise ConfigError(f"{env_name('secret_key')} is required to sign unsubscribe links")
        self._key = hashlib.sha256(b"nova unsubscribe\0" + secret_key.encode()).digest()

    def sign(
        self, user_id: uuid.UUID, kind: str | None, *, ttl_s: int, now: float | None = None
    ) -> str:
        expires = int((time.time() if now is None else now) + ttl_s)
        body = f"{user_id.hex}.{kind or ALL}.{expires}"
        return f"{body}.{self._signature(body)}"

    def verify(self, token: str, *, now: float | None = None) -> Unsubscribe:
        parts = token.split(".")
        if len(parts) != 4:
            raise BadToken(400, "this unsubscribe link is malformed: copy the whole link")
        user_hex, kind, expires_text, signature = parts
        try:
            user_id = uuid.UUID(hex=user_hex)
            expires = int(expires_text)
        except ValueError as exc:
            raise BadToken(400, "this unsubscribe link is malformed: copy the whole link") from exc
        # The signature's text, compared as text: one encoding of it is valid, no other.
        expected = self._signature(f"{user_hex}.{kind}.{expires_text}")
        if not hmac.compare_digest(signature.encode(), expected.encode()):
            raise BadToken(403, "this unsubscribe link is not valid (it was altered)")
        if expires < (time.time() if now is None else now):
            raise BadToken(
                403,
                "this unsubscribe link has expired: use the link in a newer mail, or "
                "change your notification settings in the app",
            )
        return Unsubscribe(user_id, None if kind == ALL else kind, expires)

    def _signature(self, body: str) -> str:
        digest = hmac.new(self._key, body.encode(), hashlib.sha256).digest()
        return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()
