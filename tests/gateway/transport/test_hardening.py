"""The gateway's front door as a client meets it: limits, APQ, HTTP semantics, rate limits."""

from __future__ import annotations

import asyncio
import hashlib
import json
import uuid

import httpx
import pytest

from tests.support.graphql import LOGIN, post, register

pytestmark = pytest.mark.stack


def _sha(query: str) -> str:
    return hashlib.sha256(query.encode()).hexdigest()


def _apq(sha: str, version: int = 1) -> dict[str, object]:
    return {"persistedQuery": {"version": version, "sha256Hash": sha}}


# -- query limits ------------------------------------------------------------------------


async def _refused_as_too_complex(http_url: str, query: str, limit: str) -> None:
    reply = await post(http_url, query)
    assert reply.status == 400, reply.body
    assert reply.codes == ["QUERY_TOO_COMPLEX"], reply.body
    assert reply.errors[0]["extensions"]["limit"] == limit
    assert "data" not in reply.body


async def test_depth_bomb_is_refused_before_execution(http_url: str) -> None:
    # Today's schema has no cycle to nest through validly (User gains relations with the
    # social graph), so the bomb nests unknown fields: validation fails as well, and the
    # depth limit must be among the reasons. The recursive case is unit-tested.
    body = "id"
    for level in range(12):
        body = f"f{level} {{ {body} }}"
    reply = await post(http_url, "{ " + body + " }")
    assert reply.status == 400
    assert "QUERY_TOO_COMPLEX" in reply.codes
    limits = [e["extensions"].get("limit") for e in reply.errors]
    assert "depth" in limits
    shallow = await post(http_url, "{ blockedUsers(first: 1) { edges { node { id } } } }")
    assert "QUERY_TOO_COMPLEX" not in shallow.codes


async def test_alias_bomb_is_refused(http_url: str) -> None:
    aliases = " ".join(f"t{i}: serverTime" for i in range(100))
    await _refused_as_too_complex(http_url, "{ " + aliases + " }", "aliases")


async def test_cost_bomb_is_refused(http_url: str) -> None:
    # A page of 100 with two object levels: 1 + 100 * 2 = 201, well within the limit.
    fine = await post(http_url, "{ blockedUsers(first: 100) { edges { node { id } } } }")
    assert "QUERY_TOO_COMPLEX" not in fine.codes
    # The same shape asking for a million rows costs 2,000,001: refused before execution.
    bomb = "{ blockedUsers(first: 1000000) { edges { node { id } } } }"
    await _refused_as_too_complex(http_url, bomb, "cost")


async def test_token_bomb_is_refused(http_url: str) -> None:
    query = "{ serverTime " + "__typename " * 3000 + "}"
    await _refused_as_too_complex(http_url, query, "tokens")


async def test_parse_and_validation_errors_are_400_with_codes(http_url: str) -> None:
    broken = await post(http_url, "{ serverTime ")
    assert broken.status == 400
    assert broken.codes == ["GRAPHQL_PARSE_FAILED"]
    invalid = await post(http_url, "{ noSuchField }")
    assert invalid.status == 400
    assert invalid.codes == ["GRAPHQL_VALIDATION_FAILED"]


# -- HTTP semantics ------------------------------------------------------------------------


async def test_bodies_over_one_mebibyte_get_413(http_url: str) -> None:
    body = json.dumps({"query": "{ serverTime }", "variables": {"pad": "x" * (1 << 20)}})
    async with httpx.AsyncClient(timeout=30) as client:
        response = await client.post(
            f"{http_url}/graphql", content=body, headers={"content-type": "application/json"}
        )
    assert response.status_code == 413


async def test_only_json_and_graphql_content_types(http_url: str) -> None:
    async with httpx.AsyncClient(timeout=10) as client:
        wrong = await client.post(
            f"{http_url}/graphql",
            content="{ serverTime }",
            headers={"content-type": "text/plain"},
        )
        graphql = await client.post(
            f"{http_url}/graphql",
            content="{ serverTime }",
            headers={"content-type": "application/graphql"},
        )
    assert wrong.status_code == 415
    assert graphql.status_code == 200
    assert "serverTime" in graphql.json()["data"]


async def test_graphql_response_json_is_served_when_asked(http_url: str) -> None:
    async with httpx.AsyncClient(timeout=10) as client:
        ok = await client.post(
            f"{http_url}/graphql",
            json={"query": "{ serverTime }"},
            headers={"accept": "application/graphql-response+json"},
        )
        invalid = await client.post(
            f"{http_url}/graphql",
            json={"query": "{ nope }"},
            headers={"accept": "application/graphql-response+json"},
        )
        plain = await client.post(f"{http_url}/graphql", json={"query": "{ serverTime }"})
        unacceptable = await client.post(
            f"{http_url}/graphql", json={"query": "{ serverTime }"}, headers={"accept": "text/html"}
        )
    assert ok.headers["content-type"].startswith("application/graphql-response+json")
    assert invalid.status_code == 400
    # `*/*` accepts GraphQL over HTTP's own type (graphql-http's audit: SHOULD use it).
    assert plain.headers["content-type"].startswith("application/graphql-response+json")
    assert unacceptable.status_code == 406


