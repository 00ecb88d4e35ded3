"""The report's picture without servers: buckets cut by hour or day, latency samples with and
without their time, and a PNG drawn from a made-up timeline (and from an empty one)."""

from __future__ import annotations

import math
import struct
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest

from ranking.plot import DPI, HEIGHT_IN, WIDTH_IN, draw
from ranking.report import (
    Bucket,
    LatencySamples,
    Timeline,
    bucket_edges,
    latency_by_bucket,
    latency_sample,
    parse_latency_samples,
    wilson,
)

NOW = datetime(2026, 3, 4, 15, 20, tzinfo=UTC)


def png_size(path: Path) -> tuple[int, int]:
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    assert data[12:16] == b"IHDR"
    width, height = struct.unpack(">II", data[16:24])
    return width, height


def test_windows_up_to_two_days_are_cut_into_hours_longer_ones_into_days() -> None:
    step, edges = bucket_edges(NOW - timedelta(hours=3, minutes=30), NOW)
    assert step == "hour"
    assert edges == [
        datetime(2026, 3, 4, 11, 50, tzinfo=UTC),
        datetime(2026, 3, 4, 12, tzinfo=UTC),
        datetime(2026, 3, 4, 13, tzinfo=UTC),
        datetime(2026, 3, 4, 14, tzinfo=UTC),
        datetime(2026, 3, 4, 15, tzinfo=UTC),
        NOW,
    ]
    step, edges = bucket_edges(NOW - timedelta(days=7), NOW)
    assert step == "day"
    assert len(edges) == 9  # a partial day, six whole ones, today so far: 8 buckets
    assert edges[1] == datetime(2026, 2, 26, tzinfo=UTC)
    assert edges[-1] == NOW
    assert bucket_edges(NOW + timedelta(hours=1), NOW)[1] == [NOW + timedelta(hours=1)] * 2


def test_latency_samples_carry_their_time_and_bare_ones_are_still_read() -> None:
    assert latency_sample(0.123456, 1_700_000_000.9) == "0.1235@1700000000"
    samples = parse_latency_samples([b"0.5@1700000000", b"0.25", b"2.0@1700003600"])
    assert samples.ms.tolist() == [0.5, 0.25, 2.0]
    assert samples.at_s[0] == 1_700_000_000
    assert math.isnan(samples.at_s[1])

    edges = [NOW - timedelta(hours=2), NOW - timedelta(hours=1), NOW]
    at = [edge.timestamp() for edge in edges]
    samples = LatencySamples(
        ms=np.array([1.0, 2.0, 3.0, 4.0, 5.0]),
        at_s=np.array([at[0] - 1, at[0] + 1, math.nan, at[1] + 1, at[2] + 5]),
    )
    first, second = latency_by_bucket(samples, edges)
    # Before the window: out; untimed: out; after the last edge: the last bucket.
    assert first.tolist() == [2.0]
    assert second.tolist() == [4.0, 5.0]


def bucket(start: datetime, impressions: int, engaged: int, p50: float | None) -> Bucket:
    return Bucket(
        start=start,
        end=start + timedelta(hours=1),
        impressions=impressions,
        engaged=engaged,
        rate_ci95=wilson(engaged, impressions),
        scoring_p50_ms=p50,
        scoring_p99_ms=None if p50 is None else 4 * p50,
        scoring_samples=0 if p50 is None else 100,
    )


@pytest.mark.parametrize("empty", [False, True])
def test_the_picture_is_a_png_of_the_configured_size(tmp_path: Path, empty: bool) -> None:
    edges = [NOW - timedelta(hours=6 - h) for h in range(7)]
    versions = {
        "v1": [bucket(e, 400, 80 + 5 * h, 0.02) for h, e in enumerate(edges[:-1])],
        # No impressions in one bucket and no latency in another: gaps, not zeros.
        "v2": [
            bucket(e, 0 if h == 2 else 40, 0 if h == 2 else 12, None if h == 4 else 0.03)
            for h, e in enumerate(edges[:-1])
        ],
    }
    if empty:
        versions = {v: [bucket(e, 0, 0, None) for e in edges[:-1]] for v in versions}
    path = tmp_path / "report.png"
    draw(Timeline("home", "hour", edges, versions), path, labels={"v1": "v1 (90%)"})
    assert png_size(path) == (int(WIDTH_IN * DPI), int(HEIGHT_IN * DPI))
    assert 10_000 < path.stat().st_size < 1_000_000
