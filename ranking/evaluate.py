"""`nova models evaluate NAME VERSION`: offline metrics of model versions on logged impressions.

The rows are those `nova models train` learns from (`ranking.train.load_dataset`): every
impression logged since a time with the feature vector served for it, labelled engaged as
training labels it. The version asked about and every version the model's route sends
traffic to score the same rows, each with its artifact from the model store (checksum
verified, as the Ranker loads it), and each gets:

* AUC: the chance that an engaged impression scores above one that was not (0.5 is random).
* NDCG@10: per viewer, the impressions ordered by score; gain 1 when engaged, discounted
  by 1/log2(position + 1); divided by the best order's. Tied scores share their positions'
  discounts (the expected DCG over the orders of the tie), so a constant model scores
  what a random order does. Viewers whose impressions are all engaged or all not are left
  out: no order of theirs is better than another.
* Calibration: scores as probabilities of engagement, in 10 equal bins of [0, 1]; the
  expected calibration error is the row-weighted mean gap between a bin's mean score and
  its engaged rate. Scores outside [0, 1] are not probabilities: no calibration then.

Impressions carry no serving time or page id in the store's read (`LabelledImpression`), so
NDCG groups a viewer's impressions over the whole window.
"""

from __future__ import annotations

import asyncio
from dataclasses import asdict, dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np

from ranking.models import ModelError, Scorer, load_model
from ranking.registry import get_route, get_version, read_artifact
from ranking.schema import SchemaMismatch, check_schema
from ranking.train import Dataset, load_dataset
from ranking.train import auc as auc  # training's held-out AUC, the same measure
from storage.db import Database
from storage.errors import InvalidInput

K = 10
CALIBRATION_BINS = 10
MIN_ROWS = 50


def _discounts(positions: np.ndarray, k: int) -> np.ndarray:
    """1/log2(position + 2) for 0-based positions inside the top k, else 0."""
    inside = positions < k
    return np.where(inside, 1.0 / np.log2(np.where(inside, positions, 0) + 2.0), 0.0)


def _dcg(
    scores: np.ndarray, gains: np.ndarray, codes: np.ndarray, groups: int, k: int
) -> np.ndarray:
    """Per group, the DCG@k of ordering its rows by score (ties share their discounts)."""
    order = np.lexsort((-scores, codes))
    s, g, c = scores[order], gains[order], codes[order]
    starts = np.searchsorted(c, np.arange(groups))
    discount = _discounts(np.arange(len(c)) - starts[c], k)
    # A tie block is a run of equal scores within a group; its rows share the mean discount.
    new_block = np.ones(len(c), dtype=bool)
    new_block[1:] = (c[1:] != c[:-1]) | (s[1:] != s[:-1])
    block = np.cumsum(new_block) - 1
    shared = np.bincount(block, weights=discount) / np.bincount(block)
    dcg: np.ndarray = np.bincount(c, weights=g * shared[block], minlength=groups)
    return dcg


def ndcg_at_k(
    scores: np.ndarray, gains: np.ndarray, groups: np.ndarray | list[Any], k: int = K
) -> tuple[float, int]:
    """Mean NDCG@k over the groups whose gains differ, and how many groups that is.

    `groups` names each row's group (a viewer); NaN when no group has differing gains.
    """
    scores = np.asarray(scores, dtype=np.float64)
    gains = np.asarray(gains, dtype=np.float64)
    _, codes = np.unique(np.asarray(groups), return_inverse=True)
    codes = codes.reshape(-1)
    n = int(codes.max()) + 1 if len(codes) else 0
    highest = np.full(n, -np.inf)
    lowest = np.full(n, np.inf)
    np.maximum.at(highest, codes, gains)
    np.minimum.at(lowest, codes, gains)
    informative = highest > lowest
    if not informative.any():
        return float("nan"), 0
    dcg = _dcg(scores, gains, codes, n, k)
    ideal = _dcg(gains, gains, codes, n, k)
    return float(np.mean(dcg[informative] / ideal[informative])), int(informative.sum())


@dataclass
class CalibrationBin:
    lower: float
    upper: float
    rows: int
    mean_score: float | None
    engaged_rate: float | None


@dataclass
class Calibration:
    ece: float
    mean_score: float
    engaged_rate: float
    bins: list[CalibrationBin]


