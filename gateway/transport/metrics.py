"""The gateway's metrics, for the operator watching the one door in the Ray dashboard.

Per request: a latency histogram by operation (a few microseconds of `ray.util.metrics`).
Everything else is counted in the replica and published every few seconds, off the
request path: requests by operation and status (a `Counter.inc` per request was about 2%
of a busy replica's time), user-cache levels, open WebSockets, requests in flight,
unenforced rate limits.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
from collections.abc import Callable, Mapping

from ray.util import metrics

log = logging.getLogger(__name__)

_LATENCY_BOUNDARIES_MS: list[float] = [1, 2, 5, 10, 20, 30, 50, 100, 250, 500, 1_000, 5_000]

# Operations are named by kind, never by the client's operationName: the label set stays
# small whatever clients send.
QUERY = "query"
MUTATION = "mutation"
REFUSED = "refused"  # answered before an operation was known (transport, parse, shed)


class GatewayMetrics:
    """One per replica. `start()` begins publishing the replica's own counts."""

    def __init__(self, publish_interval_s: float = 5.0) -> None:
        self.publish_interval_s = publish_interval_s
        self._requests = metrics.Counter(
            "nova_gateway_requests_total",
            description="GraphQL HTTP requests answered, by operation kind and HTTP status",
            tag_keys=("operation", "status"),
        )
        self._latency = metrics.Histogram(
            "nova_gateway_request_ms",
            description="Time a GraphQL HTTP request spent in the gateway replica",
            boundaries=_LATENCY_BOUNDARIES_MS,
            tag_keys=("operation",),
        )
        self._rate_limited = metrics.Counter(
            "nova_gateway_rate_limited_total",
            description="Operations refused because a rate-limit budget was spent",
            tag_keys=("budget",),
        )
        self._shed = metrics.Counter(
            "nova_gateway_shed_total",
            description="HTTP requests refused with 503 because the replica was at its limit",
        )
        self._counted = metrics.Counter(
            "nova_gateway_events_total",
            description=(
                "Replica-local counts: user cache by level, post cache hits and misses, cache"
                " invalidation feed losses; timeline page reads by path (direct, ray); rate"
                " limits unenforced, admitted"
                " without waiting, overrun; revocation mirror resyncs; shared subscription"
                " events executed and reused; subscribers cut off for falling behind"
            ),
            tag_keys=("event",),
        )
        self._gauges = metrics.Gauge(
            "nova_gateway_open",
            description="Open WebSockets and HTTP requests in flight on this replica",
            tag_keys=("kind",),
        )
        self._published: dict[str, int] = {}
        self._answered: collections.Counter[tuple[str, int]] = collections.Counter()
        self._task: asyncio.Task[None] | None = None

    def request(self, operation: str, status: int, elapsed_ms: float) -> None:
        self._answered[operation, status] += 1
        self._latency.observe(elapsed_ms, {"operation": operation})

    def rate_limited(self, budget: str) -> None:
        self._rate_limited.inc(1, {"budget": budget})

    def shed(self) -> None:
        self._shed.inc(1)

    def publish(self, counts: Mapping[str, int], gauges: Mapping[str, int]) -> None:
        """Export the requests answered since the last call, monotonic `counts` as
        increments since the last call, `gauges` as is."""
        answered, self._answered = self._answered, collections.Counter()
        for (operation, status), count in answered.items():
            self._requests.inc(count, {"operation": operation, "status": str(status)})
        for event, total in counts.items():
            delta = total - self._published.get(event, 0)
            if delta > 0:
                self._counted.inc(delta, {"event": event})
            self._published[event] = total
        for kind, value in gauges.items():
            self._gauges.set(value, {"kind": kind})

    def start(self, snapshot: Callable[[], tuple[Mapping[str, int], Mapping[str, int]]]) -> None:
        """Publish `snapshot()` (counts, gauges) every `publish_interval_s`; idempotent."""
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(
                self._publish_every(snapshot), name="gateway-metrics"
            )

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        # What was answered since the last publication still counts.
        self.publish({}, {})

    async def _publish_every(
        self, snapshot: Callable[[], tuple[Mapping[str, int], Mapping[str, int]]]
    ) -> None:
        while True:
            try:
                self.publish(*snapshot())
            except Exception:  # metrics must never take the replica down; try again later
                log.exception("gateway metrics not published")
            await asyncio.sleep(self.publish_interval_s)