async def test_mutation_over_get_is_405(http_url: str) -> None:
    async with httpx.AsyncClient(timeout=10) as client:
        response = await client.get(
            f"{http_url}/graphql",
            params={"query": 'mutation { logout(refreshToken: "x") }'},
        )
    assert response.status_code == 405
    assert response.headers["allow"] == "POST"


async def test_malformed_bodies_are_400(http_url: str) -> None:
    async with httpx.AsyncClient(timeout=10) as client:
        not_json = await client.post(
            f"{http_url}/graphql", content="{", headers={"content-type": "application/json"}
        )
        batch = await client.post(f"{http_url}/graphql", json=[{"query": "{ serverTime }"}])
        bad_variables = await client.post(
            f"{http_url}/graphql", json={"query": "{ serverTime }", "variables": [1]}
        )
    assert not_json.status_code == batch.status_code == bad_variables.status_code == 400


# -- automatic persisted queries ---------------------------------------------------------


async def test_apq_round_trip_over_post_and_get(http_url: str) -> None:
    query = f"query Apq{uuid.uuid4().hex[:8]} {{ serverTime }}"
    sha = _sha(query)
    miss = await post(http_url, None, extensions=_apq(sha))
    assert miss.status == 200
    assert miss.codes == ["PERSISTED_QUERY_NOT_FOUND"]
    assert miss.errors[0]["message"] == "PersistedQueryNotFound"

    registered = await post(http_url, query, extensions=_apq(sha))
    assert "serverTime" in registered.ok()

    hit = await post(http_url, None, extensions=_apq(sha))
    assert "serverTime" in hit.ok()
    async with httpx.AsyncClient(timeout=10) as client:
        response = await client.get(
            f"{http_url}/graphql", params={"extensions": json.dumps(_apq(sha))}
        )
    assert response.status_code == 200
    assert "serverTime" in response.json()["data"]


async def test_apq_errors(http_url: str) -> None:
    query = "{ serverTime }"
    mismatch = await post(http_url, query, extensions=_apq(_sha("{ other }")))
    assert mismatch.status == 400
    version = await post(http_url, query, extensions=_apq(_sha(query), version=2))
    assert version.status == 400
    malformed = await post(http_url, None, extensions=_apq("not-a-hash"))
    assert malformed.status == 400


# -- rate limits -----------------------------------------------------------------------------


async def test_login_attempts_per_account_are_limited(http_url: str) -> None:
    account = await register(http_url)
    wrong = {"input": {"login": account.username, "password": "definitely wrong"}}
    statuses = []
    for _ in range(12):
        reply = await post(http_url, LOGIN, wrong)
        statuses.append(reply.status)
        if reply.status == 429:
            assert reply.codes == ["RATE_LIMITED"]
            assert reply.errors[0]["extensions"]["retryAfter"] > 0
            assert int(reply.headers["retry-after"]) >= 1
            break
    assert statuses[-1] == 429, statuses
    assert statuses[:-1] == [200] * (len(statuses) - 1)
    # The right password is refused too while the account's budget is spent.
    right = await post(
        http_url, LOGIN, {"input": {"login": account.username, "password": account.password}}
    )
    assert right.status == 429


async def test_user_query_budget_triggers_and_recovers(http_url: str) -> None:
    account = await register(http_url)
    query = "{ me { id } }"
    limited = None
    async with httpx.AsyncClient(timeout=30) as client:

        async def one() -> httpx.Response:
            return await client.post(
                f"{http_url}/graphql",
                json={"query": query},
                headers={"authorization": f"Bearer {account.access_token}"},
            )

        # Bounded: at most 40 rounds of 40 concurrent requests. The budget refills at 50/s,
        # so on a loaded machine a few rounds more than burst / 40 may be needed.
        for _ in range(40):
            responses = await asyncio.gather(*(one() for _ in range(40)))
            limited = next((r for r in responses if r.status_code == 429), None)
            if limited is not None:
                break
        assert limited is not None, "the per-user query budget never ran out"
        body = limited.json()
        assert body["errors"][0]["extensions"]["code"] == "RATE_LIMITED"
        retry_after = float(body["errors"][0]["extensions"]["retryAfter"])
        await asyncio.sleep(retry_after + 0.2)
        recovered = await one()
    assert recovered.status_code == 200
    assert recovered.json()["data"]["me"]["id"] == account.id
