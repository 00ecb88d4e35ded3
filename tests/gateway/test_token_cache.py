"""The per-replica cache of verified access tokens never outlives a token or its key."""

from __future__ import annotations

import asyncio
import time
import uuid

import pytest

from gateway.errors import Unauthenticated
from gateway.secrets import Sealer
from gateway.tokens import KeyRing
from storage.config import Settings
from storage.db import Database

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
