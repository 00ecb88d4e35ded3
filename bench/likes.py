"""Likes benchmark: one hot post liked by many users, three ways, in one run.

    cd /work/main && .venv/bin/python -m bench.likes

Needs the dev stack started with per-IP budgets raised (every request here comes from
127.0.0.1; see `bench/bench.env` and docs/benchmarks.md). Each path likes its own fresh post, once
per user, at the same concurrency:

* Baseline: one PostgreSQL transaction per like, `INSERT INTO likes` then
  `UPDATE post_counters SET likes = likes + 1` — the row-per-update design that serializes
  on the counter row's lock.
* Shard: `CounterClient.like` straight to the post's CounterShard actor (group commit of
  likes rows, the counter row and outbox events).
* Gateway: the `likePost` mutation over HTTP through Serve (auth, rate limits, visibility
  checks, then the shard); beside it, the same clients reading `me` through the same
  gateway, the request that touches no shard.

Afterwards each post's count must equal its rows exactly. Bounded in count and time.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import aiohttp
import asyncpg

from bench.goals import Goal
from bench.harness import ratio, run_on_ray, run_paced, summarize

SCENARIO = "likes"
CONCURRENCY = 64
LIKES = 2_000
DEADLINE_S = 180.0
LIKE = "mutation($id: ID!) { likePost(postId: $id) { id likeCount } }"
ME = "query { me { id username } }"


async def make_users(db: Any, settings: Any, count: int) -> list[tuple[uuid.UUID, str]]:
    """Users inserted directly (no Argon2), with sessions and real signed access tokens."""
    from gateway.auth.tokens import KeyRing
    from storage.secrets import Sealer

    ring = KeyRing(db, Sealer.from_settings(settings), settings)
    await ring.load()
    ids = [uuid.uuid4() for _ in range(count)]
    sessions = [uuid.uuid4() for _ in range(count)]
    expires = datetime.now(UTC) + timedelta(hours=1)
    async with db.transaction() as conn:
        await conn.executemany(
            "INSERT INTO users (id, username, email, password_hash)"
            " VALUES ($1, $2, $3, 'bench-no-login')",
            [(i, f"bl_{i.hex[:20]}", f"bl_{i.hex[:20]}@example.com") for i in ids],
        )
        await conn.executemany(
            "INSERT INTO auth_sessions (id, user_id, expires_at) VALUES ($1, $2, $3)",
            [(s, i, expires) for s, i in zip(sessions, ids, strict=True)],
        )
    return [(i, ring.issue(i, ["user"], s).token) for i, s in zip(ids, sessions, strict=True)]


async def make_post(db: Any, author: uuid.UUID) -> uuid.UUID:
    post_id = uuid.uuid4()
    async with db.transaction() as conn:
        await conn.execute(
            "INSERT INTO posts (id, author_id, text, search)"
            " VALUES ($1, $2, 'hot post', to_tsvector('english', 'hot post'))",
            post_id,
            author,
        )
    return post_id


async def timed(like_one: Any, users: list[tuple[uuid.UUID, str]]) -> dict[str, Any]:
    latencies: list[float] = []

    async def one(index: int) -> None:
        started = time.perf_counter()
        await like_one(*users[index])
        latencies.append((time.perf_counter() - started) * 1000)

    result = await run_paced(
        one, count=len(users), rate_per_s=None, concurrency=CONCURRENCY, deadline_s=DEADLINE_S
    )
    return {"run": result.to_dict(), "latency_ms": summarize(latencies)}


async def exact(db: Any, post_id: uuid.UUID) -> dict[str, int]:
    async with db.connection() as conn:
        rows = await conn.fetchval("SELECT count(*) FROM likes WHERE post_id = $1", post_id)
        counter = await conn.fetchval(
            "SELECT coalesce((SELECT likes FROM post_counters WHERE post_id = $1), 0)", post_id
        )
    return {"rows": rows, "counter": counter}


async def run(base_url: str) -> dict[str, Any]:
    from actors.counter_client import CounterClient
    from deployments.settings import Settings
    from storage.db import Database

    settings = Settings.from_env()
    db = await Database.connect(settings, application_name="bench-likes")
    try:
        author, *_ = await make_users(db, settings, 1)
        users = await make_users(db, settings, LIKES)
        posts = {name: await make_post(db, author[0]) for name in ("baseline", "shard", "gateway")}

        # Baseline: a like per transaction, the counter row updated in place.
        pool = await asyncpg.create_pool(
            settings.database_url, min_size=CONCURRENCY, max_size=CONCURRENCY
        )
        await pool.execute(
            "INSERT INTO post_counters (post_id) VALUES ($1) ON CONFLICT DO NOTHING",
            posts["baseline"],
        )

        async def baseline_like(user_id: uuid.UUID, _: str) -> None:
            async with pool.acquire() as conn, conn.transaction():
                await conn.execute(
                    "INSERT INTO likes (post_id, user_id) VALUES ($1, $2)",
                    posts["baseline"],
                    user_id,
                )
                await conn.execute(
                    "UPDATE post_counters SET likes = likes + 1 WHERE post_id = $1",
                    posts["baseline"],
                )

        baseline = await timed(baseline_like, users)
        await pool.close()

        client = CounterClient(settings.counter_shards, timeout_s=10)
        # Warm up: the shard's handle, its pool and the key's activation are not per-like.
        await client.like(posts["shard"], author[0], True)
        await client.like(posts["shard"], author[0], False)
        await client.like(posts["gateway"], author[0], True)
        await client.like(posts["gateway"], author[0], False)

        async def shard_like(user_id: uuid.UUID, _: str) -> None:
            await client.like(posts["shard"], user_id, True)

        shard = await timed(shard_like, users)
        shown_by_shard = (await client.counts("post", [posts["shard"]]))[posts["shard"]]

        # The load comes from aiohttp with the body encoded once, as in `bench.gateway`:
        # on these 2 cores, under httpx this phase measured 51-60 likes/s (p50 about 1 s);
        # under aiohttp, same code, 163/s (p50 369 ms).
        body = json.dumps({"query": LIKE, "variables": {"id": str(posts["gateway"])}}).encode()
        connector = aiohttp.TCPConnector(limit=CONCURRENCY * 2)
        async with aiohttp.ClientSession(connector=connector) as http:

            def poster(body: bytes) -> Any:
                """One operation with a user's token, its body encoded once."""

                async def post(_: uuid.UUID, token: str) -> None:
                    headers = {
                        "content-type": "application/json",
                        "authorization": f"Bearer {token}",
                    }
                    async with http.post(
                        f"{base_url}/graphql", data=body, headers=headers
                    ) as reply:
                        payload = await reply.read()
                    if reply.status != 200 or b'"errors"' in payload:
                        raise RuntimeError(f"{reply.status}: {payload[:200]!r}")

                return post

            gateway = await timed(poster(body), users)
            # The same clients reading `me`: a request through the same gateway replica
            # that touches no shard, which a like's cost is measured against.
            me = await timed(poster(json.dumps({"query": ME}).encode()), users)
        shown_by_gateway = (await client.counts("post", [posts["gateway"]]))[posts["gateway"]]

        counts = {name: await exact(db, post) for name, post in posts.items()}
        counts["shard"]["in_memory"] = shown_by_shard.counts["likes"]
        counts["gateway"]["in_memory"] = shown_by_gateway.counts["likes"]
    finally:
        await db.close()

    def rate(result: dict[str, Any]) -> float:
        return float(result["run"]["achieved_per_s"])

    exact_everywhere = all(
        len(set(c.values())) == 1 and c["rows"] == LIKES for c in counts.values()
    )
    return {
        "likes_per_path": LIKES,
        "concurrency": CONCURRENCY,
        "baseline_sql_update_per_like": baseline,
        "shard_direct": shard,
        "gateway_likePost": gateway,
        "gateway_me": me,
        "final_counts": counts,
        "ratios": {
            "shard_throughput_vs_baseline": ratio(rate(shard), rate(baseline)),
            "gateway_throughput_vs_baseline": ratio(rate(gateway), rate(baseline)),
            "gateway_likes_over_gateway_me": ratio(rate(gateway), rate(me)),
            "shard_p99_vs_baseline": ratio(
                shard["latency_ms"]["p99"], baseline["latency_ms"]["p99"]
            ),
        },
        "goals": [
            Goal(
                "likePost through the gateway, throughput",
                rate(gateway),
                rate(me),
                "/s",
                "`me` through the gateway, same clients",
                at_least=0.6,
                also=exact_everywhere,
            ).to_dict(),
            Goal(
                "likes straight to the counter shard, throughput",
                rate(shard),
                rate(baseline),
                "/s",
                "a PostgreSQL transaction per like",
                at_least=5.0,
                also=exact_everywhere,
            ).to_dict(),
        ],
        "targets": {"shard_throughput_vs_baseline_min": 5.0, "exact_counts": True},
        "met": {
            "shard_throughput_vs_baseline_min": rate(shard) >= 5 * rate(baseline),
            "exact_counts": exact_everywhere,
        },
    }


def main(argv: list[str] | None = None) -> int:
    argparse.ArgumentParser(description=__doc__).parse_args(argv)
    return run_on_ray(SCENARIO, run)


if __name__ == "__main__":
    sys.exit(main())
