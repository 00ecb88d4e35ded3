"""The HTTP endpoint in-process: it looks each request's document up in the cache once,
charges what it refuses, answers by the response type the client accepts, and stores a
persisted query only once it was charged for a document that validates. No servers.

`GraphQLHTTP` runs in-process behind httpx's ASGI transport, over a small schema with the
`PreparedDocuments` extension and a runtime stub that authenticates nobody and records
its charges instead of making them, so the only cache lookups counted are the endpoint's
own.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any, cast

import httpx
import pytest
import strawberry
from starlette.applications import Starlette
from starlette.routing import Route

from deployments.settings import Settings
from gateway.limits.query_limits import QueryLimits
from gateway.limits.rate_limits import Budget, budgets
from gateway.runtime import GatewayRuntime
from gateway.transport.apq import PersistedQueryStore, query_hash
from gateway.transport.documents import DocumentCache, prepared_documents
from gateway.transport.http import GraphQLHTTP
from gateway.transport.metrics import GatewayMetrics
from gateway.transport.tracing import TraceMiddleware

LIMITS = QueryLimits(
    max_depth=10, max_aliases=15, max_tokens=2000, max_cost=5000, default_list_size=100
)


@strawberry.type
class Query:
    @strawberry.field
    def hello(self, name: str = "world") -> str:
        return f"hello {name}"


@strawberry.type
class Mutation:
    @strawberry.mutation
    def touch(self) -> bool:
        return True


PLAIN = strawberry.Schema(query=Query, mutation=Mutation)


class Runtime:
    """What `GraphQLHTTP` uses of a `GatewayRuntime`, without Redis or PostgreSQL."""

    def __init__(self, documents: DocumentCache) -> None:
        self.settings = Settings()
        self.documents = documents
        self.budgets = budgets(self.settings)
        self.replica_id = "test-replica"
        self.metrics = GatewayMetrics()  # the real one; outside Ray it records nothing
        # Never reached: these tests send no hash-only APQ requests.
        self.persisted = PersistedQueryStore(cast(Any, None), ttl_s=60)
        self.charged: list[tuple[str, str]] = []

    async def verify(self, authorization: str | None) -> None:
        if authorization == "Bearer crash":
            raise RuntimeError("a bug")

    async def charge(self, budget: Budget, subject: str, cost: int = 1) -> None:
        self.charged.append((budget.name, subject))

    @property
    def buckets(self) -> Runtime:
        return self

    def try_admit(self, budget: Budget, subject: str) -> bool:
        return False  # every charge goes through `charge` above

    # The real ones, over `charge` above (anonymous requests have no revocation check).
    operation_budgets = GatewayRuntime.operation_budgets
    admit = GatewayRuntime.admit


@pytest.fixture
def cache() -> DocumentCache:
    return DocumentCache(PLAIN._schema, LIMITS, 100)


@pytest.fixture
def runtime(cache: DocumentCache) -> Runtime:
    return Runtime(cache)


@pytest.fixture
async def client(cache: DocumentCache, runtime: Runtime) -> AsyncIterator[httpx.AsyncClient]:
    schema = strawberry.Schema(
        query=Query, mutation=Mutation, extensions=[prepared_documents(cache)]
    )
    http = GraphQLHTTP(cast(GatewayRuntime, runtime), schema)
    app = Starlette(routes=[Route("/graphql", http.handle, methods=["GET", "POST"])])
    transport = httpx.ASGITransport(app=TraceMiddleware(app))
    async with httpx.AsyncClient(transport=transport, base_url="http://nova.test") as client:
        yield client


def lookups(cache: DocumentCache) -> tuple[int, int]:
    return cache.hits, cache.misses


async def test_one_post_execution_counts_one_lookup(
    client: httpx.AsyncClient, cache: DocumentCache
) -> None:
    query = 'query Hello { hello(name: "nova") }'
    first = await client.post("/graphql", json={"query": query})
    assert first.status_code == 200
    assert first.json() == {"data": {"hello": "hello nova"}}
    assert lookups(cache) == (0, 1)
    second = await client.post("/graphql", json={"query": query})
    assert second.json() == {"data": {"hello": "hello nova"}}
    assert lookups(cache) == (1, 1)


async def test_one_get_execution_counts_one_lookup(
    client: httpx.AsyncClient, cache: DocumentCache
) -> None:
    response = await client.get("/graphql", params={"query": "{ hello }"})
    assert response.status_code == 200
    assert response.json() == {"data": {"hello": "hello world"}}
    assert lookups(cache) == (0, 1)


async def test_apq_with_the_query_counts_one_lookup(
    client: httpx.AsyncClient, cache: DocumentCache, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def stored(self: PersistedQueryStore, sha: str, query: str) -> None:
        return None

    monkeypatch.setattr(PersistedQueryStore, "put", stored)
    query = "{ hello }"
    extensions = {"persistedQuery": {"version": 1, "sha256Hash": query_hash(query)}}
    response = await client.post("/graphql", json={"query": query, "extensions": extensions})
    assert response.json() == {"data": {"hello": "hello world"}}
    assert lookups(cache) == (0, 1)


async def test_a_mutation_with_several_operations_counts_one_lookup(
    client: httpx.AsyncClient, cache: DocumentCache
) -> None:
    query = "query Read { hello } mutation Write { touch }"
    response = await client.post("/graphql", json={"query": query, "operationName": "Write"})
    assert response.json() == {"data": {"touch": True}}
    assert lookups(cache) == (0, 1)


@pytest.mark.parametrize(
    ("query", "status"),
    [("{ hello", 400), ("{ nope }", 400), ("mutation { touch }", 405)],
)
async def test_a_refused_request_counts_one_lookup(
    client: httpx.AsyncClient, cache: DocumentCache, query: str, status: int
) -> None:
    response = await client.get("/graphql", params={"query": query})
    assert response.status_code == status
    assert lookups(cache) == (0, 1)


async def test_the_prepared_document_does_not_outlive_its_request(
    client: httpx.AsyncClient, cache: DocumentCache
) -> None:
    await client.post("/graphql", json={"query": "{ hello }"})
    cache.prepare("{ hello }")  # outside any request: an ordinary, counted hit
    assert lookups(cache) == (1, 1)


# -- what a refusal costs ------------------------------------------------------------------


@pytest.mark.parametrize(
    "query",
    [
        "{ hello",
        "{ nope }",
        "query A { hello } query B { hello }",
        "query ($name: String!) { hello(name: $name) }",
    ],
)
async def test_a_refused_document_is_charged_to_the_clients_address(
    client: httpx.AsyncClient, runtime: Runtime, query: str
) -> None:
    response = await client.post("/graphql", json={"query": query})
    assert response.status_code == 400
    assert runtime.charged == [("ip-queries", "127.0.0.1")]


async def test_apq_stores_a_document_only_after_it_validated_and_was_charged(
    client: httpx.AsyncClient, runtime: Runtime, monkeypatch: pytest.MonkeyPatch
) -> None:
    stored: list[tuple[str, int]] = []

    async def put(self: PersistedQueryStore, sha: str, query: str) -> None:
        stored.append((sha, len(runtime.charged)))

    monkeypatch.setattr(PersistedQueryStore, "put", put)
    for text in ("not graphql at all", "{ nope }", "query ($name: String!) { hello(name: $name) }"):
        extensions = {"persistedQuery": {"version": 1, "sha256Hash": query_hash(text)}}
        response = await client.post("/graphql", json={"query": text, "extensions": extensions})
        assert response.status_code == 400
    assert stored == []
    query = "{ hello }"
    extensions = {"persistedQuery": {"version": 1, "sha256Hash": query_hash(query)}}
    response = await client.post("/graphql", json={"query": query, "extensions": extensions})
    assert response.json() == {"data": {"hello": "hello world"}}
    assert stored == [(query_hash(query), len(runtime.charged))]
    assert runtime.charged[-1] == ("ip-queries", "127.0.0.1")


# -- statuses by the response type (GraphQL over HTTP) -------------------------------------

REQUEST_ERRORS = [
    ({"query": "{ hello"}, "GRAPHQL_PARSE_FAILED"),
    ({"query": "{ nope }"}, "GRAPHQL_VALIDATION_FAILED"),
    (
        {"query": "query ($name: String!) { hello(name: $name) }", "variables": {"name": [1]}},
        "BAD_USER_INPUT",
    ),
    ({"query": "query ($name: String!) { hello(name: $name) }"}, "BAD_USER_INPUT"),
]


@pytest.mark.parametrize(("body", "code"), REQUEST_ERRORS)
async def test_request_errors_are_200_for_application_json(
    client: httpx.AsyncClient, body: dict[str, Any], code: str
) -> None:
    response = await client.post("/graphql", json=body, headers={"accept": "application/json"})
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("application/json")
    assert "data" not in response.json()
    assert [e["extensions"]["code"] for e in response.json()["errors"]][:1] == [code]


@pytest.mark.parametrize("accept", ["application/graphql-response+json", "*/*", None])
@pytest.mark.parametrize(("body", "code"), REQUEST_ERRORS)
async def test_request_errors_are_400_for_graphql_response_json(
    client: httpx.AsyncClient, body: dict[str, Any], code: str, accept: str | None
) -> None:
    headers = {"accept": accept} if accept else {}
    request = client.build_request("POST", "/graphql", json=body, headers=headers)
    if accept is None:
        del request.headers["accept"]
    response = await client.send(request)
    assert response.status_code == 400, response.text
    assert response.headers["content-type"].startswith("application/graphql-response+json")
    assert [e["extensions"]["code"] for e in response.json()["errors"]][:1] == [code]


@pytest.mark.parametrize(
    ("accept", "media"),
    [
        ("application/json, application/graphql-response+json", "application/json"),
        (
            "application/graphql-response+json, application/json",
            "application/graphql-response+json",
        ),
        (
            "application/json;q=0.5, application/graphql-response+json;q=0.9",
            "application/graphql-response+json",
        ),
        ("application/graphql-response+json;q=0, */*", "application/json"),
        ("application/json, */*;q=0.1", "application/json"),
        ("application/*", "application/graphql-response+json"),
    ],
)
async def test_the_response_type_follows_the_accept_header(
    client: httpx.AsyncClient, accept: str, media: str
) -> None:
    response = await client.post(
        "/graphql", json={"query": "{ hello }"}, headers={"accept": accept}
    )
    assert response.status_code == 200
    assert response.headers["content-type"].startswith(media)


# -- malformed requests ----------------------------------------------------------------------


def _nested(depth: int) -> str:
    return "[" * depth + "]" * depth


@pytest.mark.parametrize("depth", [100_000, 1_000, 65])
async def test_deeply_nested_variables_are_a_coded_400(
    client: httpx.AsyncClient, depth: int
) -> None:
    body = '{"query": "query ($n: Int) { hello }", "variables": {"n": ' + _nested(depth) + "}}"
    response = await client.post(
        "/graphql", content=body, headers={"content-type": "application/json"}
    )
    assert response.status_code == 400, response.text
    assert response.json()["errors"][0]["extensions"]["code"] == "BAD_USER_INPUT"
    if depth > 10_000:
        return  # past what a URL may carry
    over_get = await client.get(
        "/graphql", params={"query": "{ hello }", "extensions": _nested(depth)}
    )
    assert over_get.status_code == 400
    assert over_get.json()["errors"][0]["extensions"]["code"] == "BAD_USER_INPUT"


async def test_a_bug_is_a_coded_500_with_the_trace_id(client: httpx.AsyncClient) -> None:
    response = await client.post(
        "/graphql", json={"query": "{ hello }"}, headers={"authorization": "Bearer crash"}
    )
    assert response.status_code == 500
    [error] = response.json()["errors"]
    assert error["message"] == "Unexpected error."
    assert error["extensions"]["code"] == "INTERNAL_SERVER_ERROR"
    assert len(error["extensions"]["traceId"]) == 32
    assert "a bug" not in response.text
