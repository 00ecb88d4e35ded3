"""Features for the posts of LATEST feed pages, kept as a ranked page keeps its own, so that
every impression is logged with the features of the moment it was served, whichever mode
served it, and training data accrues before any model ranks anything.

The lookup runs after the page is answered, as a task of its own, so a LATEST page costs
its reader no latency; and it runs in the replica (`ranking.features.FeatureLookup`, the
code the FeatureStore deployment runs: one Redis round trip), not through a Serve call to
the FeatureStore, whose hop costs the replica more CPU than the lookup itself. A replica
runs at most `MAX_IN_FLIGHT` lookups at once and skips a page past that (it is counted).
The lookup costs about what the page does, so `NOVA_RANKING_LATEST_FEATURE_SAMPLE` keeps a
uniform sample of pages (25% by default; `bench/latest_features.py` measures it). An
impression reported before its page's lookup finished (within milliseconds) is logged
without features, as it would be with no lookup at all.
"""

from __future__ import annotations

import asyncio
import logging
import random
import uuid
from collections.abc import Sequence

import redis.asyncio as aioredis

from gateway.services.ranked_feed import keep_served
from gateway.settings import GatewaySettings
from ranking.features import FeatureLookup
from storage.errors import classify

log = logging.getLogger(__name__)

MAX_IN_FLIGHT = 64


class LatestPageFeatures:
    """One per replica."""

    def __init__(self, redis: aioredis.Redis, settings: GatewaySettings) -> None:
        self._redis = redis
        self._lookup = FeatureLookup(redis, half_life_s=settings.feature_half_life_s)
        self._sample = settings.ranking_latest_feature_sample
        self._timeout_s = settings.ranking_call_timeout_s
        self._running: set[asyncio.Task[None]] = set()
        self.logged = 0
        self.skipped = 0
        self.failed = 0

    def after_page(self, viewer: uuid.UUID, posts: Sequence[tuple[uuid.UUID, uuid.UUID]]) -> None:
        """Look up and keep the features of a page's `(post, author)` pairs, later."""
        if not posts or self._sample <= 0 or random.random() >= self._sample:
            return
        if len(self._running) >= MAX_IN_FLIGHT:
            self.skipped += 1
            return
        task = asyncio.create_task(self._record(viewer, list(posts)))
        self._running.add(task)
        task.add_done_callback(self._running.discard)

    async def _record(self, viewer: uuid.UUID, posts: list[tuple[uuid.UUID, uuid.UUID]]) -> None:
        post_ids = [str(post) for post, _ in posts]
        try:
            matrix = await asyncio.wait_for(
                self._lookup.matrix(viewer, post_ids, authors=[str(a) for _, a in posts]),
                self._timeout_s,
            )
            async with self._redis.pipeline(transaction=False) as pipe:
                for post_id, row in zip(post_ids, matrix, strict=True):
                    keep_served(pipe, viewer, post_id, row)
                await pipe.execute()
            self.logged += 1
        except Exception as exc:  # the page was served; only its training row is poorer
            self.failed += 1
            log.warning("features of a LATEST page not kept: %s", classify(exc))

    async def close(self) -> None:
        for task in list(self._running):
            task.cancel()
        await asyncio.gather(*self._running, return_exceptions=True)
