"""GraphQL over HTTP's statuses as a client meets them: `application/json` clients get 200
for every request error, `application/graphql-response+json` clients a 4xx; and a bad
input is a coded error, never a 500."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

pytestmark = pytest.mark.stack

JSON = "application/json"
GRAPHQL_RESPONSE = "application/graphql-response+json"
# graphql-http's audits 572B (parse), FDE2 (validation) and 7B9B (variable coercion).
REQUEST_ERRORS = [
    ({"query": "{ serverTime "}, "GRAPHQL_PARSE_FAILED"),
    ({"query": "{ noSuchField }"}, "GRAPHQL_VALIDATION_FAILED"),
    (
        {"query": "query ($id: ID!) { user(id: $id) { id } }", "variables": {"id": {"x": 1}}},
        "BAD_USER_INPUT",
    ),
]


async def _post(http_url: str, body: Any, accept: str) -> httpx.Response:
    async with httpx.AsyncClient(timeout=30) as client:
        return await client.post(f"{http_url}/graphql", json=body, headers={"accept": accept})


def _codes(response: httpx.Response) -> list[str]:
    return [error["extensions"]["code"] for error in response.json()["errors"]]


@pytest.mark.parametrize(("body", "code"), REQUEST_ERRORS)
async def test_request_errors_are_200_when_accepting_application_json(
    http_url: str, body: dict[str, Any], code: str
) -> None:
    response = await _post(http_url, body, JSON)
    assert response.status_code == 200, (response.status_code, response.text)
    assert response.headers["content-type"].startswith(JSON)
    assert code in _codes(response)
    assert "data" not in response.json()


@pytest.mark.parametrize(("body", "code"), REQUEST_ERRORS)
async def test_request_errors_are_400_when_accepting_graphql_response_json(
    http_url: str, body: dict[str, Any], code: str
) -> None:
    response = await _post(http_url, body, GRAPHQL_RESPONSE)
    assert response.status_code == 400, (response.status_code, response.text)
    assert response.headers["content-type"].startswith(GRAPHQL_RESPONSE)
    assert code in _codes(response)


async def test_deeply_nested_variables_are_a_coded_400(http_url: str) -> None:
    depth = 100_000
    body = '{"query": "query ($id: ID) { user(id: $id) { id } }", "variables": {"id": '
    body += "[" * depth + "]" * depth + "}}"
    async with httpx.AsyncClient(timeout=30) as client:
        response = await client.post(
            f"{http_url}/graphql", content=body, headers={"content-type": JSON}
        )
    assert response.status_code == 400, (response.status_code, response.text[:300])
    assert _codes(response) == ["BAD_USER_INPUT"]


async def test_a_flat_document_too_costly_to_validate_is_not_called_too_deep(
    http_url: str,
) -> None:
    query = "{ " + "serverTime " * 900 + "}"
    response = await _post(http_url, {"query": query}, GRAPHQL_RESPONSE)
    assert response.status_code == 400
    [error] = response.json()["errors"]
    assert error["extensions"]["code"] == "QUERY_TOO_COMPLEX"
    assert error["extensions"]["limit"] == "fieldComparisons", error
    assert error["message"] != "Validation aborted."
