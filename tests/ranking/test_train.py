"""The trainer's numerics: AUC, the Wilson interval, and a fit that learns a known signal."""

from __future__ import annotations

import numpy as np
import pytest

from ranking.report import wilson
from ranking.schema import NAMES
from ranking.train import Dataset, auc, evaluate, fit_logistic


def synthetic(rows: int, seed: int) -> Dataset:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(rows, len(NAMES))).astype(np.float32)
    truth = 2.0 * x[:, 2] - 1.5 * x[:, 7] + 0.5
    y = (rng.random(rows) < 1 / (1 + np.exp(-truth))).astype(np.float32)
    return Dataset(x, y, [f"user-{i % 300}" for i in range(rows)])


def test_auc_matches_hand_computed_values() -> None:
    labels = np.array([0, 0, 1, 1], dtype=np.float32)
    assert auc(np.array([0.1, 0.4, 0.35, 0.8]), labels) == pytest.approx(0.75)
    assert auc(np.array([0.1, 0.2, 0.3, 0.4]), labels) == 1.0
    assert auc(np.array([0.5, 0.5, 0.5, 0.5]), labels) == 0.5  # ties count half


def test_the_wilson_interval_brackets_the_rate_and_narrows_with_data() -> None:
    small = wilson(3, 10)
    large = wilson(300, 1000)
    assert small is not None
    assert large is not None
    assert small[0] < 0.3 < small[1]
    assert large[0] < 0.3 < large[1]
    assert large[1] - large[0] < small[1] - small[0]
    assert wilson(0, 0) is None
    interval = wilson(0, 20)
    assert interval is not None
    assert interval[0] == 0.0
    assert interval[1] == pytest.approx(0.1611, abs=1e-3)


def test_a_fit_recovers_the_signal_and_beats_random_on_held_out_users() -> None:
    data = synthetic(5000, seed=3)
    holdout = data.holdout_mask()
    assert 0.1 < holdout.mean() < 0.3
    held_users = {u for u, h in zip(data.users, holdout, strict=True) if h}
    assert held_users.isdisjoint(u for u, h in zip(data.users, holdout, strict=True) if not h)
    lines: list[str] = []
    fit = fit_logistic(data.x[~holdout], data.y[~holdout], progress=lines.append)
    metrics = evaluate(fit, data, holdout)
    assert lines
    assert metrics["heldout_auc"] > 0.75
    assert abs(metrics["random_auc"] - 0.5) < 0.1
    # The two informative features carry the largest weights, with the right signs.
    strongest = set(np.argsort(-np.abs(fit.weights))[:2])
    assert strongest == {2, 7}
    assert fit.weights[2] > 0 > fit.weights[7]
