"""`nova top`: the `nova status` report live in a terminal, with rates between refreshes,
for a machine without a browser.

Rates come from counters sampled at each refresh and differenced over the last
`RATE_WINDOW_S`: events published (the relays) and applied (the consumers), from the
actors' own status; GraphQL requests, 5xx answers and open WebSockets from the gateway's
metrics on each Ray node's metrics export port (Prometheus's text format, read without a
Prometheus server). Those move in steps: replicas publish their counts every 5 s and Ray
exports them every `METRICS_EXPORT_S`, so their rates are measured between the refreshes
at which they changed.
"""

from __future__ import annotations

import argparse
import re
import time
import urllib.request
from collections import deque
from collections.abc import Iterable, Iterator
from datetime import datetime
from typing import Any

from rich import box
from rich.console import Console, Group, RenderableType
from rich.live import Live
from rich.table import Table
from rich.text import Text

from deployments.cli.status import StatusProbe, report_stdout
from deployments.cli.status_view import status_tables

RATE_WINDOW_S = 30.0
# Ray's `metrics_report_interval_ms` (10 s by default, measured on the embedded stack).
METRICS_EXPORT_S = 10.0
METRICS_TIMEOUT_S = 2.0
# Ray prefixes every application metric with `ray_`.
_REQUESTS = "ray_nova_gateway_requests_total"
_OPEN = "ray_nova_gateway_open"
_SAMPLE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})?\s+(\S+)")
_LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"')
# Totals read from the gateway's metrics rather than from the actors' status.
FROM_METRICS = frozenset({"requests", "errors"})


def parse_samples(text: str, prefix: str) -> Iterator[tuple[str, dict[str, str], float]]:
    """`(name, labels, value)` of each sample in Prometheus text whose name starts with
    `prefix`."""
    for line in text.splitlines():
        if not line.startswith(prefix):
            continue
        match = _SAMPLE.match(line)
        if match is None:
            continue
        try:
            value = float(match[3])
        except ValueError:
            continue
        yield match[1], dict(_LABEL.findall(match[2] or "")), value


def gateway_totals(texts: Iterable[str]) -> dict[str, float]:
    """Requests answered, those answered 5xx, and open WebSockets, over every replica."""
    totals = {"requests": 0.0, "errors": 0.0, "websockets": 0.0}
    for text in texts:
        for name, labels, value in parse_samples(text, "ray_nova_gateway_"):
            if name == _REQUESTS:
                totals["requests"] += value
                if labels.get("status", "").startswith("5"):
                    totals["errors"] += value
            elif name == _OPEN and labels.get("kind") == "websockets":
                totals["websockets"] += value
    return totals


def report_totals(report: dict[str, Any]) -> dict[str, float]:
    """Counters and levels the report itself carries: events published by the relays and
    applied by the consumers, the outbox's pending events, the consumers' lag."""
    totals: dict[str, float] = {}
    workers = report.get("workers")
    if isinstance(workers, list):
        relays = [w for w in workers if w["name"].startswith("nova-relay-")]
        totals["published"] = float(sum(int(w.get("published") or 0) for w in relays))
    consumers = report.get("consumers")
    if isinstance(consumers, list):
        totals["applied"] = float(sum(g["applied"] for g in consumers))
        behind = [g["records_behind"] for g in consumers if g["records_behind"] is not None]
        if behind:
            totals["lag"] = float(sum(behind))
    outbox = report.get("outbox")
    if isinstance(outbox, dict):
        totals["pending"] = float(outbox.get("pending") or 0)
    return totals


class RateWindow:
    """Samples of monotonic totals over the last `span_s`; a rate is the difference
    between the oldest and the newest, over the time between them."""

    def __init__(self, span_s: float = RATE_WINDOW_S) -> None:
        self.span_s = span_s
        self._samples: deque[tuple[float, dict[str, float]]] = deque()

    def add(self, at: float, totals: dict[str, float]) -> None:
        self._samples.append((at, dict(totals)))
        while len(self._samples) > 2 and self._samples[1][0] <= at - self.span_s:
            self._samples.popleft()

    def latest(self, key: str) -> float | None:
        return self._samples[-1][1].get(key) if self._samples else None

    def rate(self, key: str, *, steps_s: float | None = None) -> float | None:
        """Per second; None with fewer than two samples of `key` or when the total went
        down (a restarted actor or replica).

        A total that its source refreshes only every `steps_s` is measured between the
        samples at which it changed (from the first to the last change in the window); one
        that did not change for two of its steps is taken as standing still."""
        points = [(at, totals[key]) for at, totals in self._samples if key in totals]
        if steps_s is not None and len(points) >= 2:
            if points[-1][0] - _last_change(points) > 2 * steps_s:
                return 0.0
            points = [p for i, p in enumerate(points) if i and p[1] != points[i - 1][1]]
        if len(points) < 2:
            return None
        (first_at, first), (last_at, last) = points[0], points[-1]
        if last_at <= first_at or last < first:
            return None
        return (last - first) / (last_at - first_at)


