"""`ticks` cannot turn one request into a flood: its interval has a floor, and every tick
after the first is charged to the caller's query budget, as a query would be."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
import websockets

from tests.support.graphql import register

pytestmark = pytest.mark.stack


async def _stream(http_url: str, query: str, token: str | None = None) -> list[dict[str, Any]]:
    """Every message of one subscription, until it completes or fails."""
    url = http_url.replace("http://", "ws://") + "/graphql"
    payload = {"authorization": f"Bearer {token}"} if token else {}
    messages: list[dict[str, Any]] = []
    async with websockets.connect(url, subprotocols=["graphql-transport-ws"]) as ws:  # type: ignore[list-item]
        await ws.send(json.dumps({"type": "connection_init", "payload": payload}))
        assert json.loads(await asyncio.wait_for(ws.recv(), 30))["type"] == "connection_ack"
        await ws.send(json.dumps({"id": "t", "type": "subscribe", "payload": {"query": query}}))
        async with asyncio.timeout(120):
            while True:
                message = json.loads(await ws.recv())
                if message.get("id") != "t":
                    continue
                messages.append(message)
                if message["type"] in ("complete", "error"):
                    return messages
                errors = message.get("payload", {}).get("errors")
                if errors:
                    return messages


def _ticks(messages: list[dict[str, Any]]) -> list[int]:
    payloads = [m.get("payload") for m in messages]
    return [p["data"]["ticks"] for p in payloads if isinstance(p, dict) and p.get("data")]


def _codes(messages: list[dict[str, Any]]) -> list[str]:
    codes = []
    for message in messages:
        payload = message.get("payload")
        errors = payload if isinstance(payload, list) else (payload or {}).get("errors") or []
        codes += [error.get("extensions", {}).get("code") for error in errors]
    return codes


async def test_ticks_without_an_interval_are_refused(http_url: str) -> None:
    messages = await _stream(http_url, "subscription { ticks(count: 1000, intervalMs: 0) }")
    assert _ticks(messages) == []
    assert _codes(messages) == ["BAD_USER_INPUT"], messages


async def test_every_tick_is_charged_to_the_callers_query_budget(http_url: str) -> None:
    # The test deployment gives each user 100 queries at once and 20 a second after that
    # (tests/conftest.py): 1,000 ticks 10 ms apart outrun it well before the last one.
    account = await register(http_url)
    query = "subscription { ticks(count: 1000, intervalMs: 10) }"
    messages = await _stream(http_url, query, account.access_token)
    ticks = _ticks(messages)
    assert "RATE_LIMITED" in _codes(messages), messages[-3:]
    assert 50 <= len(ticks) < 1000
    assert ticks == list(range(1, len(ticks) + 1))
