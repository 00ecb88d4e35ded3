"""Event-loop stalls and collector pauses of one process, as metrics and log lines.

A latency tail on this stack is usually one process not running its event loop for a
few tens of milliseconds: a garbage collection, a long synchronous step, the machine's
cores taken by someone else. Each request in flight during a stall waits for it, so a
50 ms stall every few seconds is the p99. `StallWatch` makes such stalls visible where
operators look (the Ray dashboard's metrics) and names the likely cause in the log:

* `nova_event_loop_lag_ms{component}`: how late a timer that should fire every
  `interval_s` fires. Lag over `warn_ms` is also logged, with the collections that ran
  during it.
* `nova_gc_pause_ms{component,generation}`: each garbage collection's duration.

It also exports what the process counted of its dependencies' outages
(`storage.errors.UNAVAILABLE_SEEN`) as `nova_dependency_unavailable_total{component,part}`:
every process has this watch, and an outage is best seen beside the stalls it causes.

Cost: one timer per `interval_s` and two `perf_counter` calls per collection.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import time
from typing import Any

from ray.util import metrics

from storage.errors import UNAVAILABLE_SEEN
from storage.logs import configure_logging
from storage.settings import StorageSettings

log = logging.getLogger(__name__)

_LAG_BOUNDARIES: list[float] = [1, 2, 5, 10, 20, 50, 100, 250, 1000]
_GC_BOUNDARIES: list[float] = [0.5, 1, 2, 5, 10, 20, 50, 100, 250]


class StallWatch:
    """Measures this process's event-loop lag and GC pauses; `start()` in the process."""

    def __init__(self, component: str, *, interval_s: float = 0.05, warn_ms: float = 200.0):
        self.component = component
        self.interval_s = interval_s
        self.warn_ms = warn_ms
        self._tags = {"component": component}
        self._lag = metrics.Histogram(
            "nova_event_loop_lag_ms",
            "How late this process's event loop ran a timer (a stall delays every request)",
            boundaries=_LAG_BOUNDARIES,
            tag_keys=("component",),
        )
        self._gc = metrics.Histogram(
            "nova_gc_pause_ms",
            "Duration of each garbage collection, by generation",
            boundaries=_GC_BOUNDARIES,
            tag_keys=("component", "generation"),
        )
        self._unavailable = metrics.Counter(
            "nova_dependency_unavailable_total",
            "Driver errors that meant a dependency was down, too slow or full, by part",
            tag_keys=("component", "part"),
        )
        self._unavailable_published: dict[str, int] = {}
        self._gc_started: float | None = None
        self._recent_gc: list[tuple[float, int, float]] = []  # (ended, generation, ms)
        self._task: asyncio.Task[None] | None = None
        self.worst_lag_ms = 0.0

    def start(self) -> StallWatch:
        """Begin watching; idempotent. Call from the process's running event loop."""
        if self._task is None:
            gc.callbacks.append(self._on_gc)
            self._task = asyncio.get_running_loop().create_task(
                self._watch(), name=f"stall-watch-{self.component}"
            )
        return self

    def stop(self) -> None:
        if self._on_gc in gc.callbacks:
            gc.callbacks.remove(self._on_gc)
        if self._task is not None:
            self._task.cancel()
            self._task = None

    def _on_gc(self, phase: str, info: dict[str, Any]) -> None:
        now = time.perf_counter()
        if phase == "start":
            self._gc_started = now
            return
        if self._gc_started is None:
            return
        pause_ms = (now - self._gc_started) * 1000
        self._gc_started = None
        generation = int(info.get("generation", -1))
        self._gc.observe(pause_ms, tags={**self._tags, "generation": str(generation)})
        self._recent_gc.append((now, generation, pause_ms))
        if len(self._recent_gc) > 64:
            del self._recent_gc[:32]

    async def _watch(self) -> None:
        loop = asyncio.get_running_loop()
        interval = self.interval_s
        while True:
            due = loop.time() + interval
            await asyncio.sleep(interval)
            lag_ms = max(0.0, (loop.time() - due) * 1000)
            self._lag.observe(lag_ms, tags=self._tags)
            self._export_unavailable()
            self.worst_lag_ms = max(self.worst_lag_ms, lag_ms)
            if lag_ms >= self.warn_ms:
                self._report(lag_ms)

    def _export_unavailable(self) -> None:
        for part, total in UNAVAILABLE_SEEN.items():
            delta = total - self._unavailable_published.get(part, 0)
            if delta > 0:
                self._unavailable.inc(delta, tags={**self._tags, "part": part})
                self._unavailable_published[part] = total

    def _report(self, lag_ms: float) -> None:
        since = time.perf_counter() - (lag_ms / 1000 + self.interval_s)
        collections = [(g, ms) for ended, g, ms in self._recent_gc if ended >= since]
        gc_ms = sum(ms for _, ms in collections)
        log.warning(
            "%s: event loop stalled %.0f ms; %d garbage collections in it took %.0f ms%s",
            self.component,
            lag_ms,
            len(collections),
            gc_ms,
            f" (generations {sorted({g for g, _ in collections})})" if collections else "",
        )


def settle_heap() -> None:
    """Collect once, then move everything start-up built out of the collector's reach.

    A process's long-lived heap (Ray, asyncpg, aiokafka, numpy) is a few hundred thousand
    objects that never become garbage, yet every full collection walks them: 70-110 ms
    per collection here, the stall `StallWatch` reports. Serve does this for its replicas
    (`RAY_SERVE_FREEZE_GC_ON_STARTUP`) and its proxy; Nova's actors call it at the end of
    their start-up.
    """
    gc.collect(2)
    gc.freeze()


def watch_process(component: str, settings: StorageSettings) -> StallWatch:
    """What every long-lived Nova process does first: JSON logs at the configured level,
    and a watch on its own event loop."""
    configure_logging(settings.log_level)
    return StallWatch(component, warn_ms=settings.stall_warn_ms).start()
