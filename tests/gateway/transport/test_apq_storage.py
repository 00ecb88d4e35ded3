"""Automatic persisted queries write to Redis only for a caller who was charged for a
document that parses and validates: nothing else a client sends is kept."""

from __future__ import annotations

import hashlib
import uuid
from typing import Any

import pytest

from tests.support.graphql import post

pytestmark = pytest.mark.stack


def _apq(text: str) -> tuple[str, dict[str, Any]]:
    sha = hashlib.sha256(text.encode()).hexdigest()
    return sha, {"persistedQuery": {"version": 1, "sha256Hash": sha}}


async def test_text_that_is_not_graphql_is_not_stored(http_url: str, redis: Any) -> None:
    text = f"not graphql {uuid.uuid4().hex} " + "x" * 200_000
    sha, extensions = _apq(text)
    reply = await post(http_url, text, extensions=extensions)
    assert reply.status == 400
    assert reply.codes == ["GRAPHQL_PARSE_FAILED"]
    assert await redis.exists(f"nova:apq:{sha}") == 0, "an unparseable text was stored"


async def test_a_document_that_does_not_validate_is_not_stored(http_url: str, redis: Any) -> None:
    text = f"{{ serverTime unknown_{uuid.uuid4().hex} }}"
    sha, extensions = _apq(text)
    reply = await post(http_url, text, extensions=extensions)
    assert reply.codes == ["GRAPHQL_VALIDATION_FAILED"]
    assert await redis.exists(f"nova:apq:{sha}") == 0, "an invalid document was stored"


async def test_a_request_refused_before_execution_stores_nothing(http_url: str, redis: Any) -> None:
    text = f"query Refused{uuid.uuid4().hex[:8]} {{ serverTime }}"
    sha, extensions = _apq(text)
    reply = await post(http_url, text, extensions=extensions, token="not-a-token")
    assert reply.status == 401
    assert await redis.exists(f"nova:apq:{sha}") == 0, "a refused request's document was stored"


async def test_a_document_that_runs_is_stored_and_served_by_hash(http_url: str, redis: Any) -> None:
    text = f"query Stored{uuid.uuid4().hex[:8]} {{ serverTime }}"
    sha, extensions = _apq(text)
    assert "serverTime" in (await post(http_url, text, extensions=extensions)).ok()
    assert await redis.ttl(f"nova:apq:{sha}") > 0
    assert "serverTime" in (await post(http_url, None, extensions=extensions)).ok()
