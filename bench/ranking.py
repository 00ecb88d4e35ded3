"""Ranking benchmark: features, scoring and the ranked feed, beside naive baselines.

    cd /work/main && .venv/bin/python -m bench.ranking

Needs the dev stack started with `bench/bench.env` (see docs/benchmarks.md). In one run:

* Feature lookup for (viewer, 500 candidates): through the FeatureStore deployment (a Serve
  call) with each candidate's author, as the ranked feed asks, and the same lookup
  (`FeatureLookup`) from this process; also through the deployment with post ids alone.
  Baseline: the same values read with one Redis command per value, awaited one after
  another (what a per-candidate loop does). Floor: a bare Serve deployment
  (`bench-ranking-bare`, deleted at the end) answering the same call with a ready matrix of
  the same shape, no Redis: what the Serve call alone costs. The FeatureStore and the floor
  are timed in alternating rounds, so a drift of the machine's speed falls on both.
* Scoring 500 candidates: through the Ranker deployment (multiplexed version) and the same
  numpy model in this process; baseline: per-candidate Python scoring (a loop of dot
  products and `math.exp`). Floor: the bare deployment answering with a ready vector of
  scores, timed in rounds alternating with the Ranker.
* `feed(mode: RANKED, first: 20)` end to end through the gateway, one request at a time
  (low load), for readers with about 400 candidates; beside `feed(first: 20)` (LATEST).

Users, follows and posts are inserted with SQL and their online features written straight
to Redis (the feature consumer's layout). The bench routes the `NOVA_RANKING_MODEL` model
name to its own version for the run and restores the previous route at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import math
import random
import struct
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import numpy as np

from bench.goals import Goal
from bench.harness import graphql, quantile_ratios, ratio, run_on_ray, summarize
from bench.seed import follow_all, insert_users, issue_tokens

SCENARIO = "ranking"
AUTHORS = 60
POSTS_PER_AUTHOR = 10
READERS = 10
CANDIDATES = 500
CALLS = 300
BASELINE_CALLS = 20
FEED_READS = 200
FLOOR_APP = "bench-ranking-bare"
FLOOR_ROUNDS = 3
FEED = "query($mode: FeedMode) { feed(first: 20, mode: $mode) { edges { score node { id } } } }"
TARGETS = {"features_p99_ms": 5.0, "scoring_p99_ms": 10.0, "ranked_feed_p99_ms": 50.0}


async def seed(db: Any, redis: Any, settings: Any) -> dict[str, Any]:
    """Authors with recent posts, readers following all of them, and their features."""
    from ranking import features as f

    authors = await insert_users(db, AUTHORS)
    readers = await insert_users(db, READERS)
    await follow_all(db, readers, authors)
    now = datetime.now(UTC)
    rng = random.Random(7)
    posts = [
        (uuid.uuid4(), author, now - timedelta(minutes=rng.uniform(1, 600)))
        for author in authors
        for _ in range(POSTS_PER_AUTHOR)
    ]
    async with db.transaction() as conn:
        await conn.execute(
            """
            INSERT INTO posts (id, author_id, text, search, created_at)
            SELECT p, a, t, ''::tsvector, c
            FROM unnest($1::uuid[], $2::uuid[], $3::text[], $4::timestamptz[]) AS x(p, a, t, c)
            """,
            [p for p, _, _ in posts],
            [a for _, a, _ in posts],
            ["ranked bench post " * rng.randint(1, 8) for _ in posts],
            [t for _, _, t in posts],
        )
    at = now.timestamp()
    async with redis.pipeline(transaction=False) as pipe:
        for post, author, created in posts:
            key = f.POST + str(post)
            pipe.setrange(
                key, 0, f.post_identity(author, created.timestamp(), rng.randint(10, 300))
            )
            for counter, rate in (("likes", 0.2), ("comments", 1.0)):
                pair = struct.pack("<dd", rng.expovariate(rate), at)
                pipe.setrange(key, f.record_offset(counter), pair)
            pipe.expire(key, 86_400)
        for author in authors:
            pipe.set(f.AUTHOR_POSTS + str(author), POSTS_PER_AUTHOR)
            pipe.set(f.AUTHOR_ENGAGEMENTS + str(author), rng.randint(0, 50))
        for reader in readers:
            liked = rng.sample(authors, 20)
            pipe.hset(
                f.AFFINITY + str(reader),
                mapping={str(a): repr(rng.uniform(0, 5)) for a in liked}
                | {f"{a}@": repr(at) for a in liked},
            )
            pipe.sadd(f.FOLLOWS + str(reader), *[str(a) for a in authors])
            for author in authors:
                pipe.sadd(f.FOLLOWERS + str(author), str(reader))
        await pipe.execute()
    tokens = await issue_tokens(db, settings, readers)
    return {
        "readers": readers,
        "tokens": tokens,
        "posts": [str(p) for p, _, _ in posts],
        "authors": [str(a) for _, a, _ in posts],
    }


async def timed(calls: int, action: Any) -> list[float]:
    latencies = []
    for _ in range(calls):
        started = time.perf_counter()
        await action()
        latencies.append((time.perf_counter() - started) * 1000)
    return latencies


def deploy_feature_floor(rows: int, columns: int) -> Any:
    """A bare Serve deployment answering the FeatureStore's call with a ready float32 matrix
    of the same shape, and the Ranker's with a ready vector of scores: the same request and
    reply through Serve, with no Redis, no lookup and no model. Returns its handle."""
    from ray import serve

    @serve.deployment(
        name="BenchFeatureFloor", ray_actor_options={"num_cpus": 0}, max_ongoing_requests=1000
    )
    class FeatureFloor:
        def __init__(self, rows: int, columns: int) -> None:
            self._matrix = np.random.default_rng(2).random((rows, columns), dtype=np.float32)

            self._scores = self._matrix[:, 0].copy()

        async def features(
            self, viewer_id: str, post_ids: list[str], author_ids: list[str] | None = None
        ) -> np.ndarray:
            return self._matrix.copy()

        async def score(self, matrix: np.ndarray) -> np.ndarray:
            return self._scores.copy()

    return serve.run(
        FeatureFloor.bind(rows, columns),  # type: ignore[attr-defined] # added by @serve.deployment
        name=FLOOR_APP,
        route_prefix=None,
    )


def delete_feature_floor() -> None:
    from ray import serve

    with contextlib.suppress(Exception):
        serve.delete(FLOOR_APP)


async def alternating(calls: int, first: Any, second: Any) -> tuple[list[float], list[float]]:
    """`calls` timed calls of each, in FLOOR_ROUNDS rounds alternating which goes first."""
    a: list[float] = []
    b: list[float] = []
    per_round = max(1, calls // FLOOR_ROUNDS)
    for round_ in range(FLOOR_ROUNDS):
        if round_ % 2 == 0:
            a += await timed(per_round, first)
            b += await timed(per_round, second)
        else:
            b += await timed(per_round, second)
            a += await timed(per_round, first)
    return a, b


async def naive_features(redis: Any, viewer: str, posts: list[str]) -> list[list[float]]:
    """One awaited Redis command per value, candidate after candidate."""
    from ranking import features as f

    rows = []
    now = time.time()
    for post in posts:
        record = (await redis.get(f.POST + post) or b"").ljust(f.RECORD_SIZE, b"\0")
        values = dict(zip(f.RECORD_FIELDS, struct.unpack_from("<10d", record, 16), strict=True))
        known = record[:16] != bytes(16)
        author = str(uuid.UUID(bytes=record[:16])) if known else ""
        posts_written = await redis.get(f.AUTHOR_POSTS + author) if author else None
        engagements = await redis.get(f.AUTHOR_ENGAGEMENTS + author) if author else None
        affinity = await redis.hget(f.AFFINITY + viewer, author) if author else None
        follows = await redis.sismember(f.FOLLOWS + viewer, author) if author else 0
        mutual = await redis.sismember(f.FOLLOWERS + viewer, author) if author else 0
        rows.append(
            [
                (now - values["created"]) / 3600 if known else 72.0,
                values["length"],
                values["likes"],
                values["comments"],
                values["shares"],
                values["clicks"],
                float(engagements or 0) / max(1.0, float(posts_written or 1)),
                float(affinity or 0),
                float(follows),
                float(mutual and follows),
            ]
        )
    return rows


def python_scores(weights: list[float], bias: float, rows: list[list[float]]) -> list[float]:
    """Per-candidate Python scoring: the baseline for numpy's batch."""
    scores = []
    for row in rows:
        z = bias
        for w, x in zip(weights, row, strict=True):
            z += w * x
        scores.append(1.0 / (1.0 + math.exp(-z)))
    return scores


