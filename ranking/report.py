"""`nova models report NAME`: how each version of a model is doing.

Per version, over impressions logged since a time: impressions, engagement rate with a 95%
Wilson interval (engaged as in training: the label of `storage.repositories.analytics` with
`ranking.train.ENGAGED_DWELL_MS`), share of the model's impressions beside the share its
route gives it, and p50/p99 scoring latency from the samples the Ranker replicas keep in
Redis (`LATENCY_KEY`, the latest `LATENCY_SAMPLES`, each `<ms>@<unix seconds>`; samples
written as bare milliseconds count in the totals but have no time).

`timeline` cuts the same figures into hours (windows up to two days) or UTC days, for
`nova models report --plot` (`ranking.plot`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from itertools import pairwise
from typing import Any

import numpy as np
import redis.asyncio as aioredis

from ranking.registry import get_route, versions
from ranking.train import ENGAGED_DWELL_MS
from storage.db import Database
from storage.repositories.analytics import AnalyticsStore

LATENCY_KEY = "nova:models:latency:{name}:{version}"
LATENCY_SAMPLES = 10_000


@dataclass
class VersionReport:
    version: str
    impressions: int
    engaged: int
    engagement_rate: float | None
    rate_ci95: tuple[float, float] | None
    impression_share: float | None
    route_percent: float
    scoring_p50_ms: float | None
    scoring_p99_ms: float | None
    scoring_samples: int

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def wilson(successes: int, trials: int, z: float = 1.96) -> tuple[float, float] | None:
    """The Wilson score interval of a proportion (sound for small counts and rates near 0)."""
    if trials == 0:
        return None
    p = successes / trials
    denominator = 1 + z * z / trials
    centre = (p + z * z / (2 * trials)) / denominator
    half = z * math.sqrt(p * (1 - p) / trials + z * z / (4 * trials * trials)) / denominator
    return (round(max(0.0, centre - half), 4), round(min(1.0, centre + half), 4))


def latency_sample(elapsed_ms: float, at_s: float) -> str:
    """One scoring latency as the Ranker records it: `<ms>@<unix seconds>`."""
    return f"{round(elapsed_ms, 4)}@{int(at_s)}"


@dataclass
class LatencySamples:
    ms: np.ndarray
    at_s: np.ndarray  # unix seconds; NaN for a bare sample, recorded without its time


def parse_latency_samples(raw: Sequence[bytes | str]) -> LatencySamples:
    ms, at_s = [], []
    for item in raw:
        text = item.decode() if isinstance(item, bytes) else item
        value, _, at = text.partition("@")
        ms.append(float(value))
        at_s.append(float(at) if at else math.nan)
    return LatencySamples(np.array(ms, dtype=np.float64), np.array(at_s, dtype=np.float64))


async def latency_samples(redis: aioredis.Redis, name: str, version: str) -> LatencySamples:
    raw = await redis.lrange(LATENCY_KEY.format(name=name, version=version), 0, -1)
    return parse_latency_samples(raw)


async def report(
    db: Database, redis: aioredis.Redis, name: str, since: datetime
) -> list[VersionReport]:
    rows = await AnalyticsStore(db).counts_by_version(
        name, since, engaged_dwell_ms=ENGAGED_DWELL_MS
    )
    counts = {row.version: (row.impressions, row.engaged) for row in rows}
    route = await get_route(db, name)
    arms = route.arms if route else {}
    registered = [v.version for v in await versions(db, name)]
    # Registered versions in order, then any other version impressions were attributed to.
    shown = [v for v in registered if v in counts or v in arms]
    shown += sorted(v for v in counts if v not in shown and v is not None)
    total = sum(impressions for impressions, _ in counts.values())
    reports = []
    for version in shown:
        impressions, engaged = counts.get(version, (0, 0))
        samples = (await latency_samples(redis, name, version)).ms
        reports.append(
            VersionReport(
                version=version,
                impressions=impressions,
                engaged=engaged,
                engagement_rate=round(engaged / impressions, 4) if impressions else None,
                rate_ci95=wilson(engaged, impressions),
                impression_share=round(impressions / total, 4) if total else None,
                route_percent=float(arms.get(version, 0.0)),
                scoring_p50_ms=_percentile(samples, 50),
                scoring_p99_ms=_percentile(samples, 99),
                scoring_samples=len(samples),
            )
        )
    return reports


def _percentile(samples: np.ndarray, q: float) -> float | None:
    return round(float(np.percentile(samples, q)), 3) if len(samples) else None


# Windows up to this long are cut into hours, longer ones into UTC days.
HOURLY_UP_TO = timedelta(hours=48)


@dataclass
class Bucket:
    """One version's figures over [start, end)."""

    start: datetime
    end: datetime
    impressions: int
    engaged: int
    rate_ci95: tuple[float, float] | None
    scoring_p50_ms: float | None
    scoring_p99_ms: float | None
    scoring_samples: int

    @property
    def engagement_rate(self) -> float | None:
        return self.engaged / self.impressions if self.impressions else None


