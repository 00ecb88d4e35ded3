"""Secrets at rest: one Fernet key (`NOVA_SECRET_KEY`) seals what must not be stored plain.

Signing keys live in PostgreSQL and one-time tokens travel through the outbox and Kafka to
the mail consumer; both are sealed (AES-128-CBC + HMAC-SHA256) so a database dump or a
topic reader learns nothing usable.
"""

from __future__ import annotations

from cryptography.fernet import Fernet, InvalidToken

from storage.errors import ConfigError
from storage.settings import StorageSettings, env_name


def new_secret_key() -> str:
    """A fresh key for `NOVA_SECRET_KEY`."""
    return Fernet.generate_key().decode()


class Sealer:
    """Encrypts and authenticates small secrets with `NOVA_SECRET_KEY`."""

    def __init__(self, secret_key: str) -> None:
        try:
            self._fernet = Fernet(secret_key.encode())
        except (ValueError, TypeError) as exc:
            raise ConfigError(
                f"{env_name('secret_key')} is not a Fernet key (32 url-safe base64 bytes)"
            ) from exc

    @classmethod
    def from_settings(cls, settings: StorageSettings) -> Sealer:
        if not settings.secret_key:
            raise ConfigError(f"{env_name('secret_key')} is required (see `nova up`)")
        return cls(settings.secret_key)

    def seal(self, plain: bytes) -> str:
        return self._fernet.encrypt(plain).decode()

    def open(self, sealed: str) -> bytes:
        try:
            return self._fernet.decrypt(sealed.encode())
        except InvalidToken as exc:
            raise ConfigError("sealed value does not open with this NOVA_SECRET_KEY") from exc
