"""The evaluation metrics on cases small enough to work out by hand: AUC, NDCG@10 per viewer
(ties, the cut at 10, viewers with nothing to order) and calibration."""

from __future__ import annotations

import math

import numpy as np
import pytest

from ranking.evaluate import auc, calibration, ndcg_at_k

log2 = math.log2


def test_auc_counts_ordered_pairs_and_ties_half() -> None:
    labels = np.array([0, 1, 0, 1], dtype=np.float32)
    # Pairs (engaged, not): (0.35, 0.1) right, (0.35, 0.4) wrong, (0.8, *) right: 3 of 4.
    assert auc(np.array([0.1, 0.35, 0.4, 0.8]), labels) == pytest.approx(0.75)
    assert auc(np.array([0.9, 0.1, 0.8, 0.2]), labels) == 0.0
    assert auc(np.array([0.3, 0.3, 0.3, 0.3]), labels) == 0.5


def test_ndcg_of_one_viewer_is_dcg_over_the_best_order() -> None:
    # Ordered by score: not, engaged, not, engaged.
    scores = np.array([0.9, 0.8, 0.7, 0.6])
    gains = np.array([0.0, 1.0, 0.0, 1.0])
    dcg = 1 / log2(3) + 1 / log2(5)
    ideal = 1 / log2(2) + 1 / log2(3)
    ndcg, viewers = ndcg_at_k(scores, gains, ["a"] * 4)
    assert ndcg == pytest.approx(dcg / ideal)
    assert viewers == 1
    assert ndcg_at_k(gains, gains, ["a"] * 4)[0] == pytest.approx(1.0)


def test_ndcg_averages_viewers_and_leaves_out_those_with_nothing_to_order() -> None:
    scores = np.array([0.9, 0.1, 0.2, 0.8, 0.5, 0.4, 0.7, 0.6])
    gains = np.array([1.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0, 1.0])
    groups = ["a", "a", "b", "b", "c", "c", "d", "d"]
    # a: perfect (1.0); b: engaged second (1/log2(3)); c: nothing engaged; d: all engaged.
    ndcg, viewers = ndcg_at_k(scores, gains, groups)
    assert viewers == 2
    assert ndcg == pytest.approx((1.0 + 1 / log2(3)) / 2)
    nothing, none = ndcg_at_k(scores[4:6], gains[4:6], groups[4:6])
    assert math.isnan(nothing)
    assert none == 0


def test_ndcg_stops_at_ten() -> None:
    gains = np.zeros(12)
    gains[10] = 1.0  # the engaged impression ranks 11th
    scores = -np.arange(12, dtype=np.float64)
    assert ndcg_at_k(scores, gains, ["a"] * 12)[0] == 0.0
    gains[9], gains[10] = 1.0, 0.0  # 10th: counted, at 1/log2(11)
    assert ndcg_at_k(scores, gains, ["a"] * 12)[0] == pytest.approx(1 / log2(11))


def test_tied_scores_share_their_positions_like_a_random_order() -> None:
    # Two rows tied: the engaged one is first or second with equal chance.
    ndcg, _ = ndcg_at_k(np.array([0.5, 0.5]), np.array([1.0, 0.0]), ["a", "a"])
    assert ndcg == pytest.approx((1 + 1 / log2(3)) / 2)
    # A tie after a clear winner: the winner keeps position 1.
    ndcg, _ = ndcg_at_k(np.array([0.9, 0.5, 0.5]), np.array([0.0, 1.0, 0.0]), ["a"] * 3)
    assert ndcg == pytest.approx((1 / log2(3) + 1 / log2(4)) / 2)


def test_calibration_bins_scores_and_weighs_each_gap_by_its_rows() -> None:
    scores = np.array([0.1, 0.1, 0.9, 0.9])
    labels = np.array([0.0, 1.0, 1.0, 1.0])
    found = calibration(scores, labels)
    assert found is not None
    # Bin [0.1, 0.2): 0.1 against 0.5; bin [0.9, 1.0]: 0.9 against 1.0; two rows each.
    assert found.ece == pytest.approx(0.5 * 0.4 + 0.5 * 0.1)
    assert found.mean_score == pytest.approx(0.5)
    assert found.engaged_rate == pytest.approx(0.75)
    assert len(found.bins) == 10
    assert found.bins[1].rows == 2
    assert found.bins[1].mean_score == pytest.approx(0.1)
    assert found.bins[1].engaged_rate == 0.5
    assert found.bins[0].rows == 0
    assert found.bins[0].mean_score is None


def test_calibration_of_a_calibrated_model_is_zero_and_edges_land_inside() -> None:
    scores = np.array([0.25, 0.25, 0.25, 0.25, 0.0, 1.0])
    labels = np.array([1.0, 0.0, 0.0, 0.0, 0.0, 1.0])
    found = calibration(scores, labels)
    assert found is not None
    assert found.ece == pytest.approx(0.0)
    assert found.bins[0].rows == 1  # 0.0
    assert found.bins[9].rows == 1  # 1.0 goes to the last bin, not an eleventh


def test_scores_that_are_not_probabilities_have_no_calibration() -> None:
    assert calibration(np.array([-1.5, 0.2, 3.0]), np.array([0.0, 1.0, 1.0])) is None
    assert calibration(np.array([]), np.array([])) is None
