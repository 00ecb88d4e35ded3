"""Gateway benchmark: an authenticated `me` query through Serve, against a bare Serve route.

    cd /work/main && .venv/bin/python -m bench.gateway

Needs the dev stack (`nova up`). In one run:

* Baseline: a bare Serve deployment (`bench-bare`, same proxy, one replica) answering
  `POST /bench-bare` with the same JSON the `me` query returns. Saturation throughput at
  fixed concurrency, then p50/p99 at half of that rate.
* Nova: `{ me { id username displayName } }` with a bearer token (JWT verification, the
  Redis revocation check, rate limits, the cached document and the user DataLoader), at
  the same concurrency and then at the same offered rate (half the bare saturation rate).
* The paced part runs in rounds that alternate the two (bare, Nova; Nova, bare; ...), and
  each side's latencies are pooled over its rounds: this machine's speed drifts within
  minutes, and a drift then falls on both sides instead of on whichever ran second. Each
  round's p99 is reported too.
* Nova alone at half its own saturation rate too: when half the bare route's rate is
  beyond what Nova sustains, the latency there is a queue's, not what a user sees.
* Logins per second, separately: Argon2id is slow on purpose.

Every loop is bounded in count and time; the bare app is deleted at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import sys
import time
import uuid
from typing import Any

import aiohttp
import httpx

from bench.goals import Goal
from bench.harness import PacedResult, ratio, run_on_ray, run_paced, summarize

SCENARIO = "gateway"
BARE_APP = "bench-bare"
BARE_ROUTE = "/bench-bare"
CONCURRENCY = 16
SATURATION_REQUESTS = 2_000
PACED_ROUNDS = 3
PACED_REQUESTS = 1_000  # per side and round
LOGINS = 20
LOGIN_ACCOUNTS = 4  # 5 logins each: within the per-account login burst
USERS = 32  # the per-user query budget is 50/s: 32 users leave room for 1,600/s
PASSWORD = "bench password 1234"
ME = "query Me { me { id username displayName } }"


def deploy_bare(response_body: bytes) -> None:
    """A Serve deployment that returns `response_body`: the proxy's cost with no work."""
    from ray import serve
    from starlette.requests import Request
    from starlette.responses import Response

    # Serve's default admits 5 requests at a time per replica and queues the rest in the
    # proxy; the gateway admits thousands. The baseline gets the gateway's limit, or the
    # comparison measures that queue rather than the proxy.
    @serve.deployment(name="BenchBare", ray_actor_options={"num_cpus": 0}, max_ongoing_requests=200)
    class Bare:
        async def __call__(self, request: Request) -> Response:
            await request.body()
            return Response(response_body, media_type="application/json")

    serve.run(Bare.bind(), name=BARE_APP, route_prefix=BARE_ROUTE, blocking=False)  # type: ignore[attr-defined]


def delete_bare() -> None:
    """Delete the bare app `deploy_bare` started (nothing when it is not there)."""
    from ray import serve

    with contextlib.suppress(Exception):
        serve.delete(BARE_APP)


async def wait_ready(client: httpx.AsyncClient, url: str, timeout_s: float = 60) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            if (await client.post(url, json={})).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        await asyncio.sleep(0.5)
    raise RuntimeError(f"{url} did not become ready in {timeout_s}s")


async def _register(client: httpx.AsyncClient, graphql: str) -> tuple[str, str]:
    """A new account: (username, access token)."""
    username = f"bench_{uuid.uuid4().hex[:10]}"
    reply = await client.post(
        graphql,
        json={
            "query": "mutation($i: RegisterInput!) { register(input: $i) { accessToken } }",
            "variables": {
                "i": {
                    "email": f"{username}@example.com",
                    "username": username,
                    "password": PASSWORD,
                }
            },
        },
    )
    if reply.status_code != 200 or "errors" in reply.json():
        raise RuntimeError(f"register failed: {reply.status_code} {reply.text[:200]}")
    return username, reply.json()["data"]["register"]["accessToken"]


