"""The feature consumer: keeps the online features in Redis current from the event log.

A batch's Redis updates and its events' ledger keys go in one MULTI/EXEC
(`storage.kafka.ledger.RedisLedger`), so a redelivery — after a crash, a rebalance or a broker
reset — never counts an engagement twice, and a hot post's likes cost three Redis round
trips per batch rather than per like. Decay uses the event's `occurred_at`, so a
backlog applied late weighs what it weighed when it happened.

An erased account's posts' records go with it, and its own keys
(its follows and engagements leave others' keys through their own `.deleted` events).

Likes, comments and shares are rows in PostgreSQL, each counted. Clicks come from
`trackEvents`, the client's word: a post's click count takes each person once per
half-life (`ranking.features.bump_post_once`) and never the post's author.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, ClassVar

import redis.asyncio as aioredis
from redis.asyncio.client import Pipeline

from actors.settings import ActorSettings
from ranking import features as f
from storage.db import Connection
from storage.errors import ConfigError, PoisonEvent
from storage.events import Event, payload_id
from storage.kafka.consumer import BatchConsumer
from storage.kafka.ledger import RedisLedger
from storage.redis_client import make_redis

ENGAGEMENTS = {
    "social.like.created": ("likes", 1.0),
    "social.like.deleted": ("likes", -1.0),
    "social.comment.created": ("comments", 1.0),
    "social.comment.deleted": ("comments", -1.0),
    "social.share.created": ("shares", 1.0),
    "social.share.deleted": ("shares", -1.0),
}
AFFINITY_COMMENT = 2.0  # a comment says more about interest than a like
AFFINITY_EVENTS = {
    "social.like.created": 1.0,
    "social.like.deleted": -1.0,
    "social.comment.created": AFFINITY_COMMENT,
    "social.comment.deleted": -AFFINITY_COMMENT,
}
TRANSACTION_EVENTS = 256  # per MULTI/EXEC: bounds the WATCH list and Redis's pause


def _id(payload: dict[str, Any], name: str) -> str:
    return str(payload_id(payload, name))


class FeatureConsumer(BatchConsumer[ActorSettings]):
    name: ClassVar[str] = "ranking-features"
    topics: ClassVar[tuple[str, ...]] = (
        "content.post.created",
        "content.post.deleted",
        "account.erased",
        "social.like.created",
        "social.like.deleted",
        "social.comment.created",
        "social.comment.deleted",
        "social.share.created",
        "social.share.deleted",
        "graph.follow.created",
        "graph.follow.deleted",
        "analytics.events",
    )

    def __init__(self, settings: ActorSettings) -> None:
        super().__init__(settings)
        self._redis: aioredis.Redis | None = None
        self._ledger: RedisLedger | None = None

    async def start(self) -> None:
        settings = self.settings
        self._redis = make_redis(settings)
        self._ledger = RedisLedger(self._redis, ttl_s=settings.outbox_retention_s)

    async def stop(self) -> None:
        if self._redis is not None:
            await self._redis.aclose()

    async def apply_many(self, events: Sequence[Event], conn: Connection) -> None:
        """Every event's effects, in order, a transaction per `TRANSACTION_EVENTS`.

        A malformed event raises before anything is written, so the runner's
        one-at-a-time retry dead-letters just that event."""
        if self._ledger is None:
            raise ConfigError("FeatureConsumer.apply called before start()")
        batch = [(e.event_id, fx) for e in events if (fx := self.effects(e)) is not None]
        for start in range(0, len(batch), TRANSACTION_EVENTS):
            await self._ledger.apply_many_once(self.name, batch[start : start + TRANSACTION_EVENTS])

    def effects(self, event: Event) -> Callable[[Pipeline], None] | None:
        """The Redis updates `event` makes, queued on a pipeline; None if it makes none."""
        payload = dict(event.payload)
        at = event.occurred_at.timestamp()
        half_life = self.settings.feature_half_life_s
        post_ttl = self.settings.feature_post_ttl_s
        affinity_ttl = self.settings.feature_affinity_ttl_s

        if event.type == "content.post.created":
            post, author = _id(payload, "post_id"), _id(payload, "author_id")
            length = int(payload.get("text_length") or 0)

            def created(pipe: Pipeline) -> None:
                key = f.POST + post
                pipe.setrange(key, 0, f.post_identity(author, at, length))
                pipe.expire(key, post_ttl)
                pipe.incr(f.AUTHOR_POSTS + author)

            return created

        if event.type == "content.post.deleted":
            if payload.get("reason") != "erased":
                return None  # a removed post may be restored; its record expires anyway
            gone = _id(payload, "post_id")

            def deleted(pipe: Pipeline) -> None:
                pipe.delete(f.POST + gone)

            return deleted

        if event.type == "account.erased":
            user = _id(payload, "user_id")

            def erased(pipe: Pipeline) -> None:
                pipe.delete(*(prefix + user for prefix in f.USER_KEYS))

            return erased

        if event.type in ENGAGEMENTS:
            counter, delta = ENGAGEMENTS[event.type]
            post, author = _id(payload, "post_id"), _id(payload, "author_id")
            actor = _id(payload, "user_id")
            affinity = AFFINITY_EVENTS.get(event.type)

            def engaged(pipe: Pipeline) -> None:
                f.bump_post(
                    pipe, post, counter, delta, at=at, half_life_s=half_life, ttl_s=post_ttl
                )
                pipe.incrbyfloat(f.AUTHOR_ENGAGEMENTS + author, delta)
                if affinity is not None and actor != author:
                    f.bump(
                        pipe,
                        f.AFFINITY + actor,
                        author,
                        affinity,
                        at=at,
                        half_life_s=half_life,
                        ttl_s=affinity_ttl,
                    )

            return engaged

        if event.type in ("graph.follow.created", "graph.follow.deleted"):
            follower, followee = _id(payload, "follower_id"), _id(payload, "followee_id")
            following = event.type == "graph.follow.created"

            def followed(pipe: Pipeline) -> None:
                if following:
                    pipe.sadd(f.FOLLOWS + follower, followee)
                    pipe.sadd(f.FOLLOWERS + followee, follower)
                else:
                    pipe.srem(f.FOLLOWS + follower, followee)
                    pipe.srem(f.FOLLOWERS + followee, follower)

            return followed

        if event.type == "analytics.events":
            if str(payload.get("kind")) != "CLICK":
                return None
            post, person = _id(payload, "post_id"), _id(payload, "user_id")
            if payload.get("author_id") is not None and _id(payload, "author_id") == person:
                return None  # clicks on one's own posts say nothing of them

            def clicked(pipe: Pipeline) -> None:
                # A click is the client's word: each person counts once per half-life.
                f.bump_post_once(
                    pipe,
                    post,
                    "clicks",
                    person,
                    1.0,
                    at=at,
                    half_life_s=half_life,
                    ttl_s=post_ttl,
                    window_s=half_life,
                )

            return clicked

        raise PoisonEvent(f"features: unexpected event type {event.type!r}")
