"""Takedown benchmark: a moderator's `moderate(REMOVE)` on a post → the post gone from
every follower's timeline, beside the fan-out of a new post to the same followers.

    cd /work/main && .venv/bin/python -m bench.takedown [--posts 10 --entries 100]

Needs the dev stack started with `bench/bench.env` (see docs/benchmarks.md).

An author with 10,000 followers (bulk-inserted with SQL, counters consistent, every
follower active with a timeline in Redis that already holds `--entries` older posts, of
a second author they all follow) and a moderator (role `moderator`, a real
session and token). Each round, through the gateway:

* fan-out: `createPost` by the author → the post in every follower's timeline;
* takedown: `moderate(REMOVE)` on that post → the post in no follower's timeline.

Both travel the same road after their commit (outbox → relay → Kafka → the fan-out
consumer → the timeline shards), as `content.post.created` and `content.post.deleted`.

"In a follower's timeline page" is checked where a feed read finds it. A timeline shard
answers a page from memory for followers it holds, and loads the others from their Redis
set first. So every follower's Redis set is checked (a ZSCORE per follower still
pending, in server-side scripts over batches of 2,000 keys, every 20 ms), and 200 random
followers are made active in the shards and have their first page of 20 read over the
shards' direct read channels, as the gateway reads them. A side is done when both checks
pass. The author has exactly `NOVA_FANOUT_MAX_FOLLOWERS` (10,000 by default) followers,
and only authors with more are merged at read time, so this author's posts are fanned
out. Where the time went comes from the event's own rows: its outbox row (the
mutation's transaction), the relay's `published_at`, and the fan-out consumer's ledger.

One round before the measured ones warms the path and is reported apart. Every loop is
bounded in count and time.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import sys
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx

from bench.fanout import materialize
from bench.goals import Goal
from bench.harness import graphql, quantile_ratios, run_on_ray, summarize
from bench.seed import follow_all, insert_users, issue_tokens

SCENARIO = "takedown"
FOLLOWERS = 10_000
SAMPLE = 200  # followers whose pages are read at the shards
PAGE = 20
POSTS = 10
ENTRIES = 100  # older posts in each follower's timeline before the run
POLL_EVERY_S = 0.02
POLL_BATCH = 2_000  # timeline keys per Redis script call
SIDE_TIMEOUT_S = 60.0
SETTLE_S = 1.0  # between sides, so one side's stragglers do not load the next
RUN_DEADLINE_S = 600.0
POLL_TIMEOUT_S = 60.0

CREATE_POST = "mutation($text: String!) { createPost(input: {text: $text}) { id } }"
MODERATE = """
mutation($id: ID!) {
  moderate(input: {targetType: POST, targetId: $id, action: REMOVE, note: "bench"}) { state }
}
"""


@dataclass
class Audience:
    """The followers, their Redis keys, and the sample read at the shards."""

    followers: list[uuid.UUID]
    sample: list[uuid.UUID]
    timelines: Any  # actors.timeline_client.TimelineClient


@dataclass
class Side:
    """One side's timings, in ms from the mutation's start."""

    name: str
    total: list[float] = field(default_factory=list)
    reply: list[float] = field(default_factory=list)
    first_follower: list[float] = field(default_factory=list)
    redis_all: list[float] = field(default_factory=list)
    pages_all: list[float] = field(default_factory=list)
    committed: list[float] = field(default_factory=list)
    published: list[float] = field(default_factory=list)
    consumed: list[float] = field(default_factory=list)
    poll: list[float] = field(default_factory=list)
    page_reads: list[float] = field(default_factory=list)
    timed_out: int = 0

    def to_dict(self) -> dict[str, Any]:
        return {
            "rounds": len(self.total),
            "timed_out": self.timed_out,
            "latency_ms": summarize(self.total),
            "mutation_reply_ms": summarize(self.reply),
            "first_follower_ms": summarize(self.first_follower),
            "all_redis_sets_ms": summarize(self.redis_all),
            "all_sample_pages_ms": summarize(self.pages_all),
            "event_committed_ms": summarize(self.committed),
            "event_published_ms": summarize(self.published),
            "consumer_began_ms": summarize(self.consumed),
            "one_poll_ms": summarize(self.poll),
            "sample_page_read_ms": summarize(self.page_reads),
        }


@dataclass
class Run:
    """What a round needs: the clients, the audience, the two tokens and the author."""

    http: httpx.AsyncClient
    base_url: str
    db: Any
    redis: Any
    audience: Audience
    author: uuid.UUID
    author_token: str
    moderator_token: str


async def moderator_token(db: Any, settings: Any) -> str:
    """A user with role `moderator`, its session and a signed token carrying the role."""
    from gateway.auth.tokens import KeyRing
    from storage.secrets import Sealer

    (moderator,) = await insert_users(db, 1)
    session = uuid.uuid4()
    async with db.transaction() as conn:
        await conn.execute(
            "UPDATE users SET roles = ARRAY['user', 'moderator'] WHERE id = $1", moderator
        )
        await conn.execute(
            "INSERT INTO auth_sessions (id, user_id, expires_at) VALUES ($1, $2, $3)",
            session,
            moderator,
            datetime.now(UTC) + timedelta(hours=1),
        )
    ring = KeyRing(db, Sealer.from_settings(settings), settings)
    await ring.load()
    return ring.issue(moderator, ["user", "moderator"], session).token


async def fill_timelines(db: Any, redis: Any, followers: list[uuid.UUID], entries: int) -> None:
    """Fill each follower's timeline with `entries` older posts, consistently with
    PostgreSQL: they all follow a second author who wrote those posts. The sets are
    copied server-side from one template (COPY), which takes seconds, not minutes."""
    from actors.timeline_shard import SENTINEL, timeline_key

    (filler,) = await insert_users(db, 1)
    await follow_all(db, followers, [filler])
    async with db.transaction() as conn:
        rows = await conn.fetch(
            """
            INSERT INTO posts (id, author_id, text, search, created_at)
            SELECT gen_random_uuid(), $1, 'older post', ''::tsvector,
                   now() - interval '10 days' + n * interval '1 minute'
            FROM generate_series(1, $2) AS n
            RETURNING id, created_at
            """,
            filler,
            entries,
        )
    epoch, micro = datetime(1970, 1, 1, tzinfo=UTC), timedelta(microseconds=1)
    mapping: dict[str, float] = {SENTINEL: float("-inf")}
    mapping.update({f"{r['id']}:{filler}": (r["created_at"] - epoch) // micro for r in rows})
    template = "nova:bench:takedown:template"
    await redis.zadd(template, mapping)
    try:
        for start in range(0, len(followers), 1_000):
            async with redis.pipeline(transaction=False) as pipe:
                for user in followers[start : start + 1_000]:
                    pipe.copy(template, timeline_key(user), replace=True)
                    pipe.expire(timeline_key(user), 86_400)
                await pipe.execute()
    finally:
        await redis.delete(template)


async def seed(
    db: Any, redis: Any, settings: Any, entries: int
) -> tuple[uuid.UUID, list[uuid.UUID]]:
    started = time.perf_counter()
    author, *followers = await insert_users(db, FOLLOWERS + 1)
    await follow_all(db, followers, [author])
    if entries:
        await fill_timelines(db, redis, followers, entries)
    else:
        await materialize(redis, followers)
    async with db.connection() as conn:
        await conn.execute("ANALYZE users, follows, user_counters, posts")
        counted = await conn.fetchval(
            "SELECT followers FROM user_counters WHERE user_id = $1", author
        )
    if counted != FOLLOWERS or counted > settings.fanout_max_followers:
        raise RuntimeError(
            f"the author has {counted} followers counted, threshold "
            f"{settings.fanout_max_followers}: its posts would not be fanned out"
        )
    took = time.perf_counter() - started
    print(
        f"seeded {FOLLOWERS} followers, {entries} older entries each, in {took:.1f} s",
        file=sys.stderr,
    )
    return author, followers


# KEYS: timeline keys. ARGV: member, "1" to wait for it present, "0" absent. Returns the
# 1-based indices of the keys not yet as wanted.
_PENDING = """
local pending = {}
for i, key in ipairs(KEYS) do
  local present = redis.call('ZSCORE', key, ARGV[1]) ~= false
  if present ~= (ARGV[2] == '1') then pending[#pending + 1] = i end
end
return pending
"""


async def redis_pending(
    redis: Any, followers: list[uuid.UUID], member: str, present: bool
) -> list[uuid.UUID]:
    """The followers whose Redis timeline does not yet have (`present`) or still has the
    member. A script per batch of keys, all batches in one round trip: a pipeline of one
    ZSCORE per follower cost 200-300 ms of this process's CPU per poll on these cores (a
    poll that slow both blurs the timing and takes CPU from the path measured); the
    scripts take about 25 ms for 10,000 keys, and batches let the shards' own Redis
    writes in between."""
    from actors.timeline_shard import timeline_key

    script = redis.register_script(_PENDING)
    batches = [followers[i : i + POLL_BATCH] for i in range(0, len(followers), POLL_BATCH)]
    async with redis.pipeline(transaction=False) as pipe:
        for batch in batches:
            keys = [timeline_key(user) for user in batch]
            await script(keys=keys, args=[member, "1" if present else "0"], client=pipe)
        replies = await pipe.execute()
    return [batch[i - 1] for batch, pending in zip(batches, replies, strict=True) for i in pending]


async def pages_pending(
    timelines: Any,
    sample: list[uuid.UUID],
    post_id: uuid.UUID,
    present: bool,
    reads: list[float],
) -> list[uuid.UUID]:
    """The sampled followers whose first page at the shard is not yet as wanted; each
    read's latency goes to `reads`."""

    async def read(user: uuid.UUID) -> Any:
        started = time.perf_counter()
        page = await timelines.page(user, None, PAGE)
        reads.append((time.perf_counter() - started) * 1000)
        return page

    pages = await asyncio.gather(*(read(user) for user in sample))
    return [
        user
        for user, page in zip(sample, pages, strict=True)
        if any(e.post_id == post_id for e in page) != present
    ]