@dataclass
class Timeline:
    name: str
    step: str  # "hour" or "day"
    edges: list[datetime]  # each bucket's start, then the last one's end (now)
    versions: dict[str, list[Bucket]]


def bucket_edges(since: datetime, now: datetime) -> tuple[str, list[datetime]]:
    """`since`, every whole hour (or UTC midnight) after it and before `now`, then `now`."""
    since = since.astimezone(UTC)
    now = max(now.astimezone(UTC), since)
    if now - since <= HOURLY_UP_TO:
        step, unit = timedelta(hours=1), "hour"
        floor = since.replace(minute=0, second=0, microsecond=0)
    else:
        step, unit = timedelta(days=1), "day"
        floor = since.replace(hour=0, minute=0, second=0, microsecond=0)
    edges = [since]
    edge = floor + step
    while edge < now:
        edges.append(edge)
        edge += step
    return unit, [*edges, now]


async def _counts_per_bucket(
    db: Database, name: str, starts: list[datetime]
) -> list[dict[str | None, tuple[int, int]]]:
    """(impressions, engaged) per version in each bucket, as differences of the counts since
    each bucket's start (the store counts since a time). Newest start first: impressions
    logged while this runs can land in an older bucket, never make a count negative."""
    store = AnalyticsStore(db)
    cumulative: list[dict[str | None, tuple[int, int]]] = [{}]
    for start in reversed(starts):
        rows = await store.counts_by_version(name, start, engaged_dwell_ms=ENGAGED_DWELL_MS)
        cumulative.append({row.version: (row.impressions, row.engaged) for row in rows})
    cumulative.reverse()
    return [
        {
            version: (
                max(0, impressions - later.get(version, (0, 0))[0]),
                max(0, engaged - later.get(version, (0, 0))[1]),
            )
            for version, (impressions, engaged) in current.items()
        }
        for current, later in pairwise(cumulative)
    ]


def latency_by_bucket(samples: LatencySamples, edges: list[datetime]) -> list[np.ndarray]:
    """The timed samples of each bucket; later than the last edge counts in the last."""
    bounds = np.array([edge.timestamp() for edge in edges])
    timed = ~np.isnan(samples.at_s)
    index = np.searchsorted(bounds, samples.at_s[timed], side="right") - 1
    index = np.minimum(index, len(edges) - 2)
    ms = samples.ms[timed]
    return [ms[index == b] for b in range(len(edges) - 1)]


async def timeline(
    db: Database,
    redis: aioredis.Redis,
    name: str,
    since: datetime,
    versions: list[str],
    *,
    now: datetime | None = None,
) -> Timeline:
    """Per version and bucket: impressions, engagement with its Wilson interval, p50/p99."""
    step, edges = bucket_edges(since, now or datetime.now(UTC))
    counts = await _counts_per_bucket(db, name, edges[:-1])
    found: dict[str, list[Bucket]] = {}
    for version in versions:
        latencies = latency_by_bucket(await latency_samples(redis, name, version), edges)
        found[version] = [
            _bucket(start, end, counts[b].get(version, (0, 0)), latencies[b])
            for b, (start, end) in enumerate(pairwise(edges))
        ]
    return Timeline(name=name, step=step, edges=edges, versions=found)


def _bucket(start: datetime, end: datetime, counts: tuple[int, int], ms: np.ndarray) -> Bucket:
    impressions, engaged = counts
    return Bucket(
        start=start,
        end=end,
        impressions=impressions,
        engaged=engaged,
        rate_ci95=wilson(engaged, impressions),
        scoring_p50_ms=_percentile(ms, 50),
        scoring_p99_ms=_percentile(ms, 99),
        scoring_samples=len(ms),
    )