def calibration(
    scores: np.ndarray, labels: np.ndarray, bins: int = CALIBRATION_BINS
) -> Calibration | None:
    """Reliability over `bins` equal-width bins of [0, 1]; None when the scores are not
    probabilities (outside [0, 1]) or there are none."""
    p = np.asarray(scores, dtype=np.float64)
    y = np.asarray(labels, dtype=np.float64)
    if not len(p) or p.min() < 0.0 or p.max() > 1.0:
        return None
    index = np.minimum((p * bins).astype(np.int64), bins - 1)  # a score of 1.0: the last bin
    rows = np.bincount(index, minlength=bins)
    score_sums = np.bincount(index, weights=p, minlength=bins)
    engaged_sums = np.bincount(index, weights=y, minlength=bins)
    filled = rows > 0
    gaps = np.abs(score_sums[filled] - engaged_sums[filled]) / rows[filled]
    table = [
        CalibrationBin(
            lower=round(b / bins, 4),
            upper=round((b + 1) / bins, 4),
            rows=int(rows[b]),
            mean_score=round(float(score_sums[b] / rows[b]), 4) if rows[b] else None,
            engaged_rate=round(float(engaged_sums[b] / rows[b]), 4) if rows[b] else None,
        )
        for b in range(bins)
    ]
    return Calibration(
        ece=round(float(np.sum(rows[filled] * gaps) / len(p)), 4),
        mean_score=round(float(p.mean()), 4),
        engaged_rate=round(float(y.mean()), 4),
        bins=table,
    )


@dataclass
class VersionMetrics:
    version: str
    route_percent: float
    rows: int
    auc: float
    ndcg_at_10: float | None
    calibration: Calibration | None


@dataclass
class Evaluation:
    name: str
    version: str
    since: datetime
    held_out: bool
    rows: int
    engaged: int
    viewers: int
    ndcg_viewers: int
    random_ndcg_at_10: float | None  # NDCG@10 of a random order of the same rows
    versions: list[VersionMetrics]

    def to_dict(self) -> dict[str, Any]:
        found = asdict(self)
        found["since"] = self.since.isoformat()
        return found


def metrics_of(version: str, percent: float, scores: np.ndarray, data: Dataset) -> VersionMetrics:
    ndcg, _ = ndcg_at_k(scores, data.y, data.users)
    return VersionMetrics(
        version=version,
        route_percent=percent,
        rows=len(scores),
        auc=round(auc(scores, data.y), 4),
        ndcg_at_10=None if np.isnan(ndcg) else round(ndcg, 4),
        calibration=calibration(scores, data.y),
    )


async def _scorer(db: Database, store: Path, name: str, version: str) -> Scorer:
    """The version's artifact as the Ranker loads it; `NotFound` for an unknown version."""
    record = await get_version(db, name, version)
    try:
        model: Scorer = await asyncio.to_thread(
            lambda: load_model(read_artifact(store, record), record.format)
        )
        check_schema(model.features)
    except (ModelError, SchemaMismatch) as exc:
        raise InvalidInput(f"{name} {version} cannot score the logged features: {exc}") from exc
    return model


async def evaluate(
    db: Database, store: Path, name: str, version: str, *, since: datetime, held_out: bool = False
) -> Evaluation:
    """Score the logged rows with `version` and with every version `name`'s route serves.

    `held_out` keeps only the users `nova models train` holds out of training, so a version
    it trained on the same window is judged on users it never saw.
    """
    route = await get_route(db, name)
    arms = {v: p for v, p in (route.arms if route else {}).items() if p > 0}
    compared = [version, *(v for v in arms if v != version)]
    models = [await _scorer(db, store, name, v) for v in compared]
    data = await load_dataset(db, since)
    if held_out and len(data.y):
        mask = data.holdout_mask()
        data = Dataset(
            data.x[mask], data.y[mask], [u for u, m in zip(data.users, mask, strict=True) if m]
        )
    engaged = int(data.y.sum())
    if len(data.y) < MIN_ROWS or engaged in (0, len(data.y)):
        raise InvalidInput(
            f"not enough logged impressions with features since {since:%Y-%m-%d %H:%M} "
            f"({len(data.y)}, {engaged} engaged; at least {MIN_ROWS}, engaged and not)"
        )
    scored = [
        metrics_of(v, float(arms.get(v, 0.0)), model.score(data.x), data)
        for v, model in zip(compared, models, strict=True)
    ]
    random_ndcg, ndcg_viewers = ndcg_at_k(np.zeros(len(data.y)), data.y, data.users)
    return Evaluation(
        name=name,
        version=version,
        since=since,
        held_out=held_out,
        rows=len(data.y),
        engaged=engaged,
        viewers=len(set(data.users)),
        ndcg_viewers=ndcg_viewers,
        random_ndcg_at_10=None if np.isnan(random_ndcg) else round(random_ndcg, 4),
        versions=scored,
    )
