"""`nova models train`: a logistic-regression baseline from logged impressions, in numpy.

Data: every logged impression since a time, with the features served for it, labelled 1
when the same user engaged with the same post afterwards — a click, a dwell of at least
`ENGAGED_DWELL_MS`, a like or a comment — else 0. Users are split by a hash into training
(80%) and held-out (20%) sets, so no user's behaviour leaks from one into the other.

Model: standardised features, full-batch gradient descent on the L2-regularised log loss.
It reports the held-out AUC beside a random ranker's (0.5 in expectation, measured on the
same held-out rows), and records both with the new version.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np

from ranking.models import ModelError, load_model, logistic_regression
from ranking.registry import get_route, get_version, read_artifact, register
from ranking.schema import DTYPE, NAMES
from storage.db import Database
from storage.errors import InvalidInput, NovaError
from storage.repositories.analytics import AnalyticsStore
from storage.repositories.models import ModelVersion

# A dwell this long counts as engaged (the rest of the label: `storage.repositories.analytics`).
ENGAGED_DWELL_MS = 5_000
HOLDOUT_SHARE = 0.2
MIN_ROWS = 50

Progress = Callable[[str], None]


@dataclass
class Dataset:
    x: np.ndarray  # [n, features] float32
    y: np.ndarray  # [n] float32, 1 = engaged
    users: list[str]

    def holdout_mask(self) -> np.ndarray:
        """True for rows of held-out users (a stable hash of the user id)."""
        cut = int(HOLDOUT_SHARE * 1000)
        return np.array(
            [
                int(hashlib.blake2b(u.encode(), digest_size=4).hexdigest(), 16) % 1000 < cut
                for u in self.users
            ],
            dtype=bool,
        )


@dataclass
class Fit:
    weights: np.ndarray
    bias: float
    mean: np.ndarray
    std: np.ndarray
    loss: float


def fit_logistic(
    x: np.ndarray,
    y: np.ndarray,
    *,
    epochs: int = 400,
    learning_rate: float = 0.5,
    l2: float = 1e-3,
    progress: Progress | None = None,
) -> Fit:
    """Full-batch gradient descent on standardised features."""
    mean = x.mean(axis=0)
    std = x.std(axis=0)
    std[std < 1e-6] = 1.0  # constant columns stay as they are
    z = (x - mean) / std
    weights = np.zeros(x.shape[1], dtype=np.float64)
    bias = 0.0
    loss = float("nan")
    for epoch in range(1, epochs + 1):
        p = 1.0 / (1.0 + np.exp(-np.clip(z @ weights + bias, -30, 30)))
        error = p - y
        weights -= learning_rate * (z.T @ error / len(y) + l2 * weights)
        bias -= learning_rate * float(error.mean())
        if progress is not None and (epoch % 50 == 0 or epoch == epochs):
            eps = 1e-7
            loss = float(-np.mean(y * np.log(p + eps) + (1 - y) * np.log(1 - p + eps)))
            progress(f"epoch {epoch}/{epochs}  log loss {loss:.4f}")
    return Fit(weights.astype(DTYPE), bias, mean.astype(DTYPE), std.astype(DTYPE), loss)


def auc(scores: np.ndarray, labels: np.ndarray) -> float:
    """Area under the ROC curve (Mann-Whitney U, ties counted half)."""
    positives = labels > 0.5
    n_pos, n_neg = int(positives.sum()), int((~positives).sum())
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    # Tied scores share the average of the ranks they span.
    _, inverse, counts = np.unique(scores, return_inverse=True, return_counts=True)
    ends = np.cumsum(counts)
    ranks = ((ends - counts + 1 + ends) / 2)[inverse]
    return float((ranks[positives].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


async def load_dataset(db: Database, since: datetime) -> Dataset:
    rows = await AnalyticsStore(db).labelled_impressions(
        since, engaged_dwell_ms=ENGAGED_DWELL_MS, features=len(NAMES)
    )
    if not rows:
        return Dataset(np.zeros((0, len(NAMES)), DTYPE), np.zeros(0, DTYPE), [])
    x = np.array([row.features for row in rows], dtype=DTYPE)
    y = np.array([1.0 if row.engaged else 0.0 for row in rows], dtype=DTYPE)
    return Dataset(x, y, [str(row.user_id) for row in rows])


def evaluate(fit: Fit, data: Dataset, holdout: np.ndarray, seed: int = 0) -> dict[str, Any]:
    model = logistic_regression(fit.weights, fit.bias, NAMES, mean=fit.mean, std=fit.std)
    scores = model.score(data.x[holdout])
    labels = data.y[holdout]
    random_scores = np.random.default_rng(seed).random(len(labels))
    return {
        "heldout_auc": round(auc(scores, labels), 4),
        "random_auc": round(auc(random_scores, labels), 4),
        "train_rows": int((~holdout).sum()),
        "heldout_rows": int(holdout.sum()),
        "positive_rate": round(float(data.y.mean()), 4),
        "train_log_loss": round(fit.loss, 4),
    }


async def serving_aucs(
    db: Database, store: Path, name: str, data: Dataset, holdout: np.ndarray
) -> dict[str, float]:
    """The held-out AUC of each version the model's route serves now, on the same rows: the
    bar a new version has to clear. A version whose artifact does not load is left out."""
    found = await get_route(db, name)
    if found is None:
        return {}
    aucs: dict[str, float] = {}
    for version, percent in found.arms.items():
        if percent <= 0:
            continue
        try:
            model = await get_version(db, name, version)
            scorer = load_model(read_artifact(store, model), model.format)
        except (ModelError, NovaError):
            continue
        aucs[version] = round(auc(scorer.score(data.x[holdout]), data.y[holdout]), 4)
    return aucs


async def train(
    db: Database,
    store: Path,
    *,
    since: datetime,
    name: str,
    version: str,
    created_by: str,
    progress: Progress,
    tmp_dir: Path,
) -> tuple[ModelVersion, dict[str, Any]]:
    progress(f"loading impressions logged since {since.isoformat(timespec='seconds')}")
    data = await load_dataset(db, since)
    holdout = data.holdout_mask()
    train_rows = ~holdout
    positives = float(data.y[train_rows].sum()) if len(data.y) else 0.0
    progress(
        f"{len(data.y)} impressions, {int(data.y.sum())} engaged; "
        f"{int(train_rows.sum())} to train, {int(holdout.sum())} held out"
    )
    if train_rows.sum() < MIN_ROWS or holdout.sum() < 10:
        raise InvalidInput(
            f"not enough logged impressions with features since {since:%Y-%m-%d %H:%M} "
            f"({len(data.y)}; at least {MIN_ROWS} to train and 10 to hold out)"
        )
    if positives == 0 or positives == train_rows.sum():
        raise InvalidInput("the training impressions are all engaged or all not: nothing to learn")
    fit = fit_logistic(data.x[train_rows], data.y[train_rows], progress=progress)
    metrics = evaluate(fit, data, holdout)
    metrics["serving_auc"] = await serving_aucs(db, store, name, data, holdout)
    serving = ", ".join(f"{v} (serving) {a}" for v, a in metrics["serving_auc"].items())
    progress(
        f"held-out AUC {metrics['heldout_auc']}; on the same rows: "
        f"{serving + ', ' if serving else ''}a random ranker {metrics['random_auc']}"
    )
    model = logistic_regression(
        fit.weights,
        fit.bias,
        NAMES,
        mean=fit.mean,
        std=fit.std,
        meta={"trained_since": since.isoformat(), "metrics": metrics},
    )
    path = tmp_dir / f"{name}-{version}.npz"
    path.write_bytes(model.to_bytes())
    registered = await register(
        db,
        store,
        path,
        name=name,
        version=version,
        created_by=created_by,
        notes=f"logistic regression on impressions since {since:%Y-%m-%d %H:%M}",
        metrics=metrics,
    )
    return registered, metrics
