"""The gateway's metrics as an operator sees them: scraped from Ray's Prometheus endpoint
on the test cluster, after requests made through Serve's proxy."""

from __future__ import annotations

import asyncio

import pytest
import websockets

from deployments.stack import Stack
from tests.support.graphql import post
from tests.support.metrics import metric_reaches, metric_sum, scrape

pytestmark = pytest.mark.stack


async def test_requests_are_counted_by_operation_kind_and_status(
    stack: Stack, http_url: str
) -> None:
    text = await scrape(stack)
    queries = metric_sum(text, "ray_nova_gateway_requests_total", operation="query", status="200")
    refused = metric_sum(text, "ray_nova_gateway_requests_total", operation="refused", status="400")

    for _ in range(3):
        assert (await post(http_url, "{ serverTime }")).status == 200
        assert (await post(http_url, "{ serverTime ")).status == 400  # does not parse

    await metric_reaches(
        stack,
        "ray_nova_gateway_requests_total",
        lambda v: v >= queries + 3,
        operation="query",
        status="200",
    )
    await metric_reaches(
        stack,
        "ray_nova_gateway_requests_total",
        lambda v: v >= refused + 3,
        operation="refused",
        status="400",
    )
    timed = metric_sum(  # requests the latency histogram counted, not how long they took
        await scrape(stack), "ray_nova_gateway_request_ms_count", operation="query"
    )
    assert timed >= queries + 3


async def test_serve_counts_http_requests_to_the_gateway(stack: Stack, http_url: str) -> None:
    # The embedded stack has the ingress replica record Serve's HTTP metrics rather than
    # HAProxy's per-request log datagrams (`deployments.stack.SERVE_FAST_PATH`): the
    # dashboard's Serve panels must still see every request, by route and status.
    labels = {"application": "nova", "method": "POST", "status_code": "200"}
    before = metric_sum(await scrape(stack), "ray_serve_num_http_requests_total", **labels)
    for _ in range(4):
        assert (await post(http_url, "{ serverTime }")).status == 200
    await metric_reaches(
        stack, "ray_serve_num_http_requests_total", lambda v: v >= before + 4, **labels
    )
    assert (
        metric_sum(await scrape(stack), "ray_serve_http_request_latency_ms_count", **labels)
        >= before + 4
    )


async def test_open_websockets_are_a_gauge(stack: Stack, http_url: str) -> None:
    url = http_url.replace("http://", "ws://") + "/graphql"
    async with websockets.connect(url, subprotocols=["graphql-transport-ws"]) as socket:  # type: ignore[list-item]
        await socket.send('{"type":"connection_init"}')
        assert '"connection_ack"' in str(await asyncio.wait_for(socket.recv(), 10))
        open_now = await metric_reaches(
            stack, "ray_nova_gateway_open", lambda v: v >= 1, kind="websockets"
        )
    await metric_reaches(stack, "ray_nova_gateway_open", lambda v: v < open_now, kind="websockets")