def _last_change(points: list[tuple[float, float]]) -> float:
    """When the total last took a new value (the first sample's time if it never did)."""
    changed = [
        at for (at, value), (_, before) in zip(points[1:], points, strict=False) if value != before
    ]
    return changed[-1] if changed else points[0][0]


def _figure(value: float | None, unit: str = "") -> str:
    if value is None:
        return "—"
    return f"{value:,.1f}{unit}" if value % 1 else f"{value:,.0f}{unit}"


def rates_table(window: RateWindow, metrics_note: str = "") -> Table:
    """Rates and levels at a glance: what the service does and how far behind it is."""
    table = Table(
        title="Now", title_justify="left", box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False
    )
    for column in ("requests/s", "5xx/s", "WebSockets", "published/s", "applied/s"):
        table.add_column(column, justify="right")
    table.add_column("outbox pending", justify="right")
    table.add_column("consumer lag", justify="right")

    def from_metrics(key: str) -> float | None:
        return window.rate(key, steps_s=METRICS_EXPORT_S)

    table.add_row(
        _figure(from_metrics("requests")),
        _figure(from_metrics("errors")),
        _figure(window.latest("websockets")),
        _figure(window.rate("published")),
        _figure(window.rate("applied")),
        _figure(window.latest("pending")),
        _figure(window.latest("lag")),
    )
    if metrics_note:
        table.caption = metrics_note
        table.caption_justify = "left"
    return table


def top_frame(
    report: dict[str, Any], window: RateWindow, *, interval_s: float, metrics_note: str = ""
) -> RenderableType:
    heading = Text.assemble(
        ("nova top", "bold"),
        f"  {datetime.now().strftime('%H:%M:%S')}  every {interval_s:g} s, rates over "
        f"{window.span_s:g} s  (Ctrl-C quits)",
    )
    sections = [rates_table(window, metrics_note), *status_tables(report)]
    return Group(heading, *(part for section in sections for part in (Text(""), section)))


class Top:
    """One refresh: the report, the gateway's metrics, the rates since earlier refreshes."""

    def __init__(self, probe: StatusProbe, interval_s: float) -> None:
        self.probe = probe
        self.interval_s = interval_s
        self.window = RateWindow()

    def frame(self) -> RenderableType:
        report = self.probe.report()
        totals = report_totals(report)
        metrics, note = self._metrics(report)
        self.window.add(time.monotonic(), {**totals, **metrics})
        return top_frame(report, self.window, interval_s=self.interval_s, metrics_note=note)

    def _metrics(self, report: dict[str, Any]) -> tuple[dict[str, float], str]:
        """The gateway's totals over every node's metrics port, and what went wrong."""
        if not isinstance(report.get("workers"), list):  # Ray is not reachable
            return {}, ""
        texts, failures = [], []
        for url in metrics_urls():
            try:
                with urllib.request.urlopen(url, timeout=METRICS_TIMEOUT_S) as answer:
                    texts.append(answer.read().decode())
            except OSError as exc:
                failures.append(f"{url}: {exc}")
        note = f"metrics not read from {'; '.join(failures)}" if failures else ""
        return (gateway_totals(texts) if texts else {}), note


def metrics_urls() -> list[str]:
    """Each live Ray node's metrics export endpoint."""
    import ray

    return [
        f"http://{node['NodeManagerAddress']}:{node['MetricsExportPort']}/metrics"
        for node in ray.nodes()  # type: ignore[no-untyped-call]
        if node.get("Alive") and node.get("MetricsExportPort")
    ]


def cmd_top(args: argparse.Namespace) -> int:
    top = Top(StatusProbe(), args.interval)
    with report_stdout() as out:
        console = Console(file=out)
        if args.once:
            # Two samples, one interval apart, so the frame has rates.
            top.frame()
            time.sleep(args.interval)
            console.print(top.frame())
            return 0
        with Live(console=console, auto_refresh=False, screen=True) as live:
            try:
                while True:
                    live.update(top.frame(), refresh=True)
                    time.sleep(args.interval)
            except KeyboardInterrupt:
                pass
    return 0
