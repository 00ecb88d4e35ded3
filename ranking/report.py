"""`nova models report NAME`: how each version of a model is doing.

Per version, over impressions logged since a time: impressions, engagement rate with a 95%
Wilson interval (engaged as in training: the label of `storage.repositories.analytics` with
`ranking.train.ENGAGED_DWELL_MS`), share of the model's impressions beside the share its
route gives it, and p50/p99 scoring latency from the samples the Ranker replicas keep in
Redis (`LATENCY_KEY`, the latest `LATENCY_SAMPLES`).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from datetime import datetime
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


async def latency_samples(redis: aioredis.Redis, name: str, version: str) -> np.ndarray:
    raw = await redis.lrange(LATENCY_KEY.format(name=name, version=version), 0, -1)
    return np.array([float(x) for x in raw], dtype=np.float64)


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
        samples = await latency_samples(redis, name, version)
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
