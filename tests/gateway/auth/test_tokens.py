"""The per-replica cache of verified access tokens never outlives a token or its key."""

from __future__ import annotations

import asyncio
import time
import uuid
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization

from deployments.settings import Settings
from gateway.auth import tokens
from gateway.auth.tokens import KeyRing
from gateway.errors import Unauthenticated
from storage.db import Database
from storage.secrets import Sealer

pytestmark = pytest.mark.stack


async def test_a_cached_token_still_expires_and_still_needs_its_key(
    db: Database, settings: Settings
) -> None:
    short = settings.replace(access_token_ttl_s=2, jwt_leeway_s=0)
    ring = KeyRing(db, Sealer.from_settings(short), short)
    await ring.load()
    user, session = uuid.uuid4(), uuid.uuid4()
    token = ring.issue(user, ["user"], session).token

    first = await ring.verify(token)
    assert await ring.verify(token) == first  # served from the cache
    assert first.user_id == user

    await asyncio.sleep(3.1)
    with pytest.raises(Unauthenticated, match="expired"):
        await ring.verify(token)

    fresh = ring.issue(user, ["user"], session).token
    await ring.verify(fresh)
    ring._keys.clear()  # the signing key is gone (retired) from this replica's ring
    ring._loaded_at = time.monotonic() + 1e9  # and no reload is due
    with pytest.raises(Unauthenticated, match="unknown key"):
        await ring.verify(fresh)


async def test_a_refresh_reuses_parsed_keys_and_shares_one_reload(
    db: Database, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    sealer = Sealer.from_settings(settings)
    ring = KeyRing(db, sealer, settings)
    await ring.load()
    before = ring.signing_kid
    token = ring.issue(uuid.uuid4(), ["user"], uuid.uuid4()).token

    parsed: list[str] = []
    real_parse = serialization.load_pem_private_key

    def counting_parse(*args: Any, **kwargs: Any) -> Any:
        parsed.append("private key")
        return real_parse(*args, **kwargs)

    monkeypatch.setattr(serialization, "load_pem_private_key", counting_parse)
    await ring.load()  # nothing new: no key is parsed again (about 40 ms of CPU each)
    assert parsed == []
    assert ring.signing_kid == before

    rotated = await tokens.rotate_signing_key(db, sealer)
    await ring.load()
    assert parsed == ["private key"]
    assert ring.signing_kid == rotated
    assert (await ring.verify(token)).jti  # the superseded key still verifies

    loads = 0
    real_load = ring.load

    async def counting_load() -> None:
        nonlocal loads
        loads += 1
        await real_load()

    monkeypatch.setattr(ring, "load", counting_load)
    ring._loaded_at = 0.0  # stale for everyone at once
    await asyncio.gather(*(ring.refresh_if_stale() for _ in range(10)))
    assert loads == 1
