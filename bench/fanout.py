"""Fan-out and feed-read benchmark, in one run.

    cd /work/main && .venv/bin/python -m bench.fanout

Needs the dev stack started with `bench/bench.env` (see docs/benchmarks.md). Two scenarios:

* Fan-out latency: authors with 1,000 and 10,000 active followers (whose timelines exist)
  each publish 50 posts, one at a time. For each post: commit → present in every
  follower's Redis timeline, checked with one pipelined ZSCORE per follower every 20 ms.
* Feed read: readers following 500 authors with 200,000 posts in total. `feed(first: 20)`
  through the gateway from the timeline (LATEST), beside the same page computed by the
  indexed SQL pull query (`mode: PULL`) through the same gateway, and that SQL query alone.
  Beside both, the floor: a bare Serve route (`bench-bare`, same proxy) answering with the
  LATEST page's reply. No feed read through Serve here can be faster than that route, so
  `pull_p50_over_floor_p50` is the most any timeline could reach against the pull. The
  three sides run in rounds that rotate their order, at 8 clients and then at one.
* The page at the actor: read straight from the shards, over their direct read channels
  (as the gateway reads), and through Ray actor calls (the fallback), one at a time.

Users, follows and posts are inserted with SQL (no Argon2, no outbox for the bulk data),
then the measured posts go through the real path: PostgreSQL + outbox → relay → Kafka →
fan-out consumer → timeline shards. Every loop is bounded in count and time.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import aiohttp
import httpx

from bench.gateway import BARE_ROUTE, delete_bare, deploy_bare, wait_ready
from bench.goals import Goal
from bench.harness import graphql, quantile_ratios, ratio, run_on_ray, summarize
from bench.seed import follow_all, insert_users, issue_tokens

SCENARIO = "fanout"
FANOUT_SIZES = (1_000, 10_000)
POSTS_PER_AUTHOR = 50
READ_AUTHORS = 500
READ_POSTS = 200_000
READERS = 20
READS = 600  # per side, over READ_ROUNDS rounds
READS_ONE_CLIENT = 300
READ_CONCURRENCY = 8
READ_ROUNDS = 3
POST_TIMEOUT_S = 30.0
FEED = "query($mode: FeedMode) { feed(first: 20, mode: $mode) { edges { node { id } } } }"


async def materialize(redis: Any, users: list[uuid.UUID]) -> None:
    """Give users an (empty) timeline in Redis, as if they had been active."""
    from actors.timeline_shard import SENTINEL, timeline_key

    async with redis.pipeline(transaction=False) as pipe:
        for user in users:
            pipe.zadd(timeline_key(user), {SENTINEL: float("-inf")})
            pipe.expire(timeline_key(user), 86_400)
        await pipe.execute()


async def fanout_latency(db: Any, redis: Any, settings: Any, followers: int) -> dict[str, Any]:
    from actors.counter_client import CounterClient
    from actors.timeline_shard import timeline_key
    from gateway.services.caches import Invalidations
    from gateway.services.posts import Posts

    author, *audience = await insert_users(db, followers + 1)
    await follow_all(db, audience, [author])
    await materialize(redis, audience)
    keys = [timeline_key(u) for u in audience]
    posts = Posts(
        db,
        CounterClient(settings.counter_shards),
        Invalidations(redis),
        cache_size=1,
        cache_ttl_s=1.0,
    )
    latencies: list[float] = []
    missing = 0
    for n in range(POSTS_PER_AUTHOR):
        started = time.perf_counter()
        post = await posts.create(author, f"fan-out bench post {n}")
        member = f"{post.id}:{author}"
        deadline = started + POST_TIMEOUT_S
        while True:
            async with redis.pipeline(transaction=False) as pipe:
                for key in keys:
                    pipe.zscore(key, member)
                scores = await pipe.execute()
            if all(score is not None for score in scores):
                latencies.append((time.perf_counter() - started) * 1000)
                break
            if time.perf_counter() > deadline:
                missing += 1
                break
            await asyncio.sleep(0.02)
    return {
        "followers": followers,
        "posts": POSTS_PER_AUTHOR,
        "timed_out": missing,
        "latency_ms": summarize(latencies),
    }


async def seed_reads(db: Any, settings: Any) -> tuple[list[uuid.UUID], list[str]]:
    """500 authors with 200,000 posts in all, and readers following all of them."""
    authors = await insert_users(db, READ_AUTHORS)
    readers = await insert_users(db, READERS)
    await follow_all(db, readers, authors)
    start = datetime.now(UTC) - timedelta(days=30)
    per_author = READ_POSTS // READ_AUTHORS
    async with db.transaction() as conn:
        await conn.execute(
            """
            INSERT INTO posts (id, author_id, text, search, created_at)
            SELECT gen_random_uuid(), a, 'seeded post', ''::tsvector,
                   $2::timestamptz + (n * interval '1 second') + (random() * interval '1 hour')
            FROM unnest($1::uuid[]) AS a, generate_series(1, $3) AS n
            """,
            authors,
            start,
            per_author,
        )
        # Every table the reads plan over, not only posts: before autovacuum gets to the
        # bulk-inserted follows and counters, the first reads ran on a stale plan (a
        # LATEST page took 52 ms at one client right after seeding, 21 ms once analysed).
        await conn.execute("ANALYZE users, follows, user_counters, posts")
    return readers, await issue_tokens(db, settings, readers)


async def closed_loop(
    calls: list[Callable[[], Awaitable[None]]], concurrency: int
) -> tuple[list[float], float]:
    """Run `calls` with `concurrency` workers; each call's latency (ms) and the wall time (s)."""
    latencies: list[float] = []
    queue = list(reversed(calls))

    async def worker() -> None:
        while queue:
            call = queue.pop()
            started = time.perf_counter()
            await call()
            latencies.append((time.perf_counter() - started) * 1000)

    started = time.perf_counter()
    await asyncio.wait_for(asyncio.gather(*(worker() for _ in range(concurrency))), 300)
    return latencies, time.perf_counter() - started