async def load(
    session: aiohttp.ClientSession,
    url: str,
    body: dict[str, Any],
    headers: list[dict[str, str]],
    *,
    count: int,
    rate: float | None,
) -> tuple[PacedResult, list[float]]:
    """`count` POSTs of `body`, at most CONCURRENCY at once, paced at `rate` if given; the
    run and each request's latency in ms.

    The load comes from aiohttp, with the body encoded once: on these 2 cores the load
    tool shares the CPU with Serve, and httpx spent so much of it per request that it, not
    Serve, set the saturation rate (a bare route: 184 req/s under httpx, 330 under aiohttp).
    """
    data = json.dumps(body).encode()
    prepared = [{"content-type": "application/json", **h} for h in headers]
    latencies: list[float] = []

    async def one(index: int) -> None:
        started = time.perf_counter()
        async with session.post(url, data=data, headers=prepared[index % len(prepared)]) as reply:
            payload = await reply.read()
        if reply.status != 200 or b'"errors"' in payload:
            raise RuntimeError(f"{reply.status}: {payload[:200]!r}")
        latencies.append((time.perf_counter() - started) * 1000)

    deadline_s = (count / rate if rate else 0) + 120
    result = await run_paced(
        one, count=count, rate_per_s=rate, concurrency=CONCURRENCY, deadline_s=deadline_s
    )
    return result, latencies


async def saturation(
    session: aiohttp.ClientSession, url: str, body: dict[str, Any], headers: list[dict[str, str]]
) -> dict[str, Any]:
    """As fast as CONCURRENCY connections go."""
    result, latencies = await load(
        session, url, body, headers, count=SATURATION_REQUESTS, rate=None
    )
    return {"run": result.to_dict(), "latency_ms": summarize(latencies)}


async def paced_rounds(
    session: aiohttp.ClientSession,
    sides: dict[str, tuple[str, dict[str, Any], list[dict[str, str]]]],
    rate: float,
) -> dict[str, dict[str, Any]]:
    """Each side (url, body, headers) at `rate`, PACED_ROUNDS times, alternating which goes
    first; latencies pooled per side, with each round's p50/p99 beside them."""
    rounds: dict[str, list[tuple[PacedResult, list[float]]]] = {name: [] for name in sides}
    order = list(sides)
    for number in range(PACED_ROUNDS):
        for name in order if number % 2 == 0 else order[::-1]:
            url, body, headers = sides[name]
            rounds[name].append(
                await load(session, url, body, headers, count=PACED_REQUESTS, rate=rate)
            )
    report: dict[str, dict[str, Any]] = {}
    for name, runs in rounds.items():
        summaries = [summarize(latencies) for _, latencies in runs]
        report[name] = {
            "run": PacedResult.combined([result for result, _ in runs]).to_dict(),
            "latency_ms": summarize([ms for _, latencies in runs for ms in latencies]),
            "rounds_p50_p99_ms": [[s["p50"], s["p99"]] for s in summaries],
        }
    return report


