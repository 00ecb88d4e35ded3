"""Requests generated from the schema (`schema.graphql`, through hypothesis-graphql): whatever
a client sends over HTTP or WebSocket, signed in or not, Nova answers with data or coded
errors, never a 500, an uncoded error or a dropped connection, and stays ready after.

The examples are derandomized (the same ones every run, so a failure reproduces) and
bounded in count; each request has a timeout.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator
from datetime import UTC
from pathlib import Path
from typing import Any

import httpx
import pytest
import websockets
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis_graphql import from_schema, nodes
from websockets.typing import Subprotocol

from deployments.settings import Settings
from storage.db import Database
from tests.support.social import Member, make_members

pytestmark = pytest.mark.stack

SCHEMA = (Path(__file__).resolve().parents[2] / "schema.graphql").read_text()
SCALARS = {
    "DateTime": st.datetimes(timezones=st.just(UTC)).map(
        lambda moment: nodes.String(moment.isoformat())
    ),
}
OPERATIONS = from_schema(SCHEMA, custom_scalars=SCALARS)
FUZZ = settings(
    max_examples=120,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
REQUEST_TIMEOUT_S = 30.0


def assert_answered(status: int, body: Any, document: str) -> None:
    """Data or coded errors: never a server error, never an error without a code."""
    assert status < 500, f"{status} for {document!r}: {body}"
    assert isinstance(body, dict), f"{status} for {document!r}: {body!r}"
    for error in body.get("errors") or []:
        code = (error.get("extensions") or {}).get("code")
        assert isinstance(code, str), f"an uncoded error for {document!r}: {error}"
        assert code, f"an empty code for {document!r}: {error}"
        assert code != "INTERNAL_SERVER_ERROR", f"a bug for {document!r}: {error}"


@pytest.fixture(scope="module")
async def fuzzer(db: Database, deployed: Settings) -> Member:
    (member,) = await make_members(db, deployed, 1, prefix="fz")
    return member


@pytest.fixture(scope="module")
async def client() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(timeout=REQUEST_TIMEOUT_S) as http:
        yield http


async def _post(
    client: httpx.AsyncClient, http_url: str, document: str, token: str | None
) -> tuple[int, Any]:
    headers = {"accept": "application/json"}
    if token is not None:
        headers["authorization"] = f"Bearer {token}"
    response = await client.post(f"{http_url}/graphql", json={"query": document}, headers=headers)
    try:
        return response.status_code, response.json()
    except ValueError:
        return response.status_code, response.text


@FUZZ
@given(document=OPERATIONS)
async def test_generated_operations_of_a_signed_in_client_over_http(
    http_url: str, client: httpx.AsyncClient, fuzzer: Member, document: str
) -> None:
    status, body = await _post(client, http_url, document, fuzzer.token)
    assert_answered(status, body, document)


@FUZZ
@given(document=OPERATIONS)
async def test_generated_operations_of_an_anonymous_client_over_http(
    http_url: str, client: httpx.AsyncClient, document: str
) -> None:
    status, body = await _post(client, http_url, document, None)
    assert_answered(status, body, document)


@FUZZ
@given(documents=st.lists(OPERATIONS, min_size=1, max_size=4))
async def test_generated_operations_over_one_websocket(
    http_url: str, fuzzer: Member, documents: list[str]
) -> None:
    """Each document as a `subscribe` message on one graphql-transport-ws connection:
    every one ends (`complete` or `error`), and the connection is not dropped."""
    url = http_url.replace("http://", "ws://") + "/graphql"
    async with websockets.connect(
        url, subprotocols=[Subprotocol("graphql-transport-ws")], open_timeout=REQUEST_TIMEOUT_S
    ) as ws:
        init = {"type": "connection_init", "payload": {"authorization": f"Bearer {fuzzer.token}"}}
        await ws.send(json.dumps(init))
        assert json.loads(await ws.recv())["type"] == "connection_ack"
        pending = {}
        for document in documents:
            operation_id = uuid.uuid4().hex
            pending[operation_id] = document
            message = {"id": operation_id, "type": "subscribe", "payload": {"query": document}}
            await ws.send(json.dumps(message))
        while pending:
            reply = json.loads(await _receive(ws))
            document = pending.get(reply.get("id", ""), "")
            if reply["type"] == "error":
                assert_answered(200, {"errors": reply["payload"]}, document)
                pending.pop(reply["id"])
            elif reply["type"] == "next":
                assert_answered(200, reply["payload"], document)
            elif reply["type"] == "complete":
                pending.pop(reply["id"])
            else:
                assert reply["type"] in {"ping", "pong"}, reply


async def _receive(ws: Any) -> str | bytes:
    try:
        message: str | bytes = await asyncio.wait_for(ws.recv(), REQUEST_TIMEOUT_S)
    except websockets.ConnectionClosed as closed:
        raise AssertionError(f"the server closed the connection: {closed}") from closed
    return message


async def test_the_stack_is_ready_after_the_fuzzing(http_url: str) -> None:
    async with httpx.AsyncClient(timeout=10) as http:
        response = await http.get(f"{http_url}/readyz")
    assert response.status_code == 200, response.text