async def read_rounds(
    session: aiohttp.ClientSession,
    base_url: str,
    tokens: list[str],
    concurrency: int,
    reads: int,
) -> dict[str, dict[str, Any]]:
    """`reads` feed reads per side at `concurrency` clients: the bare floor route, LATEST
    and PULL, in READ_ROUNDS rounds that rotate which side goes first, so that a drift of
    this machine's speed falls on all three. Latencies are pooled per side.

    The load comes from aiohttp with bodies encoded once, as in `bench.gateway`: the load
    tool shares these 2 cores with the stack, and httpx's CPU per request added the same
    cost to every side (a bare route: 184 req/s under httpx, 330 under aiohttp)."""
    url = f"{base_url}/graphql"
    bodies = {
        mode: json.dumps({"query": FEED, "variables": {"mode": mode}}).encode()
        for mode in ("LATEST", "PULL")
    }
    headers = [
        {"content-type": "application/json", "authorization": f"Bearer {token}"} for token in tokens
    ]

    def feed(index: int, mode: str) -> Callable[[], Awaitable[None]]:
        async def call() -> None:
            data, header = bodies[mode], headers[index % len(headers)]
            async with session.post(url, data=data, headers=header) as reply:
                payload = await reply.read()
            if reply.status != 200:
                raise RuntimeError(f"{reply.status}: {payload[:200]!r}")
            if len(json.loads(payload)["data"]["feed"]["edges"]) != 20:
                raise RuntimeError(f"short feed page: {payload[:200]!r}")

        return call

    def floor() -> Callable[[], Awaitable[None]]:
        async def call() -> None:
            async with session.post(f"{base_url}{BARE_ROUTE}", data=bodies["LATEST"]) as reply:
                await reply.read()
            reply.raise_for_status()

        return call

    sides: dict[str, Callable[[int], Callable[[], Awaitable[None]]]] = {
        "floor": lambda n: floor(),
        "timeline": lambda n: feed(n, "LATEST"),
        "pull": lambda n: feed(n, "PULL"),
    }
    latencies: dict[str, list[float]] = {side: [] for side in sides}
    elapsed = dict.fromkeys(sides, 0.0)
    per_round = max(1, reads // READ_ROUNDS)
    order = list(sides)
    for round_ in range(READ_ROUNDS):
        first = round_ % len(order)
        for side in order[first:] + order[:first]:
            calls = [sides[side](round_ * per_round + n) for n in range(per_round)]
            took, seconds = await closed_loop(calls, concurrency)
            latencies[side] += took
            elapsed[side] += seconds
    return {
        side: {
            "concurrency": concurrency,
            "reads": len(latencies[side]),
            "per_s": round(len(latencies[side]) / elapsed[side], 1),
            "latency_ms": summarize(latencies[side]),
        }
        for side in sides
    }


async def feed_reads(base_url: str, tokens: list[str]) -> dict[str, dict[str, dict[str, Any]]]:
    """Feed reads at READ_CONCURRENCY clients and at one, beside the floor: a bare Serve
    route (same proxy) answering with the LATEST page's own reply, which no feed read
    through this gateway can beat, however it finds the page."""
    limits = httpx.Limits(max_connections=READ_CONCURRENCY * 2)
    async with httpx.AsyncClient(timeout=30, limits=limits) as http:
        for token in tokens:  # warm: timelines activate (rebuilt once from PostgreSQL)
            for mode in ("LATEST", "PULL"):
                await graphql(http, base_url, token, FEED, {"mode": mode})
        sample = await http.post(
            f"{base_url}/graphql",
            json={"query": FEED, "variables": {"mode": "LATEST"}},
            headers={"authorization": f"Bearer {tokens[0]}"},
        )
        deploy_bare(sample.content)
        await wait_ready(http, f"{base_url}{BARE_ROUTE}")
    connector = aiohttp.TCPConnector(limit=READ_CONCURRENCY * 2)
    async with aiohttp.ClientSession(connector=connector) as session:
        return {
            "loaded": await read_rounds(session, base_url, tokens, READ_CONCURRENCY, READS),
            "one_client": await read_rounds(session, base_url, tokens, 1, READS_ONE_CLIENT),
        }


def read_ratios(sides: dict[str, dict[str, Any]]) -> dict[str, float | None]:
    """Pull over timeline, and each over the floor. `pull_*_over_floor_*` is the most any
    timeline read could reach: a read through this gateway that cost nothing would still
    take the bare route's time."""
    latency = {side: sides[side]["latency_ms"] for side in ("pull", "timeline", "floor")}
    return {
        **quantile_ratios(latency["pull"], latency["timeline"], "pull_{0}_over_timeline_{0}"),
        **quantile_ratios(latency["pull"], latency["floor"], "pull_{0}_over_floor_{0}"),
        **quantile_ratios(latency["timeline"], latency["floor"], "timeline_{0}_over_floor_{0}"),
    }


async def actor_page_latency(
    settings: Any, readers: list[uuid.UUID], *, direct_reads: bool
) -> dict[str, Any]:
    """A timeline page of 20 entries read straight from the shards (no gateway), over the
    shards' direct read channels as the gateway reads, or through Ray actor calls."""
    from actors.timeline_client import TimelineClient

    client = TimelineClient(settings.timeline_shards, direct_reads=direct_reads)
    latencies: list[float] = []
    try:
        for n in range(READS):
            started = time.perf_counter()
            await client.page(readers[n % len(readers)], None, 21)
            latencies.append((time.perf_counter() - started) * 1000)
    finally:
        await client.close()
    return {"calls": READS, "latency_ms": summarize(latencies)}


async def sql_pull_alone(db: Any, readers: list[uuid.UUID]) -> dict[str, Any]:
    from storage.repositories.timelines import pull_page

    latencies: list[float] = []
    for n in range(200):
        started = time.perf_counter()
        async with db.connection() as conn:
            await pull_page(conn, readers[n % len(readers)], before=None, limit=21)
        latencies.append((time.perf_counter() - started) * 1000)
    return {"queries": 200, "latency_ms": summarize(latencies)}


def fanout_goals(fanout: list[dict[str, Any]], loaded: dict[str, dict[str, Any]]) -> list[Goal]:
    """Fan-out to the most followers over fan-out to the fewest (p99; the absolute target,
    p99 < 2 s, in the note); the timeline page over the bare route's floor, and the SQL
    pull over the timeline page (p50, at READ_CONCURRENCY clients)."""
    smallest, biggest = fanout[0], fanout[-1]
    p99 = biggest["latency_ms"]["p99"]
    within = p99 is not None and p99 < 2_000
    timed_out = biggest["timed_out"]
    latency = {side: loaded[side]["latency_ms"] for side in ("floor", "timeline", "pull")}
    return [
        Goal(
            f"fan-out to {biggest['followers']:,} followers p99",
            p99,
            smallest["latency_ms"]["p99"],
            "ms",
            f"fan-out to {smallest['followers']:,} followers, p99",
            also=within and timed_out == 0,
            note=f"p99 < 2 s {'met' if within else 'missed'}, {timed_out} timed out",
        ),
        Goal(
            f"timeline feed page p50, {READ_CONCURRENCY} clients",
            latency["timeline"]["p50"],
            latency["floor"]["p50"],
            "ms",
            "bare Serve route, same reply, p50",
        ),
        Goal(
            f"SQL pull feed page p50, {READ_CONCURRENCY} clients",
            latency["pull"]["p50"],
            latency["timeline"]["p50"],
            "ms",
            "timeline (LATEST) feed page, p50",
            at_least=3.0,
            note="the timeline's lead over the pull",
        ),
    ]


async def run(base_url: str) -> dict[str, Any]:
    from deployments.settings import Settings
    from storage.db import Database
    from storage.redis_client import make_redis

    settings = Settings.from_env()
    db = await Database.connect(settings, application_name="bench-fanout")
    redis = make_redis(settings)
    try:
        fanout = [await fanout_latency(db, redis, settings, size) for size in FANOUT_SIZES]
        readers, tokens = await seed_reads(db, settings)
        reads = await feed_reads(base_url, tokens)
        sql_alone = await sql_pull_alone(db, readers)
        at_actor = await actor_page_latency(settings, readers, direct_reads=True)
        through_ray = await actor_page_latency(settings, readers, direct_reads=False)
    finally:
        await redis.aclose()
        await db.close()
    biggest = fanout[-1]["latency_ms"]["p99"]
    loaded, single = reads["loaded"], reads["one_client"]
    loaded_ratios = read_ratios(loaded)
    return {
        "fanout": fanout,
        "feed_read_timeline_via_gateway": loaded["timeline"],
        "feed_read_pull_via_gateway": loaded["pull"],
        "floor_bare_serve_route_same_reply": loaded["floor"],
        "one_client": single,
        "pull_sql_alone": sql_alone,
        "timeline_page_at_actor": at_actor,
        "timeline_page_at_actor_by_ray_call": through_ray,
        "ratios": {
            **loaded_ratios,
            "timeline_reads_per_s_over_pull": ratio(
                loaded["timeline"]["per_s"], loaded["pull"]["per_s"]
            ),
            "one_client": read_ratios(single),
        },
        "goals": [g.to_dict() for g in fanout_goals(fanout, loaded)],
        "targets": {
            "fanout_10k_p99_ms": 2_000,
            "actor_page_p99_ms": 20,
            "timeline_vs_pull_min": 3.0,
        },
        "met": {
            "fanout_10k_p99_ms": biggest is not None and biggest < 2_000,
            "actor_page_p99_ms": (at_actor["latency_ms"]["p99"] or 1e9) < 20,
            "timeline_vs_pull_min": (loaded_ratios["pull_p50_over_timeline_p50"] or 0) >= 3.0,
        },
    }


def main(argv: list[str] | None = None) -> int:
    argparse.ArgumentParser(description=__doc__).parse_args(argv)
    return run_on_ray(SCENARIO, run, cleanup=delete_bare)


if __name__ == "__main__":
    sys.exit(main())
