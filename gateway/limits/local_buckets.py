"""Admitting requests without waiting for Redis while a bucket is far from its limit.

Every operation is charged to two token buckets in Redis (its IP's and its user's). Waiting
for that round trip on every request put Redis's scheduling on two busy cores into the
gateway's tail latency. Yet almost every charge lands on a bucket that is nowhere near
empty, where the answer is known in advance.

So each replica remembers what Redis last said about each bucket it charged: how many
tokens were left. A request whose bucket, by that view, keeps more than a headroom
(`NOVA_RATE_LIMIT_HEADROOM` of its burst) after this replica's own unanswered charges, is
admitted at once; its charge is sent to Redis in the background, coalesced with the other
requests charged meanwhile: one batch in flight per replica, at most one every
`DEBIT_INTERVAL_S`, one script call carrying a debit for every bucket charged since the
last batch (at 700 requests/s, one call per bucket and request was about 5% of a
replica's CPU; at 70, a batch per request still cost 4%). Within the
headroom, or when the view is older than `NOVA_RATE_LIMIT_VIEW_MAX_AGE_S` or missing, the
request waits for Redis's decision as before, so the limit itself is enforced by Redis.

What this gives up: a bucket spent elsewhere (another replica, or an operator) is seen
one answer late. Requests admitted meanwhile are debited all the same, into debt, and the
bucket refuses until it has refilled; `overruns` counts such debits.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from dataclasses import dataclass

from gateway.limits.rate_limits import Budget, Decision, RateLimiter
from storage.errors import Unavailable

log = logging.getLogger(__name__)

# Debits are already late by a round trip; another 50 ms changes no decision (a view is
# trusted for `NOVA_RATE_LIMIT_VIEW_MAX_AGE_S`) and caps Redis calls at 20/s per replica.
DEBIT_INTERVAL_S = 0.05


@dataclass
class _View:
    """This replica's knowledge of one bucket."""

    remaining: int  # whole tokens Redis reported in its last answer
    heard_at: float  # time.monotonic() of that answer
    unsent: int = 0  # cost admitted here, not yet sent to Redis
    in_flight: int = 0  # cost sent to Redis, not yet answered

    def heard(self, remaining: int, at: float) -> None:
        self.remaining, self.heard_at = remaining, at


class LocalBuckets:
    """One per replica, in front of the shared `RateLimiter`."""

    def __init__(
        self,
        limiter: RateLimiter,
        *,
        headroom: float,
        max_age_s: float,
        max_views: int = 50_000,
    ) -> None:
        self._limiter = limiter
        self._headroom = headroom
        self._max_age_s = max_age_s
        self._max_views = max_views
        self._views: dict[str, _View] = {}
        self._swept_at = 0.0
        # Buckets with unsent cost, by key, in the order they were first charged.
        self._unsent: dict[str, tuple[Budget, str, _View]] = {}
        self._flusher: asyncio.Task[None] | None = None
        self.admitted_at_once = 0
        self.overruns = 0  # debits that found their bucket empty: admitted past the limit
        self.debits_lost = 0  # debits Redis could not take: those requests went uncharged
        self.debits_sent = 0  # one per bucket and batch
        self.batches_sent = 0  # script calls

    def try_admit(self, budget: Budget, subject: str, cost: int = 1) -> bool:
        """True: admitted now, the charge follows in the background. False: the caller
        must wait for `take`."""
        key = self._limiter.key(budget, subject)
        view = self._views.get(key)
        if view is None or time.monotonic() - view.heard_at > self._max_age_s:
            return False
        spare = view.remaining - view.unsent - view.in_flight - cost
        if spare < self._headroom * budget.burst:
            return False
        view.unsent += cost
        if key not in self._unsent:
            self._unsent[key] = (budget, subject, view)
        if self._flusher is None:
            self._flusher = asyncio.create_task(self._flush(), name="rate-debits")
        self.admitted_at_once += 1
        return True

    async def take(self, budget: Budget, subject: str, cost: int = 1) -> Decision:
        """Redis's decision, waited for; what it says about the bucket is remembered."""
        decision = await self._limiter.take(budget, subject, cost)
        self._heard(self._limiter.key(budget, subject), decision.remaining)
        return decision

    def _heard(self, key: str, remaining: int) -> None:
        now = time.monotonic()
        view = self._views.get(key)
        if view is not None:
            view.heard(remaining, now)
            return
        if len(self._views) >= self._max_views:
            # Sweep at most once per max age: with every view live, a sweep per new bucket
            # would walk them all on every request.
            if now - self._swept_at > self._max_age_s:
                self._forget_stale(now)
            if len(self._views) >= self._max_views:
                return  # full of live views: this bucket's requests keep waiting
        self._views[key] = _View(remaining=remaining, heard_at=now)

    def _forget_stale(self, now: float) -> None:
        self._swept_at = now
        cutoff = now - self._max_age_s
        busy = self._unsent.keys()
        stale = [
            k
            for k, v in self._views.items()
            if v.heard_at < cutoff and not v.in_flight and k not in busy
        ]
        for key in stale:
            del self._views[key]

    async def _flush(self) -> None:
        """Send what was admitted here to Redis, one batch at a time, until none is left."""
        try:
            while self._unsent:
                started = time.monotonic()
                batch = [
                    (budget, subject, view, view.unsent)
                    for budget, subject, view in self._unsent.values()
                ]
                self._unsent.clear()
                for _, _, view, cost in batch:
                    view.unsent = 0
                    view.in_flight += cost
                self.batches_sent += 1
                self.debits_sent += len(batch)
                try:
                    decisions = await self._limiter.debit_many(
                        [(budget, subject, cost) for budget, subject, _, cost in batch]
                    )
                except Unavailable as exc:
                    # Fail open, as the waiting path does: these requests stay uncharged.
                    self.debits_lost += len(batch)
                    log.warning("rate limits: %d debits not charged: %s", len(batch), exc)
                else:
                    now = time.monotonic()
                    for (_, _, view, _), decision in zip(batch, decisions, strict=True):
                        view.heard(decision.remaining, now)
                        if not decision.allowed:
                            self.overruns += 1
                finally:
                    for _, _, view, cost in batch:
                        view.in_flight -= cost
                # Charges admitted meanwhile wait for the next batch.
                await asyncio.sleep(max(0.0, started + DEBIT_INTERVAL_S - time.monotonic()))
        finally:
            self._flusher = None

    async def settle(self) -> None:
        """Wait until every charge admitted so far has been answered by Redis."""
        while self._flusher is not None:
            await asyncio.gather(self._flusher, return_exceptions=True)

    async def close(self, timeout_s: float = 2.0) -> None:
        """Send the debits still pending, within `timeout_s`."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.settle(), timeout_s)
