"""The fan-out consumer: keeps home timelines in step with posts, follows and blocks.

* `content.post.created`: the post goes into the author's timeline and their followers',
  batched per shard. Authors above `NOVA_FANOUT_MAX_FOLLOWERS` reach only their own
  timeline; their posts are merged into followers' feeds at read time. Followers not seen
  for `NOVA_INACTIVE_AFTER_DAYS` are skipped; their timelines are rebuilt on return.
* `content.post.deleted`: the post leaves the same timelines.
* `graph.follow.created` / `.deleted`: the followee's recent posts enter / leave the
  follower's timeline.
* `graph.block.created`: each side's posts leave the other's timeline.
* `account.erased`: the account's own timeline is deleted (its posts left the others'
  with their `content.post.deleted`).

Timeline writes are idempotent (an entry is a set member), so the effects run inside
`apply`, before the ledger commits: a redelivery after a failed commit repeats them
harmlessly, and nothing is marked done before it happened.
"""

from __future__ import annotations

import time
import uuid
from datetime import datetime
from typing import Any, ClassVar

from ray.util import metrics

from actors.settings import ActorSettings
from actors.timeline_client import TimelineClient
from storage.db import Connection
from storage.errors import ConfigError, PoisonEvent
from storage.events import Event, payload_id
from storage.kafka.consumer import Consumer
from storage.repositories.timelines import Entry, fanout_audience, recent_posts

POST_CREATED = "content.post.created"
POST_DELETED = "content.post.deleted"
FOLLOW_CREATED = "graph.follow.created"
FOLLOW_DELETED = "graph.follow.deleted"
BLOCK_CREATED = "graph.block.created"
ACCOUNT_ERASED = "account.erased"


class FanoutConsumer(Consumer[ActorSettings]):
    name: ClassVar[str] = "timeline-fanout"
    topics: ClassVar[tuple[str, ...]] = (
        POST_CREATED,
        POST_DELETED,
        FOLLOW_CREATED,
        FOLLOW_DELETED,
        BLOCK_CREATED,
        ACCOUNT_ERASED,
    )

    def __init__(self, settings: ActorSettings) -> None:
        super().__init__(settings)
        self._timelines: TimelineClient | None = None
        self._lag: Any = None

    async def start(self) -> None:
        settings = self.settings
        self._timelines = TimelineClient(
            settings.timeline_shards, timeout_s=settings.timeline_call_timeout_s
        )
        self._lag = metrics.Histogram(
            "nova_fanout_lag_seconds",
            "Post commit to present in every follower's timeline",
            boundaries=[0.01, 0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30],
        )

    async def apply(self, event: Event, conn: Connection) -> None:
        if self._timelines is None:
            raise ConfigError("FanoutConsumer.apply called before start()")
        payload = dict(event.payload)
        if event.type == POST_CREATED:
            await self._post_created(conn, payload)
        elif event.type == POST_DELETED:
            author = payload_id(payload, "author_id")
            audience = await self._audience(conn, author)
            post_id = payload_id(payload, "post_id")
            await self._timelines.remove_post(audience, post_id, author)
        elif event.type == FOLLOW_CREATED:
            follower = payload_id(payload, "follower_id")
            followee = payload_id(payload, "followee_id")
            recent = await recent_posts(conn, followee, self.settings.feed_backfill_posts)
            await self._timelines.backfill(follower, recent)
        elif event.type == FOLLOW_DELETED:
            follower = payload_id(payload, "follower_id")
            followee = payload_id(payload, "followee_id")
            await self._timelines.remove([follower], frozenset({followee}))
        elif event.type == BLOCK_CREATED:
            blocker = payload_id(payload, "blocker_id")
            blocked = payload_id(payload, "blocked_id")
            await self._timelines.remove([blocker], frozenset({blocked}))
            await self._timelines.remove([blocked], frozenset({blocker}))
        elif event.type == ACCOUNT_ERASED:
            await self._timelines.drop([payload_id(payload, "user_id")])
        else:
            raise PoisonEvent(f"timeline fan-out: unexpected event type {event.type!r}")

    async def _audience(self, conn: Connection, author: uuid.UUID) -> list[uuid.UUID]:
        followers = await fanout_audience(
            conn,
            author,
            max_followers=self.settings.fanout_max_followers,
            inactive_days=self.settings.inactive_after_days,
        )
        return [author, *(followers or [])]

    async def _post_created(self, conn: Connection, payload: dict[str, Any]) -> None:
        assert self._timelines is not None
        author = payload_id(payload, "author_id")
        try:
            created_at = datetime.fromisoformat(str(payload["created_at"]))
        except (KeyError, ValueError) as exc:
            raise PoisonEvent("payload lacks a valid created_at") from exc
        entry = Entry(created_at, payload_id(payload, "post_id"), author)
        await self._timelines.push(await self._audience(conn, author), entry)
        if self._lag is not None:
            self._lag.observe(max(0.0, time.time() - created_at.timestamp()))
