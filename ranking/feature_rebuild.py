"""Rebuild the online features in Redis from PostgreSQL: `nova features rebuild`.

Features are derived state. The `ranking-features` consumer keeps them current event by
event; this recomputes them from the tables, for a Redis that lost them, or after a change
of layout (the old `nova:f:p:*` and `nova:f:a:*` hashes are removed). What it writes:

* follows and followers sets, from `follows`;
* a record for each post created within `feature_post_ttl_s`: author, creation time, text
  length, and likes, comments, shares and clicks decayed to now, as the consumer would
  have left them (clicks: each person's first in every half-life, never the author's);
* each author's posts and the engagements their posts received (plain counts);
* each viewer's affinity to authors, from likes and comments within
  `feature_affinity_ttl_s`, decayed to now.

Values are overwritten, not added to. Run it with the consumer caught up: an engagement
applied by the consumer between the query and the write is lost or counted twice, a small
error in a signal that decays anyway.
"""

from __future__ import annotations

import struct
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import redis.asyncio as aioredis

from ranking import features as f
from ranking.settings import RankingSettings
from storage.db import Database
from storage.repositories.features import FeatureSnapshot, FeatureSourceStore

CHUNK = 2_000
_OLD_LAYOUT = ("nova:f:p:*", "nova:f:a:*")


@dataclass
class RebuildReport:
    follows: int = 0
    posts: int = 0
    authors: int = 0
    affinities: int = 0
    old_keys_removed: int = 0
    seconds: float = 0.0
    counters: dict[str, int] = field(default_factory=dict)


async def rebuild(
    db: Database,
    redis: aioredis.Redis,
    settings: RankingSettings,
    *,
    now: float | None = None,
    progress: Callable[[str], None] = lambda _: None,
) -> RebuildReport:
    started = time.monotonic()
    moment = time.time() if now is None else now
    half_life = settings.feature_half_life_s
    report = RebuildReport()
    writer = _Writer(redis)

    # One consistent snapshot, read while the pipeline writes (`FeatureSourceStore.snapshot`).
    async with FeatureSourceStore(db).snapshot() as source:
        async for follow in source.follows(prefetch=CHUNK):
            writer.pipe.sadd(f.FOLLOWS + follow.follower_id, follow.followee_id)
            writer.pipe.sadd(f.FOLLOWERS + follow.followee_id, follow.follower_id)
            report.follows += 1
            await writer.flush_if_full()
        progress(f"follows: {report.follows}")

        records: dict[str, bytearray] = {}
        since_post = moment - settings.feature_post_ttl_s
        async for post in source.recent_posts(since_post):
            identity = f.post_identity(post.author_id, post.created, post.length)
            records[post.post_id] = bytearray(identity.ljust(f.RECORD_SIZE, b"\0"))
        for counter in await source.decayed_counters(moment, half_life, since_post):
            record = records.get(counter.post_id)
            if record is not None:
                offset = f.record_offset(counter.counter)
                struct.pack_into("<dd", record, offset, counter.value, moment)
                report.counters[counter.counter] = report.counters.get(counter.counter, 0) + 1
        await _replay_clicks(source, records, moment, half_life, since_post, report)
        for post_id, record in records.items():
            writer.pipe.set(f.POST + post_id, bytes(record), ex=settings.feature_post_ttl_s)
            await writer.flush_if_full()
        report.posts = len(records)
        progress(f"posts: {report.posts}")

        async for author in source.authors(prefetch=CHUNK):
            writer.pipe.set(f.AUTHOR_POSTS + author.author_id, author.posts)
            writer.pipe.set(f.AUTHOR_ENGAGEMENTS + author.author_id, author.engagements)
            report.authors += 1
            await writer.flush_if_full()
        progress(f"authors: {report.authors}")

        since_affinity = moment - settings.feature_affinity_ttl_s
        async for affinity in source.affinities(moment, half_life, since_affinity, prefetch=CHUNK):
            key = f.AFFINITY + affinity.viewer
            writer.pipe.hset(
                key,
                mapping={
                    affinity.author_id: repr(affinity.value),
                    f"{affinity.author_id}@": repr(moment),
                },
            )
            writer.pipe.expire(key, settings.feature_affinity_ttl_s)
            report.affinities += 1
            await writer.flush_if_full()
        progress(f"affinities: {report.affinities}")
    await writer.flush()

    for pattern in _OLD_LAYOUT:
        async for key in redis.scan_iter(match=pattern, count=1_000):
            report.old_keys_removed += await redis.unlink(key)
    report.seconds = round(time.monotonic() - started, 2)
    return report


async def _replay_clicks(
    source: FeatureSnapshot,
    records: dict[str, bytearray],
    moment: float,
    half_life: float,
    since: float,
    report: RebuildReport,
) -> None:
    """Clicks as the consumer counts them (`ranking.features.bump_post_once`): a person's
    click counts unless one of theirs on the post counted within a half-life before it."""
    offset = f.record_offset("clicks")
    totals: dict[str, float] = {}
    last: tuple[str, str, float] | None = None  # post, person, when their last one counted
    async for click in source.clicks(since, prefetch=CHUNK):
        same_person = last is not None and last[:2] == (click.post_id, click.person)
        if same_person and last is not None and click.at - last[2] < half_life:
            continue
        last = (click.post_id, click.person, click.at)
        totals[click.post_id] = totals.get(click.post_id, 0.0) + 2.0 ** (
            -max(0.0, moment - click.at) / half_life
        )
    for post_id, value in totals.items():
        record = records.get(post_id)
        if record is not None:
            struct.pack_into("<dd", record, offset, value, moment)
            report.counters["clicks"] = report.counters.get("clicks", 0) + 1


class _Writer:
    """One pipeline, sent every `CHUNK` commands."""

    def __init__(self, redis: aioredis.Redis) -> None:
        self.pipe = redis.pipeline(transaction=False)

    async def flush_if_full(self) -> None:
        if len(self.pipe) >= CHUNK:
            await self.flush()

    async def flush(self) -> None:
        if len(self.pipe):
            await self.pipe.execute()  # and the pipeline is empty again
