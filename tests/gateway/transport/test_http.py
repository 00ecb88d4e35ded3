"""The gateway through Serve's proxy, as a client sees it: HTTP, WebSocket, health."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import httpx
import pytest
from gql import Client, gql
from gql.transport.exceptions import TransportQueryError
from gql.transport.httpx import HTTPXAsyncTransport
from gql.transport.websockets import WebsocketsTransport

from deployments.stack import Stack
from storage.tracing import new_traceparent, trace_id_of
from tests.conftest import wait_until

pytestmark = pytest.mark.stack


async def test_query_over_http_with_a_graphql_client(http_url: str) -> None:
    transport = HTTPXAsyncTransport(url=f"{http_url}/graphql", timeout=10)
    async with Client(transport=transport) as session:
        result = await session.execute(gql("query Now { serverTime }"))
    server_time = datetime.fromisoformat(result["serverTime"])
    assert abs(server_time - datetime.now(UTC)) < timedelta(seconds=30)


async def test_get_request_is_served_at_the_exact_path(http_url: str) -> None:
    async with httpx.AsyncClient(timeout=10) as client:
        response = await client.get(
            f"{http_url}/graphql",
            params={"query": "{ serverTime }"},
            headers={"accept": "application/json"},
        )
    assert response.status_code == 200
    assert "serverTime" in response.json()["data"]


async def test_subscription_over_websocket_streams_every_tick(http_url: str) -> None:
    url = http_url.replace("http://", "ws://") + "/graphql"
    transport = WebsocketsTransport(
        url=url, subprotocols=[WebsocketsTransport.GRAPHQLWS_SUBPROTOCOL]
    )
    async with Client(transport=transport) as session:
        ticks = [
            result["ticks"]
            async for result in session.subscribe(
                gql("subscription { ticks(count: 5, intervalMs: 10) }")
            )
        ]
    assert ticks == [1, 2, 3, 4, 5]


async def test_out_of_range_subscription_argument_is_bad_user_input(http_url: str) -> None:
    url = http_url.replace("http://", "ws://") + "/graphql"
    transport = WebsocketsTransport(
        url=url, subprotocols=[WebsocketsTransport.GRAPHQLWS_SUBPROTOCOL]
    )
    async with Client(transport=transport) as session:
        with pytest.raises(TransportQueryError) as raised:
            async for _ in session.subscribe(gql("subscription { ticks(count: 0) }")):
                pass
    assert raised.value.errors is not None
    assert raised.value.errors[0]["extensions"]["code"] == "BAD_USER_INPUT"


async def test_trace_context_is_continued_and_echoed(http_url: str) -> None:
    incoming = new_traceparent()
    async with httpx.AsyncClient(timeout=10) as client:
        response = await client.get(f"{http_url}/healthz", headers={"traceparent": incoming})
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}
    assert trace_id_of(response.headers["traceparent"]) == trace_id_of(incoming)


async def test_readyz_is_503_naming_redis_while_it_is_down_and_200_after(
    http_url: str, stack: Stack
) -> None:
    async def readyz() -> httpx.Response:
        async with httpx.AsyncClient(timeout=10) as client:
            return await client.get(f"{http_url}/readyz")

    assert (await readyz()).status_code == 200
    stack.redis.stop()
    try:

        async def unavailable() -> httpx.Response | None:
            response = await readyz()
            return response if response.status_code == 503 else None

        response = await wait_until(unavailable, timeout_s=30, message="/readyz to turn 503")
        body = response.json()
        assert body["failing"] == ["redis"]
        assert body["checks"]["postgresql"] == "ok"
        assert response.headers["retry-after"] == "1"
    finally:
        stack.redis.start()

    async def ready() -> bool:
        return (await readyz()).status_code == 200

    await wait_until(ready, timeout_s=30, message="/readyz to recover")
