"""`trackEvents`: client events (impressions, views, clicks, dwell) into `analytics.events`.

Events go through the outbox (one transaction per call), so an acknowledged call is never
lost. An impression of a ranked post carries the features the gateway served with it
(`gateway.services.ranked_feed` kept them in Redis for a day), so training sees what the model saw.
Impressions and views also mark the post seen for the ranked feed's candidate filter.

An event is the client's word, so it is taken only for a post the caller may see now: an
unknown id, a deleted post or one hidden by a block is dropped (the call answers how many
were accepted, and `refused` counts the rest), so no one can make up engagement for posts
or feature keys for ids. Each accepted event names the post's author, which is how the
feature consumer leaves an author's clicks on their own posts out of its counts; it also
counts one click per person and post per window (`actors.consumers.features`).
"""

from __future__ import annotations

import json
import logging
import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import redis.asyncio as aioredis

from actors.consumers.analytics_sink import KINDS, TOPIC
from gateway.services.ranked_feed import SEEN, SEEN_TTL_S, SERVED
from storage.db import Database
from storage.errors import InvalidInput, classify
from storage.events import Event
from storage.repositories.analytics import AnalyticsStore

log = logging.getLogger(__name__)

# Of these posts, those the caller may see now, each with its author.
VisiblePosts = Callable[[Sequence[uuid.UUID]], Awaitable[dict[uuid.UUID, uuid.UUID]]]

MAX_EVENTS = 100
MAX_DWELL_MS = 24 * 3600 * 1000


@dataclass(frozen=True)
class ClientEvent:
    kind: str
    post_id: uuid.UUID
    model_version: str | None = None
    position: int | None = None
    dwell_ms: int | None = None

    def check(self) -> None:
        if self.kind not in KINDS:
            raise InvalidInput(f"kind must be one of {', '.join(sorted(KINDS))}")
        if self.position is not None and not 0 <= self.position <= 10_000:
            raise InvalidInput("position must be between 0 and 10000")
        if self.kind == "DWELL" and self.dwell_ms is None:
            raise InvalidInput("a DWELL event needs dwellMs")
        if self.dwell_ms is not None and not 0 <= self.dwell_ms <= MAX_DWELL_MS:
            raise InvalidInput(f"dwellMs must be between 0 and {MAX_DWELL_MS}")
        if self.model_version is not None and not 1 <= len(self.model_version) <= 64:
            raise InvalidInput("modelVersion must be 1 to 64 characters")


class Analytics:
    def __init__(self, db: Database, redis: aioredis.Redis) -> None:
        self._store = AnalyticsStore(db)
        self._redis = redis
        self.refused = 0  # events dropped: their post is unknown, gone or hidden

    async def track(
        self, viewer: uuid.UUID, events: list[ClientEvent], visible: VisiblePosts
    ) -> int:
        """Validate every event (one bad event refuses the call), keep those about posts
        the viewer may see (`visible`), write them all; how many were kept."""
        if not 1 <= len(events) <= MAX_EVENTS:
            raise InvalidInput(f"send between 1 and {MAX_EVENTS} events per call")
        for event in events:
            event.check()
        authors = await visible(list(dict.fromkeys(e.post_id for e in events)))
        kept_events = [e for e in events if e.post_id in authors]
        if len(kept_events) < len(events):
            self.refused += len(events) - len(kept_events)
            log.debug(
                "trackEvents of %s: %d events about posts it may not see dropped",
                viewer,
                len(events) - len(kept_events),
            )
        events = kept_events
        if not events:
            return 0
        served = await self._served(viewer, events)
        now = datetime.now(UTC).isoformat()
        records = []
        for event, kept in zip(events, served, strict=True):
            # The served record names the version that ranked the post; a client that
            # says another version is believed for attribution, not for the features.
            version = event.model_version or (kept or {}).get("v")
            features = None
            if event.kind == "IMPRESSION" and kept is not None and kept.get("v") == version:
                features = kept["f"]
            records.append(
                Event(
                    TOPIC,
                    str(viewer),
                    {
                        "user_id": str(viewer),
                        "post_id": str(event.post_id),
                        "author_id": str(authors[event.post_id]),
                        "kind": event.kind,
                        "model_name": (kept or {}).get("m") if version else None,
                        "model_version": version,
                        "position": event.position,
                        "dwell_ms": event.dwell_ms,
                        "features": features,
                        "occurred_at": now,
                    },
                )
            )
        await self._store.record(records)
        await self._mark_seen(viewer, events)
        return len(records)

    async def _served(
        self, viewer: uuid.UUID, events: list[ClientEvent]
    ) -> list[dict[str, Any] | None]:
        keys = [f"{SERVED}{viewer}:{event.post_id}" for event in events]
        try:
            raw = await self._redis.mget(keys)
        except Exception as exc:  # features are a bonus; the events themselves matter
            log.warning("served features unavailable: %s", classify(exc, "redis"))
            return [None] * len(events)
        return [None if value is None else json.loads(value) for value in raw]

    async def _mark_seen(self, viewer: uuid.UUID, events: list[ClientEvent]) -> None:
        seen = [str(e.post_id) for e in events if e.kind in ("IMPRESSION", "VIEW")]
        if not seen:
            return
        key = f"{SEEN}{viewer}"
        try:
            pipe = self._redis.pipeline(transaction=False)
            pipe.sadd(key, *seen)
            pipe.expire(key, SEEN_TTL_S)
            await pipe.execute()
        except Exception as exc:  # the seen filter degrades; the events are committed
            log.warning("seen posts not recorded: %s", classify(exc, "redis"))
