"""Error masking: what a client sees of an error with no known code, and of one with a code.

A small schema of its own, executed in process: the extension is the unit under test."""

from __future__ import annotations

import logging

import httpx
import pytest
import strawberry
from starlette.responses import PlainTextResponse
from starlette.types import Receive, Scope, Send

from gateway.app import GraphQLFirst
from gateway.errors import INTERNAL, NOT_FOUND, MaskUnexpectedErrors
from storage.errors import NotFound
from storage.tracing import reset_traceparent, set_traceparent

TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"


@strawberry.type
class Query:
    @strawberry.field
    def broken(self) -> str:
        raise RuntimeError("password column is NULL for user 42")

    @strawberry.field
    def missing(self) -> str:
        raise NotFound("no such post")


schema = strawberry.Schema(query=Query, extensions=[MaskUnexpectedErrors])


async def test_an_unexpected_error_is_masked_coded_and_logged_with_the_trace_id(
    caplog: pytest.LogCaptureFixture,
) -> None:
    token = set_traceparent(f"00-{TRACE_ID}-00f067aa0ba902b7-01")
    try:
        with caplog.at_level(logging.ERROR, logger="gateway.errors"):
            result = await schema.execute("{ broken }")
    finally:
        reset_traceparent(token)
    assert result.errors is not None
    [error] = result.errors
    assert error.formatted["message"] == "Unexpected error."
    assert error.formatted["extensions"] == {"code": INTERNAL, "traceId": TRACE_ID}
    assert "password" not in str(error.formatted)
    [record] = [r for r in caplog.records if TRACE_ID in r.getMessage()]
    assert record.exc_info is not None
    assert "password column" in str(record.exc_info[1])


async def test_an_error_with_a_known_code_keeps_its_message() -> None:
    result = await schema.execute("{ missing }")
    assert result.errors is not None
    [error] = result.errors
    assert error.formatted["message"] == "no such post"
    assert error.formatted["extensions"] == {"code": NOT_FOUND}


async def test_an_exception_escaping_the_graphql_endpoint_is_a_coded_500() -> None:
    async def broken(scope: Scope, receive: Receive, send: Send) -> None:
        raise RuntimeError("bug")

    async def others(scope: Scope, receive: Receive, send: Send) -> None:
        await PlainTextResponse(f"other {scope['method']} {scope['path']}")(scope, receive, send)

    app = GraphQLFirst(broken, others)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1") as client:
        refused = await client.post("/graphql", json={"query": "{ __typename }"})
        assert refused.status_code == 500
        assert refused.json() == {
            "errors": [{"message": "Unexpected error.", "extensions": {"code": INTERNAL}}]
        }
        # Everything but GET and POST on /graphql goes to the other routes.
        assert (await client.get("/healthz")).text == "other GET /healthz"
        assert (await client.put("/graphql")).text == "other PUT /graphql"
