"""The gateway's server spans: one per HTTP request, under the ids it logs and answers with.

`GraphQLHTTP` runs in-process behind `TraceMiddleware` (the runtime stub of
`test_documents`), exporting to a real OTLP/HTTP receiver on 127.0.0.1.
"""

from __future__ import annotations

import io
import json
import logging
from collections.abc import AsyncIterator, Iterator
from typing import cast

import httpx
import pytest
import strawberry
from starlette.applications import Starlette
from starlette.responses import PlainTextResponse
from starlette.routing import Route

from gateway.runtime import GatewayRuntime
from gateway.transport.documents import DocumentCache, prepared_documents
from gateway.transport.http import GraphQLHTTP
from gateway.transport.tracing import TraceMiddleware
from storage.logs import JsonFormatter
from storage.settings import StorageSettings
from storage.tracing import SpanExport, export_spans, new_traceparent, stop_export
from tests.gateway.transport.test_documents import LIMITS, Runtime
from tests.support.otlp import OtlpReceiver, ReceivedSpan, otlp_receiver

log = logging.getLogger("gateway.tests.trace_spans")


@strawberry.type
class Query:
    @strawberry.field
    def hello(self) -> str:
        log.info("resolving hello")
        return "hello"

    @strawberry.field
    def boom(self) -> str:
        raise RuntimeError("a bug")


@pytest.fixture
def logged() -> Iterator[io.StringIO]:
    """Log lines of the resolvers, in Nova's JSON format."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    log.addHandler(handler)
    log.setLevel(logging.INFO)
    log.propagate = False
    try:
        yield stream
    finally:
        log.removeHandler(handler)


@pytest.fixture
def receiver() -> Iterator[OtlpReceiver]:
    with otlp_receiver() as running:
        yield running


@pytest.fixture
def exporting(receiver: OtlpReceiver) -> Iterator[SpanExport]:
    export = export_spans(
        StorageSettings(otlp_endpoint=receiver.url), service="nova-gateway", instance="replica-1"
    )
    assert export is not None
    try:
        yield export
    finally:
        stop_export()


@pytest.fixture
async def client(exporting: SpanExport) -> AsyncIterator[httpx.AsyncClient]:
    cache = DocumentCache(strawberry.Schema(query=Query)._schema, LIMITS, 100)
    schema = strawberry.Schema(query=Query, extensions=[prepared_documents(cache)])
    http = GraphQLHTTP(cast(GatewayRuntime, Runtime(cache)), schema)
    app = Starlette(
        routes=[
            Route("/graphql", http.handle, methods=["GET", "POST"]),
            Route("/healthz", lambda _: PlainTextResponse("ok")),
        ]
    )
    transport = httpx.ASGITransport(app=TraceMiddleware(app))
    async with httpx.AsyncClient(transport=transport, base_url="http://nova.test") as client:
        yield client


def only_span(receiver: OtlpReceiver, export: SpanExport) -> ReceivedSpan:
    assert export.flush(5)
    spans = receiver.wait_for(lambda span: True)
    assert len(spans) == 1, spans
    return spans[0]


async def test_a_request_span_has_the_ids_the_gateway_logs_and_answers_with(
    client: httpx.AsyncClient,
    receiver: OtlpReceiver,
    exporting: SpanExport,
    logged: io.StringIO,
) -> None:
    caller = new_traceparent()
    response = await client.post(
        "/graphql", json={"query": "query Hello { hello }"}, headers={"traceparent": caller}
    )
    assert response.status_code == 200
    _, answered_trace, answered_span, _ = response.headers["traceparent"].split("-")
    _, caller_trace, caller_span, _ = caller.split("-")
    (line,) = [json.loads(line) for line in logged.getvalue().splitlines()]

    span = only_span(receiver, exporting)
    assert span.trace_id == answered_trace == caller_trace == line["trace_id"]
    assert span.span_id == answered_span
    assert span.parent_span_id == caller_span
    assert span.kind == "server"
    assert span.name == "query Hello"
    assert span.attributes["graphql.operation.type"] == "query"
    assert span.attributes["graphql.operation.name"] == "Hello"
    assert span.attributes["http.request.method"] == "POST"
    assert span.attributes["http.response.status_code"] == 200
    assert "graphql.errors.count" not in span.attributes
    assert not span.failed
    assert span.resource["service.name"] == "nova-gateway"
    assert span.resource["service.instance.id"] == "replica-1"


async def test_a_request_without_a_traceparent_is_a_root_span_of_the_trace_it_answers(
    client: httpx.AsyncClient, receiver: OtlpReceiver, exporting: SpanExport
) -> None:
    response = await client.get("/graphql", params={"query": "{ hello }"})
    _, trace_id, span_id, _ = response.headers["traceparent"].split("-")
    span = only_span(receiver, exporting)
    assert (span.trace_id, span.span_id, span.parent_span_id) == (trace_id, span_id, "")
    assert span.name == "query"


async def test_an_unexpected_error_fails_the_span_under_the_trace_id_the_client_gets(
    client: httpx.AsyncClient, receiver: OtlpReceiver, exporting: SpanExport
) -> None:
    response = await client.post("/graphql", json={"query": "query Boom { boom }"})
    assert response.json()["errors"][0]["extensions"]["code"] == "INTERNAL_SERVER_ERROR"
    span = only_span(receiver, exporting)
    assert span.trace_id == response.headers["traceparent"].split("-")[1]
    assert span.failed
    assert span.attributes["graphql.errors.codes"] == ["INTERNAL_SERVER_ERROR"]
    assert span.attributes["graphql.errors.count"] == 1


async def test_a_request_error_is_counted_without_failing_the_span(
    client: httpx.AsyncClient, receiver: OtlpReceiver, exporting: SpanExport
) -> None:
    response = await client.post("/graphql", json={"query": "{ nope }"})
    assert response.status_code == 400
    span = only_span(receiver, exporting)
    assert span.name == "POST /graphql"
    assert span.attributes["http.response.status_code"] == 400
    assert span.attributes["graphql.errors.count"] == 1
    assert not span.failed


async def test_health_probes_have_no_spans(
    client: httpx.AsyncClient, receiver: OtlpReceiver, exporting: SpanExport
) -> None:
    probe = await client.get("/healthz")
    assert probe.status_code == 200
    assert "traceparent" in probe.headers
    await client.post("/graphql", json={"query": "{ hello }"})
    span = only_span(receiver, exporting)
    assert span.attributes["url.path"] == "/graphql"
