"""Assembling the feature matrix from stored values: decay, defaults, ratios."""

from __future__ import annotations

import numpy as np
import pytest

from ranking.features import RAW_COLUMNS, assemble
from ranking.schema import DEFAULTS, NAMES

NOW = 1_800_000_000.0
DAY = 86_400.0


def raw(**values: float) -> np.ndarray:
    row = np.full((1, len(RAW_COLUMNS)), np.nan)
    row[0, RAW_COLUMNS.index("follows")] = 0
    row[0, RAW_COLUMNS.index("mutual")] = 0
    for name, value in values.items():
        row[0, RAW_COLUMNS.index(name.replace("_at", "@"))] = value
    return row


def column(matrix: np.ndarray, name: str) -> float:
    return float(matrix[0, NAMES.index(name)])


def test_nothing_stored_gives_the_schema_defaults() -> None:
    matrix = assemble(raw(), now=NOW, half_life_s=DAY)
    assert matrix.dtype == np.float32
    np.testing.assert_allclose(matrix[0], DEFAULTS)


def test_counters_halve_every_half_life_and_never_grow_from_the_future() -> None:
    matrix = assemble(
        raw(likes=8.0, likes_at=NOW - 2 * DAY, comments=3.0, comments_at=NOW + 60),
        now=NOW,
        half_life_s=DAY,
    )
    assert column(matrix, "post_likes") == pytest.approx(2.0)
    assert column(matrix, "post_comments") == pytest.approx(3.0)


def test_age_length_rate_affinity_and_follows() -> None:
    matrix = assemble(
        raw(
            created=NOW - 5400,
            length=42,
            author_posts=4,
            author_engagements=10,
            affinity=6.0,
            affinity_at=NOW - DAY,
            follows=1,
            mutual=1,
        ),
        now=NOW,
        half_life_s=DAY,
    )
    assert column(matrix, "post_age_hours") == pytest.approx(1.5)
    assert column(matrix, "post_text_length") == 42
    assert column(matrix, "author_engagement_rate") == pytest.approx(2.5)
    assert column(matrix, "viewer_author_affinity") == pytest.approx(3.0)
    assert column(matrix, "viewer_follows_author") == 1
    assert column(matrix, "mutual_follow") == 1


def test_an_author_without_posts_keeps_the_default_rate() -> None:
    matrix = assemble(raw(author_posts=0, author_engagements=3), now=NOW, half_life_s=DAY)
    assert (
        column(matrix, "author_engagement_rate") == DEFAULTS[NAMES.index("author_engagement_rate")]
    )
