"""`nova models report NAME --plot FILE.png`: each version of a model over time, as a picture.

Two panels share the time axis (UTC), one colour per version:

* engagement rate per bucket (a step over the bucket's span), its 95% Wilson interval as a
  shaded band; a bucket without impressions is a gap;
* p50 (solid) and p99 (dashed) scoring latency per bucket, log scale, from the Ranker's
  timed samples (`ranking.report.LatencySamples`).

Drawn on a `Figure` of its own with matplotlib's non-interactive Agg canvas: no pyplot, no
global state, no display needed.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
from matplotlib import dates, ticker
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from ranking.report import Bucket, Timeline

WIDTH_IN, HEIGHT_IN, DPI = 10.0, 7.0, 100


def draw(timeline: Timeline, path: Path, *, labels: dict[str, str] | None = None) -> None:
    """Write the picture of `timeline` to `path` as a PNG."""
    figure = Figure(figsize=(WIDTH_IN, HEIGHT_IN), dpi=DPI, layout="constrained")
    FigureCanvasAgg(figure)
    rate_axes, latency_axes = figure.subplots(2, 1, sharex=True)
    edges = dates.date2num(timeline.edges)  # type: ignore[no-untyped-call] # untyped module
    for index, (version, buckets) in enumerate(timeline.versions.items()):
        colour = f"C{index % 10}"
        label = (labels or {}).get(version, version)
        _engagement(rate_axes, edges, buckets, colour, label)
        _latency(latency_axes, edges, buckets, colour, label)
    since = timeline.edges[0]
    figure.suptitle(
        f"{timeline.name}: per {timeline.step} since {since:%Y-%m-%d %H:%M} UTC", fontsize=12
    )
    rate_axes.set_ylabel("engagement rate (%), 95% CI")
    rate_axes.set_ylim(bottom=0)
    latency_axes.set_ylabel("scoring latency (ms)")
    latency_axes.set_xlabel("time (UTC)")
    locator = dates.AutoDateLocator()  # type: ignore[no-untyped-call]
    latency_axes.xaxis.set_major_locator(locator)
    formatter = dates.ConciseDateFormatter(locator)  # type: ignore[no-untyped-call]
    latency_axes.xaxis.set_major_formatter(formatter)
    latency_axes.set_xlim(edges[0], edges[-1])
    _empty_note(rate_axes, timeline, "no impressions in this window", "impressions")
    _empty_note(latency_axes, timeline, "no timed latency samples in this window", "samples")
    for axes in (rate_axes, latency_axes):
        axes.grid(True, alpha=0.3)
        if axes.has_data():
            axes.legend(loc="upper left", fontsize=8)
    figure.savefig(path, format="png")


def _stepped(values: list[float | None]) -> np.ndarray:
    """Per-bucket values for a step drawn over the edges (the last value repeated)."""
    array = np.array([np.nan if v is None else v for v in values], dtype=np.float64)
    return np.append(array, array[-1]) if len(array) else array


def _engagement(
    axes: Axes, edges: np.ndarray, buckets: list[Bucket], colour: str, label: str
) -> None:
    intervals = [(b, bucket.rate_ci95) for b, bucket in enumerate(buckets) if bucket.rate_ci95]
    if not intervals:
        return
    # The band: one bar per bucket with impressions, spanning the bucket, from low to high.
    shown = np.array([b for b, _ in intervals])
    low = np.array([100 * ci[0] for _, ci in intervals])
    high = np.array([100 * ci[1] for _, ci in intervals])
    axes.bar(
        edges[shown],
        high - low,
        bottom=low,
        width=edges[shown + 1] - edges[shown],
        align="edge",
        color=colour,
        alpha=0.2,
        linewidth=0,
    )
    rate = [None if b.engagement_rate is None else 100 * b.engagement_rate for b in buckets]
    axes.step(edges, _stepped(rate), where="post", color=colour, label=label)


def _latency(axes: Axes, edges: np.ndarray, buckets: list[Bucket], colour: str, label: str) -> None:
    p50 = _stepped([b.scoring_p50_ms for b in buckets])
    p99 = _stepped([b.scoring_p99_ms for b in buckets])
    if np.all(np.isnan(p50)):
        return
    axes.step(edges, p50, where="post", color=colour, label=f"{label} p50")
    axes.step(edges, p99, where="post", color=colour, linestyle="--", label=f"{label} p99")
    axes.set_yscale("log")
    axes.yaxis.set_major_formatter(ticker.FuncFormatter(lambda value, _: f"{value:g}"))
    axes.yaxis.set_minor_formatter(ticker.FuncFormatter(_two_and_five))


def _two_and_five(value: float, _: object) -> str:
    """Minor ticks of a log axis labelled at 2 and 5 of each decade, as plain numbers."""
    if value <= 0:
        return ""
    leading = round(value / 10 ** math.floor(math.log10(value)))
    return f"{value:g}" if leading in (2, 5) else ""


def _empty_note(axes: Axes, timeline: Timeline, note: str, counted: str) -> None:
    total = sum(
        b.impressions if counted == "impressions" else b.scoring_samples
        for buckets in timeline.versions.values()
        for b in buckets
    )
    if not total:
        axes.text(0.5, 0.5, note, transform=axes.transAxes, ha="center", va="center")
