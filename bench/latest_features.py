"""What keeping features for LATEST pages costs: `feed(first: 20)` through the gateway with
every page's features looked up and kept (`NOVA_RANKING_LATEST_FEATURE_SAMPLE=1`, or the
share `--sample` gives) beside the same reads with it off (0), in one run.

    cd /work/main && .venv/bin/python -m bench.latest_features [--sample 0.25]

Needs the dev stack started with `bench/bench.env` (see docs/benchmarks.md). The readers,
authors and posts are bench.ranking's. The gateway application is redeployed with the
setting off, then on again, and each setting is measured in `ROUNDS` alternating rounds
(on, off, off, on, ...) after every reader's timeline is warm, so neither a drift of the
machine's speed nor the first reads fall on one setting. Each round:
`CLIENTS` readers reading pages back to back for `ROUND_S` seconds. Reported: pages per
second and latency per setting, the ratio on/off, and how many pages had their features
kept (read back from Redis).
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from typing import Any

import httpx

from bench.goals import Goal
from bench.harness import graphql, ratio, run_on_ray, summarize
from bench.ranking import seed

SCENARIO = "latest_features"
CLIENTS = 8
ROUND_S = 12.0
ROUNDS = 2
FEED = "query { feed(first: 20) { edges { node { id } } } }"


async def read_for(base_url: str, tokens: list[str], seconds: float) -> tuple[int, list[float]]:
    """`CLIENTS` readers reading LATEST pages back to back; pages read and their latencies."""
    latencies: list[float] = []
    deadline = time.monotonic() + seconds
    async with httpx.AsyncClient(timeout=30) as http:

        async def reader(index: int) -> None:
            n = index
            while time.monotonic() < deadline:
                started = time.perf_counter()
                page = await graphql(http, base_url, tokens[n % len(tokens)], FEED, {})
                if len(page["feed"]["edges"]) != 20:
                    raise RuntimeError(f"unexpected page {str(page)[:200]}")
                latencies.append((time.perf_counter() - started) * 1000)
                n += CLIENTS

        await asyncio.gather(*(reader(i) for i in range(CLIENTS)))
    return len(latencies), latencies


async def warm(base_url: str, tokens: list[str]) -> None:
    """Every reader's timeline active before anything is timed (the first read of a cold
    timeline loads it from PostgreSQL)."""
    async with httpx.AsyncClient(timeout=30) as http:
        for token in tokens:
            await graphql(http, base_url, token, FEED, {})


def redeploy(sample: float) -> None:
    """The gateway application, with `ranking_latest_feature_sample` set to `sample`."""
    from ray import serve

    from deployments.app import APP_NAME, build_app
    from deployments.settings import Settings

    settings = Settings.from_env().replace(ranking_latest_feature_sample=sample)
    serve.run(build_app(settings), name=APP_NAME, route_prefix="/", blocking=False)


async def settled(base_url: str, token: str, sample: float) -> None:
    """Until the replicas serving run with `sample` (the old ones drain after an update)."""
    from ray import serve

    from deployments.app import APP_NAME

    for _ in range(600):
        status = serve.status().applications.get(APP_NAME)
        if status is not None and str(status.status).endswith("RUNNING"):
            break
        await asyncio.sleep(0.5)
    async with httpx.AsyncClient(timeout=30) as http:
        for _ in range(20):  # warm the new replicas
            await graphql(http, base_url, token, FEED, {})
    await asyncio.sleep(2.0)


async def served_keys(redis: Any) -> int:
    return sum([1 async for _ in redis.scan_iter(match="nova:served:*", count=1000)])


def latest_feature_goals(
    sample: float, on: dict[str, Any], off: dict[str, Any], kept: int
) -> list[Goal]:
    """LATEST pages with features kept for `sample` of them over none kept, at saturation:
    pages per second and p99."""
    kept_for = "every page" if sample == 1 else f"{sample:.0%} of pages"
    note = f"{kept} pages' features kept"
    return [
        Goal(
            f"LATEST feed at saturation, features kept for {kept_for}, throughput",
            on["pages_per_s"],
            off["pages_per_s"],
            "pages/s",
            "features not kept (sample 0)",
            note=note,
        ),
        Goal(
            f"LATEST feed at saturation, features kept for {kept_for}, p99",
            on["latency_ms"]["p99"],
            off["latency_ms"]["p99"],
            "ms",
            "features not kept (sample 0), p99",
        ),
    ]


async def run(base_url: str, sample: float = 1.0) -> dict[str, Any]:
    from deployments.settings import Settings
    from storage.db import Database
    from storage.redis_client import make_redis

    settings = Settings.from_env()
    db = await Database.connect(settings, application_name="bench-latest-features")
    redis = make_redis(settings)
    pages: dict[str, int] = {"on": 0, "off": 0}
    elapsed: dict[str, float] = {"on": 0.0, "off": 0.0}
    latencies: dict[str, list[float]] = {"on": [], "off": []}
    kept_on = 0
    try:
        data = await seed(db, redis, settings)
        tokens = data["tokens"]
        await warm(base_url, tokens)
        for round_ in range(ROUNDS):
            order = (("on", sample), ("off", 0.0))
            for label, share in order if round_ % 2 == 0 else order[::-1]:
                redeploy(share)
                await settled(base_url, tokens[0], share)
                before = await served_keys(redis)
                started = time.monotonic()
                count, timings = await read_for(base_url, tokens, ROUND_S)
                elapsed[label] += time.monotonic() - started
                await asyncio.sleep(1.0)  # lookups still running finish
                if label == "on":
                    kept_on += await served_keys(redis) - before
                pages[label] += count
                latencies[label].extend(timings)
    finally:
        redeploy(settings.ranking_latest_feature_sample)
        await redis.aclose()
        await db.close()
    per_s = {k: pages[k] / elapsed[k] if elapsed[k] else 0.0 for k in pages}
    on = {
        "pages_per_s": round(per_s["on"], 1),
        "latency_ms": summarize(latencies["on"]),
        "served_feature_keys_written": kept_on,
    }
    off = {
        "pages_per_s": round(per_s["off"], 1),
        "latency_ms": summarize(latencies["off"]),
    }
    return {
        "sample": sample,
        "clients": CLIENTS,
        "rounds_per_setting": ROUNDS,
        "round_s": ROUND_S,
        "features_kept_on": on,
        "baseline_features_not_kept": off,
        "ratios": {
            "throughput_on_over_off": ratio(per_s["on"], per_s["off"]),
            "p50_on_over_off": ratio(
                summarize(latencies["on"])["p50"], summarize(latencies["off"])["p50"]
            ),
            "p99_on_over_off": ratio(
                summarize(latencies["on"])["p99"], summarize(latencies["off"])["p99"]
            ),
        },
        "goals": [g.to_dict() for g in latest_feature_goals(sample, on, off, kept_on)],
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument(
        "--sample", type=float, default=1.0, help="the share of pages kept when on (default 1)"
    )
    args = parser.parse_args(argv)
    return run_on_ray(SCENARIO, lambda base_url: run(base_url, args.sample))


if __name__ == "__main__":
    sys.exit(main())