async def run(base_url: str) -> dict[str, Any]:
    graphql = f"{base_url}/graphql"
    limits = httpx.Limits(max_connections=CONCURRENCY * 2)
    async with httpx.AsyncClient(timeout=30, limits=limits) as client:
        username = f"bench_{uuid.uuid4().hex[:10]}"
        registered = await client.post(
            graphql,
            json={
                "query": "mutation($i: RegisterInput!) { register(input: $i) { accessToken user { id } } }",  # noqa: E501
                "variables": {
                    "i": {
                        "email": f"{username}@example.com",
                        "username": username,
                        "password": PASSWORD,
                    }
                },
            },
        )
        payload = registered.json()["data"]["register"]
        token = payload["accessToken"]
        auth = {"authorization": f"Bearer {token}"}
        # Many users, so the per-user query budget (50/s) is not what gets measured.
        others = [await _register(client, graphql) for _ in range(USERS - 1)]
        auths = [auth, *({"authorization": f"Bearer {t}"} for _, t in others)]
        me_body = {"query": ME}
        sample = (await client.post(graphql, json=me_body, headers=auth)).content
        deploy_bare(sample)
        bare_url = f"{base_url}{BARE_ROUTE}"
        await wait_ready(client, bare_url)

        connector = aiohttp.TCPConnector(limit=CONCURRENCY * 2)
        async with aiohttp.ClientSession(connector=connector) as session:
            bare_max = await saturation(session, bare_url, me_body, [{}])
            nova_max = await saturation(session, graphql, me_body, auths)
            half = max(1.0, bare_max["run"]["achieved_per_s"] / 2)
            paced = await paced_rounds(
                session,
                {"bare": (bare_url, me_body, [{}]), "nova": (graphql, me_body, auths)},
                half,
            )
            bare_paced, nova_paced = paced["bare"], paced["nova"]
            # Where the bare route's half is beyond Nova's saturation, the latency there is
            # a queue's: also Nova at half its own saturation rate, for what a user sees
            # below saturation.
            own_half = max(1.0, nova_max["run"]["achieved_per_s"] / 2)
            nova_own_half = (
                await paced_rounds(session, {"nova": (graphql, me_body, auths)}, own_half)
            )["nova"]

        # Logins: several accounts in parallel, each within its per-account login burst
        # (that budget exists to slow password guessing, and would otherwise be measured).
        accounts = [username] + [name for name, _ in others[: LOGIN_ACCOUNTS - 1]]

        async def logins_of(name: str) -> None:
            for _ in range(LOGINS // LOGIN_ACCOUNTS):
                reply = await client.post(
                    graphql,
                    json={
                        "query": "mutation($i: LoginInput!) { login(input: $i) { accessToken } }",
                        "variables": {"i": {"login": name, "password": PASSWORD}},
                    },
                )
                if reply.status_code != 200 or "errors" in reply.json():
                    raise RuntimeError(f"login failed: {reply.status_code} {reply.text[:200]}")

        login_started = time.perf_counter()
        await asyncio.gather(*(logins_of(name) for name in accounts))
        login_s = time.perf_counter() - login_started

    return {
        "concurrency": CONCURRENCY,
        "query": ME,
        "bare_serve": {"saturation": bare_max, "paced": bare_paced},
        "nova_me": {
            "saturation": nova_max,
            "paced": nova_paced,
            "paced_at_half_own_saturation": {
                "offered_rate_per_s": round(own_half, 1),
                **nova_own_half,
            },
        },
        "offered_rate_per_s": round(half, 1),
        "logins": {
            "count": LOGINS,
            "accounts_in_parallel": LOGIN_ACCOUNTS,
            "per_s": round(LOGINS / login_s, 2),
        },
        "ratios": {
            "throughput": ratio(
                nova_max["run"]["achieved_per_s"], bare_max["run"]["achieved_per_s"]
            ),
            "p50_paced": ratio(nova_paced["latency_ms"]["p50"], bare_paced["latency_ms"]["p50"]),
            "p99_paced": ratio(nova_paced["latency_ms"]["p99"], bare_paced["latency_ms"]["p99"]),
        },
        "goals": [
            Goal(
                "`me` through the gateway, throughput",
                nova_max["run"]["achieved_per_s"],
                bare_max["run"]["achieved_per_s"],
                "req/s",
                "bare Serve route behind the same HAProxy",
                at_least=0.5,
            ).to_dict(),
            Goal(
                "`me` through the gateway p99, at half the bare route's rate",
                nova_paced["latency_ms"]["p99"],
                bare_paced["latency_ms"]["p99"],
                "ms",
                "bare Serve route, same rate, p99",
            ).to_dict(),
        ],
        "targets": {"throughput_ratio_min": 0.5, "p99_ms_at_half_rate": 30.0},
        "met": {
            "throughput_ratio_min": (
                nova_max["run"]["achieved_per_s"] >= 0.5 * bare_max["run"]["achieved_per_s"]
            ),
            "p99_ms_at_half_rate": (nova_paced["latency_ms"]["p99"] or 1e9) < 30.0,
        },
    }


def main(argv: list[str] | None = None) -> int:
    argparse.ArgumentParser(description=__doc__).parse_args(argv)
    return run_on_ray(SCENARIO, run, cleanup=delete_bare)


if __name__ == "__main__":
    sys.exit(main())
