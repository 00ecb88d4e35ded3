"""Signed download links of data export archives.

`<public url>/exports/<export id>/<signature>/<expires, unix s>/nova-export.zip`: the
signature is HMAC-SHA256 over the export id and the expiry, under a key derived from
`NOVA_SECRET_KEY` for this use alone, so the link is the whole authority (it is mailed, and
opened by a browser that may not be signed in). The gateway serves it
(`gateway.transport.export_http`); the mail consumer puts it in the "ready" mail.
"""

from __future__ import annotations

import hashlib
import hmac
import time
import uuid

from storage.errors import ConfigError

ARCHIVE = "nova-export.zip"


class ExportLinks:
    def __init__(self, secret_key: str | None) -> None:
        if not secret_key:
            raise ConfigError("NOVA_SECRET_KEY is required to sign data export links")
        self._key = hashlib.sha256(b"nova data export\0" + secret_key.encode()).digest()

    def signature(self, export_id: uuid.UUID, expires: int) -> str:
        message = f"{export_id}\0{expires}".encode()
        return hmac.new(self._key, message, hashlib.sha256).hexdigest()

    def url(self, public_url: str, export_id: uuid.UUID, expires: int) -> str:
        signature = self.signature(export_id, expires)
        return f"{public_url.rstrip('/')}/exports/{export_id}/{signature}/{expires}/{ARCHIVE}"

    def valid(self, export_id: uuid.UUID, signature: str, expires: int) -> bool:
        """Whether the link is the one signed and has not expired."""
        good = hmac.compare_digest(self.signature(export_id, expires), signature)
        return good and expires > time.time()
