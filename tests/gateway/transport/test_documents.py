"""The HTTP endpoint looks each request's document up in the cache once. No servers.

`GraphQLHTTP` runs in-process behind httpx's ASGI transport, over a small schema with the
`PreparedDocuments` extension and a runtime stub that authenticates nobody and charges
nothing, so the only cache lookups counted are the endpoint's own.
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

    async def verify(self, authorization: str | None) -> None:
        return None

    async def charge(self, budget: Budget, subject: str, cost: int = 1) -> None:
        return None

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
async def client(cache: DocumentCache) -> AsyncIterator[httpx.AsyncClient]:
    schema = strawberry.Schema(
        query=Query, mutation=Mutation, extensions=[prepared_documents(cache)]
    )
    http = GraphQLHTTP(cast(GatewayRuntime, Runtime(cache)), schema)
    app = Starlette(routes=[Route("/graphql", http.handle, methods=["GET", "POST"])])
    transport = httpx.ASGITransport(app=app)
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