async def observe(
    run: Run, side: Side, post_id: uuid.UUID, *, present: bool, started: float
) -> None:
    """Poll until the post is in (`present`) or out of every follower's timeline; record
    when the first follower changed, when Redis and the sampled pages were all done."""
    audience, redis = run.audience, run.redis
    member = f"{post_id}:{run.author}"
    redis_left, pages_left = list(audience.followers), list(audience.sample)
    first: float | None = None
    redis_done: float | None = None
    pages_done: float | None = None
    deadline = started + SIDE_TIMEOUT_S

    def elapsed() -> float:
        return (time.perf_counter() - started) * 1000

    while True:
        polled = time.perf_counter()
        redis_now, pages_now = await asyncio.gather(
            redis_pending(redis, redis_left, member, present) if redis_left else _none(),
            pages_pending(audience.timelines, pages_left, post_id, present, side.page_reads)
            if pages_left
            else _none(),
        )
        if first is None and len(redis_now) < len(audience.followers):
            first = elapsed()
        side.poll.append((time.perf_counter() - polled) * 1000)
        redis_left, pages_left = redis_now, pages_now
        if redis_done is None and not redis_left:
            redis_done = elapsed()
        if pages_done is None and not pages_left:
            pages_done = elapsed()
        if redis_done is not None and pages_done is not None:
            side.total.append(max(redis_done, pages_done))
            side.redis_all.append(redis_done)
            side.pages_all.append(pages_done)
            side.first_follower.append(first if first is not None else redis_done)
            return
        if time.perf_counter() > deadline:
            side.timed_out += 1
            print(
                f"{side.name}: {len(redis_left)} Redis sets and {len(pages_left)} pages "
                f"not done after {SIDE_TIMEOUT_S} s",
                file=sys.stderr,
            )
            return
        await asyncio.sleep(POLL_EVERY_S)