async def feed_latency(base_url: str, tokens: list[str], mode: str) -> dict[str, Any]:
    latencies: list[float] = []
    async with httpx.AsyncClient(timeout=30) as http:

        async def one(token: str) -> None:
            started = time.perf_counter()
            edges = (await graphql(http, base_url, token, FEED, {"mode": mode}))["feed"]["edges"]
            if len(edges) != 20 or (mode == "RANKED" and edges[0]["score"] is None):
                raise RuntimeError(f"{mode}: unexpected page {str(edges)[:200]}")
            latencies.append((time.perf_counter() - started) * 1000)

        for token in tokens:  # warm: timelines activate, models load
            await one(token)
        latencies.clear()
        for n in range(FEED_READS):
            await one(tokens[n % len(tokens)])
    return {"mode": mode, "reads": FEED_READS, "latency_ms": summarize(latencies)}


async def run(base_url: str) -> dict[str, Any]:
    from ray import serve

    from deployments.app import RANKING_APP
    from deployments.settings import Settings
    from ranking.features import FeatureLookup
    from ranking.models import logistic_regression
    from ranking.registry import get_route, register, route
    from ranking.schema import NAMES
    from storage.db import Database
    from storage.redis_client import make_redis

    settings = Settings.from_env()
    db = await Database.connect(settings, application_name="bench-ranking")
    redis = make_redis(settings)
    store = Path(settings.model_store)
    name = settings.ranking_model
    previous = await get_route(db, name)
    try:
        data = await seed(db, redis, settings)
        viewer = str(data["readers"][0])
        candidates = data["posts"][:CANDIDATES]
        authors = data["authors"][:CANDIDATES]
        rng = np.random.default_rng(1)
        weights = rng.normal(scale=0.3, size=len(NAMES)).astype(np.float32)
        model = logistic_regression(weights, -0.5, NAMES)
        version = f"bench-{uuid.uuid4().hex[:8]}"
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "bench.npz"
            path.write_bytes(model.to_bytes())
            await register(db, store, path, name=name, version=version, created_by="bench")
        await route(db, name, {version: 100.0}, by="bench", store=store)

        feature_store = serve.get_deployment_handle("FeatureStore", app_name=RANKING_APP)
        ranker = serve.get_deployment_handle("Ranker", app_name=RANKING_APP).options(
            multiplexed_model_id=f"{name}:{version}"
        )
        lookup = FeatureLookup(redis, half_life_s=settings.feature_half_life_s)
        matrix = np.asarray(await feature_store.features.remote(viewer, candidates, authors))
        assert matrix.shape == (CANDIDATES, len(NAMES))
        await ranker.score.remote(matrix)  # the replica loads the version

        floor = deploy_feature_floor(CANDIDATES, len(NAMES))
        await floor.features.remote(viewer, candidates, authors)
        # As the ranked feed asks: each candidate with its author (one Redis round trip).
        via_serve, via_floor = await alternating(
            CALLS,
            lambda: feature_store.features.remote(viewer, candidates, authors),
            lambda: floor.features.remote(viewer, candidates, authors),
        )
        in_process = await timed(CALLS, lambda: lookup.matrix(viewer, candidates, authors=authors))
        # Post ids alone: the records are read first to learn the authors (two round trips).
        posts_only = await timed(CALLS, lambda: feature_store.features.remote(viewer, candidates))
        naive = await timed(BASELINE_CALLS, lambda: naive_features(redis, viewer, candidates))
        scoring_serve, scoring_floor = await alternating(
            CALLS, lambda: ranker.score.remote(matrix), lambda: floor.score.remote(matrix)
        )

        async def numpy_scores() -> None:
            model.score(matrix)

        rows = matrix.tolist()
        w_list, bias = weights.tolist(), -0.5

        async def python_loop() -> None:
            python_scores(w_list, bias, rows)

        scoring_numpy = await timed(CALLS, numpy_scores)
        scoring_python = await timed(BASELINE_CALLS * 5, python_loop)
        await asyncio.sleep(1.0)  # the route reaches every gateway replica
        ranked = await feed_latency(base_url, data["tokens"], "RANKED")
        latest = await feed_latency(base_url, data["tokens"], "LATEST")
    finally:
        if previous is not None:
            await route(db, name, previous.arms, by="bench (restore)", store=store)
        else:
            await db.fetchval("DELETE FROM model_routes WHERE name = $1 RETURNING 1", name)
        await redis.aclose()
        await db.close()

    features: dict[str, Any] = {
        "candidates": CANDIDATES,
        "via_feature_store_deployment": summarize(via_serve),
        "lookup_in_process": summarize(in_process),
        "via_feature_store_deployment_post_ids_only": summarize(posts_only),
        "floor_bare_serve_deployment_same_reply": summarize(via_floor),
        "baseline_per_value_redis_commands": summarize(naive),
    }
    scoring: dict[str, Any] = {
        "candidates": CANDIDATES,
        "via_ranker_deployment": summarize(scoring_serve),
        "floor_bare_serve_deployment_same_reply": summarize(scoring_floor),
        "numpy_in_process": summarize(scoring_numpy),
        "baseline_per_candidate_python": summarize(scoring_python),
    }
    p99: dict[str, Any] = {
        "features": features["via_feature_store_deployment"]["p99"],
        "scoring": scoring["via_ranker_deployment"]["p99"],
        "feed": ranked["latency_ms"]["p99"],
    }
    return {
        "features": features,
        "scoring": scoring,
        "ranked_feed_via_gateway": ranked,
        "latest_feed_via_gateway": latest,
        "ratios": {
            "naive_features_p50_over_lookup_p50": ratio(
                features["baseline_per_value_redis_commands"]["p50"],
                features["lookup_in_process"]["p50"],
            ),
            **quantile_ratios(
                features["via_feature_store_deployment"],
                features["floor_bare_serve_deployment_same_reply"],
                "feature_store_{0}_over_bare_serve_floor_{0}",
            ),
            "naive_features_p50_over_deployment_p50": ratio(
                features["baseline_per_value_redis_commands"]["p50"],
                features["via_feature_store_deployment"]["p50"],
            ),
            "python_scoring_p50_over_numpy_p50": ratio(
                scoring["baseline_per_candidate_python"]["p50"], scoring["numpy_in_process"]["p50"]
            ),
            "ranked_feed_p50_over_latest_p50": ratio(
                ranked["latency_ms"]["p50"], latest["latency_ms"]["p50"]
            ),
        },
        "goals": [g.to_dict() for g in ranking_goals(features, scoring, ranked, latest)],
        "targets": TARGETS,
        "met": {
            "features_p99_ms": (p99["features"] or 1e9) < TARGETS["features_p99_ms"],
            "scoring_p99_ms": (p99["scoring"] or 1e9) < TARGETS["scoring_p99_ms"],
            "ranked_feed_p99_ms": (p99["feed"] or 1e9) < TARGETS["ranked_feed_p99_ms"],
        },
    }


