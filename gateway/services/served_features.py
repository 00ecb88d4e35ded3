"""Features for the posts of LATEST feed pages, kept as a ranked page keeps its own, so that
every impression is logged with the features of the moment it was served, whichever mode
served it, and training data accrues before any model ranks anything.

The lookup (one FeatureStore call per page) runs after the page is answered, as a task of
its own: a LATEST page costs its reader nothing more. A replica runs at most
`MAX_IN_FLIGHT` lookups at once and skips a page past that (it is counted), and
`NOVA_RANKING_LATEST_FEATURE_SAMPLE` can sample pages when the FeatureStore's load
demands. An impression reported before its page's lookup finished (within milliseconds)
is logged without features, as it would be with no lookup at all.
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
import uuid
from collections.abc import Sequence
from typing import Any

import redis.asyncio as aioredis

from gateway.services.ranked_feed import SERVED, SERVED_TTL_S
from gateway.settings import GatewaySettings
from storage.errors import classify

log = logging.getLogger(__name__)

MAX_IN_FLIGHT = 64


class LatestPageFeatures:
    """One per replica."""

    def __init__(self, redis: aioredis.Redis, settings: GatewaySettings, *, features: Any) -> None:
        self._redis = redis
        self._features = features  # DeploymentHandle to FeatureStore
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
                self._features.features.remote(
                    str(viewer), post_ids, [str(author) for _, author in posts]
                ),
                self._timeout_s,
            )
            async with self._redis.pipeline(transaction=False) as pipe:
                for post_id, row in zip(post_ids, matrix, strict=True):
                    pipe.set(
                        f"{SERVED}{viewer}:{post_id}",
                        json.dumps({"m": None, "v": None, "f": [float(x) for x in row]}),
                        ex=SERVED_TTL_S,
                    )
                await pipe.execute()
            self.logged += 1
        except Exception as exc:  # the page was served; only its training row is poorer
            self.failed += 1
            log.warning("features of a LATEST page not kept: %s", classify(exc))

    async def close(self) -> None:
        for task in list(self._running):
            task.cancel()
        await asyncio.gather(*self._running, return_exceptions=True)