async def _none() -> list[uuid.UUID]:
    return []


EVENT_TIMES = """
SELECT o.created_at, o.published_at, p.processed_at
FROM outbox o
LEFT JOIN processed_events p ON p.consumer = 'timeline-fanout' AND p.event_id = o.event_id
WHERE o.topic = $1 AND o.payload->>'post_id' = $2
"""


async def event_times(run: Run, side: Side, topic: str, post_id: uuid.UUID, wall: float) -> None:
    """Where the time went, from the event's own rows: its outbox row's transaction
    (`created_at` is the mutation's transaction start), the relay marking it published,
    and the fan-out consumer's ledger transaction starting on it."""
    row = None
    for _ in range(20):  # the ledger commits just after the timelines are written
        row = await run.db.fetchrow(EVENT_TIMES, topic, str(post_id))
        if row is not None and row["processed_at"] is not None:
            break
        await asyncio.sleep(0.1)
    if row is None or row["published_at"] is None or row["processed_at"] is None:
        return
    for series, column in (
        (side.committed, "created_at"),
        (side.published, "published_at"),
        (side.consumed, "processed_at"),
    ):
        series.append((row[column].timestamp() - wall) * 1000)


async def mutate(run: Run, side: Side, token: str, query: str, variables: dict[str, Any]) -> Any:
    """Run a mutation; its start (perf counter and wall clock) and its data."""
    wall, started = time.time(), time.perf_counter()
    data = await graphql(run.http, run.base_url, token, query, variables)
    side.reply.append((time.perf_counter() - started) * 1000)
    return started, wall, data


async def one_round(run: Run, sides: tuple[Side, Side], n: int) -> None:
    """A post fanned out, then taken down, each timed from its mutation's start."""
    fanout, takedown = sides
    text = {"text": f"takedown bench post {n}"}
    started, wall, data = await mutate(run, fanout, run.author_token, CREATE_POST, text)
    post_id = uuid.UUID(data["createPost"]["id"])
    await observe(run, fanout, post_id, present=True, started=started)
    await event_times(run, fanout, "content.post.created", post_id, wall)
    await asyncio.sleep(SETTLE_S)
    target = {"id": str(post_id)}
    started, wall, data = await mutate(run, takedown, run.moderator_token, MODERATE, target)
    if data["moderate"]["state"] != "REMOVED":
        raise RuntimeError(f"moderate(REMOVE) left the post {data['moderate']['state']}")
    await observe(run, takedown, post_id, present=False, started=started)
    await event_times(run, takedown, "content.post.deleted", post_id, wall)
    await asyncio.sleep(SETTLE_S)