def ranking_goals(
    features: dict[str, Any],
    scoring: dict[str, Any],
    ranked: dict[str, Any],
    latest: dict[str, Any],
) -> list[Goal]:
    """The ranked feed over the latest one through the gateway (p50), and the FeatureStore
    and Ranker calls over a bare Serve deployment giving the same reply (p99)."""
    floor = "floor_bare_serve_deployment_same_reply"
    return [
        Goal(
            "ranked feed p50, through the gateway",
            ranked["latency_ms"]["p50"],
            latest["latency_ms"]["p50"],
            "ms",
            "LATEST feed through the gateway, p50",
            at_most=2.0,
        ),
        Goal(
            f"FeatureStore call p99, {CANDIDATES} candidates",
            features["via_feature_store_deployment"]["p99"],
            features[floor]["p99"],
            "ms",
            "bare Serve deployment, same reply, p99",
            at_most=1.3,
        ),
        Goal(
            f"Ranker call p99, {CANDIDATES} candidates",
            scoring["via_ranker_deployment"]["p99"],
            scoring[floor]["p99"],
            "ms",
            "bare Serve deployment, same reply, p99",
            at_most=1.3,
        ),
    ]


def main(argv: list[str] | None = None) -> int:
    argparse.ArgumentParser(description=__doc__).parse_args(argv)
    return run_on_ray(SCENARIO, run, cleanup=delete_feature_floor)


if __name__ == "__main__":
    sys.exit(main())