async def activate_sample(timelines: Any, sample: list[uuid.UUID]) -> None:
    """Read each sampled follower's page once: the shards now hold them in memory."""
    await asyncio.gather(*(timelines.page(user, None, PAGE) for user in sample))


async def measure(
    base_url: str, db: Any, redis: Any, settings: Any, posts: int, entries: int
) -> dict[str, Any]:
    from actors.timeline_client import TimelineClient

    author, followers = await seed(db, redis, settings, entries)
    (author_token,) = await issue_tokens(db, settings, [author])
    moderator = await moderator_token(db, settings)
    # A page read waits while its shard works on a fan-out or takedown: the bench reads
    # with a long bound and reports the reads' latencies (the gateway's bound is 5 s).
    timelines = TimelineClient(
        settings.timeline_shards, timeout_s=POLL_TIMEOUT_S, direct_reads=True
    )
    audience = Audience(followers, random.Random(31).sample(followers, SAMPLE), timelines)
    warm = (Side("fan-out (warm-up)"), Side("takedown (warm-up)"))
    sides = (Side("fan-out"), Side("takedown"))
    run_until = time.perf_counter() + RUN_DEADLINE_S
    try:
        await activate_sample(timelines, audience.sample)
        async with httpx.AsyncClient(timeout=30) as http:
            run = Run(http, base_url, db, redis, audience, author, author_token, moderator)
            await one_round(run, warm, -1)
            for n in range(posts):
                if time.perf_counter() > run_until:
                    break
                await one_round(run, sides, n)
    finally:
        await timelines.close()
    print(f"page reads over direct channels: {timelines.direct_reads}", file=sys.stderr)
    fanout, takedown = (side.to_dict() for side in sides)
    return {
        "followers": FOLLOWERS,
        "older_entries_per_timeline": entries,
        "sampled_pages": SAMPLE,
        "fanout_max_followers": settings.fanout_max_followers,
        "timeline_shards": settings.timeline_shards,
        "fanout": fanout,
        "takedown": takedown,
        "warm_up": {"fanout": warm[0].to_dict(), "takedown": warm[1].to_dict()},
        "ratios": {
            **quantile_ratios(
                takedown["latency_ms"], fanout["latency_ms"], "takedown_over_fanout_{0}"
            ),
            **quantile_ratios(
                takedown["all_redis_sets_ms"],
                fanout["all_redis_sets_ms"],
                "redis_sets_takedown_over_fanout_{0}",
            ),
        },
        "goals": [g.to_dict() for g in takedown_goals(fanout, takedown)],
    }


def takedown_goals(fanout: dict[str, Any], takedown: dict[str, Any]) -> list[Goal]:
    """The takedown over the fan-out it undoes, to the same followers by the same road,
    p50 and p99, every round done within SIDE_TIMEOUT_S on both sides."""
    timed_out = fanout["timed_out"] + takedown["timed_out"]
    note = f"{takedown['rounds']} rounds, {timed_out} timed out"
    return [
        Goal(
            f"takedown from {FOLLOWERS:,} timelines {q}",
            takedown["latency_ms"][q],
            fanout["latency_ms"][q],
            "ms",
            f"fan-out of a new post to them, {q}",
            also=timed_out == 0,
            note=note,
        )
        for q in ("p50", "p99")
    ]


def runner(posts: int, entries: int) -> Callable[[str], Any]:
    async def run(base_url: str) -> dict[str, Any]:
        from deployments.settings import Settings
        from storage.db import Database
        from storage.redis_client import make_redis

        settings = Settings.from_env()
        db = await Database.connect(settings, application_name="bench-takedown")
        # The polls wait behind the shards' own Redis work (a takedown's reads of whole
        # timelines took longer than the product's 2 s command bound): a bench-only bound.
        redis = make_redis(replace(settings, redis_timeout_s=POLL_TIMEOUT_S))
        try:
            return await measure(base_url, db, redis, settings, posts, entries)
        finally:
            await redis.aclose()
            await db.close()

    return run


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--posts", type=int, default=POSTS, help="measured rounds (1-50)")
    parser.add_argument(
        "--entries",
        type=int,
        default=ENTRIES,
        help="older posts already in each follower's timeline (0-800)",
    )
    args = parser.parse_args(argv)
    if not 1 <= args.posts <= 50:
        parser.error("--posts must be between 1 and 50")
    if not 0 <= args.entries <= 800:
        parser.error("--entries must be between 0 and 800")
    return run_on_ray(SCENARIO, runner(args.posts, args.entries))


if __name__ == "__main__":
    sys.exit(main())
