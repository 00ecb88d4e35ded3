"""Per-replica resources shared by every request: the services, caches and limits one
gateway replica holds open (`GatewayRuntime`)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import uuid
from collections.abc import Awaitable
from dataclasses import dataclass, field
from typing import Any

import redis.asyncio as aioredis

from actors.chat_client import ChatClient
from actors.counter_client import CounterClient
from actors.timeline_client import TimelineClient
from gateway.auth.deletion import AccountDeletions
from gateway.auth.identity import Identity
from gateway.auth.passwords import Passwords
from gateway.auth.revocation import Revocations
from gateway.auth.sessions import Sessions
from gateway.auth.tokens import AccessClaims, KeyRing, ensure_signing_key
from gateway.errors import RateLimited, Unauthenticated
from gateway.limits.local_buckets import LocalBuckets
from gateway.limits.query_limits import QueryLimits
from gateway.limits.rate_limits import Budget, Budgets, RateLimiter, budgets
from gateway.services.analytics import Analytics
from gateway.services.blocklist import Blocklist
from gateway.services.caches import Invalidations
from gateway.services.chat import Chat
from gateway.services.exports import DataExports
from gateway.services.feed import Feed
from gateway.services.graph import Graph
from gateway.services.media import Media
from gateway.services.moderation import Moderation
from gateway.services.notifications import Notifications
from gateway.services.posts import Posts
from gateway.services.profiles import Profiles
from gateway.services.ranked_feed import RankedFeed
from gateway.services.relations import ViewerRelations
from gateway.services.search import Search
from gateway.services.served_features import LatestPageFeatures
from gateway.services.stories import Stories
from gateway.services.users import UserCache
from gateway.settings import GatewaySettings
from gateway.transport.admission import InFlightLimit
from gateway.transport.apq import PersistedQueryStore
from gateway.transport.documents import DocumentCache
from gateway.transport.drain import WebSocketDrain
from gateway.transport.health import KafkaProbe, Readiness
from gateway.transport.hub import PubSubHub
from gateway.transport.metrics import GatewayMetrics
from gateway.transport.shared_events import STATS as SHARED_EVENTS
from gateway.transport.ws_caps import SocketLeases
from storage.db import Database
from storage.errors import Unavailable
from storage.media_store import open_store
from storage.redis_client import make_redis
from storage.secrets import Sealer

log = logging.getLogger(__name__)


@dataclass
class GatewayRuntime:
    """Everything one gateway replica holds open. Build with `start()`, end with `close()`."""

    settings: GatewaySettings
    db: Database
    redis: aioredis.Redis
    kafka_probe: KafkaProbe
    keys: KeyRing
    revocations: Revocations
    invalidations: Invalidations
    users: UserCache
    relations: ViewerRelations
    identity: Identity
    profiles: Profiles
    buckets: LocalBuckets  # the shared RateLimiter, with this replica's view of its buckets
    budgets: Budgets
    persisted: PersistedQueryStore
    counters: CounterClient
    graph: Graph
    posts: Posts
    search: Search
    timelines: TimelineClient
    feed: Feed
    hub: PubSubHub
    chat: Chat
    notifications: Notifications
    analytics: Analytics
    sessions: Sessions
    deletions: AccountDeletions
    media: Media
    stories: Stories
    moderation: Moderation
    exports: DataExports
    # `feed(mode: RANKED)`; None without the FeatureStore and Ranker (then RANKED = LATEST).
    ranked: RankedFeed | None = None
    # Features kept for LATEST pages' impressions; None without the FeatureStore.
    latest_features: LatestPageFeatures | None = None
    replica_id: str = field(
        default_factory=lambda: f"{socket.gethostname()}-{uuid.uuid4().hex[:6]}"
    )
    documents: DocumentCache | None = None  # set by the app once the schema is known
    closed: bool = False
    rate_limit_failures: int = 0
    metrics: GatewayMetrics = field(default_factory=GatewayMetrics)
    websockets: WebSocketDrain = field(default_factory=WebSocketDrain)
    admission: InFlightLimit | None = None  # set by the app around `/graphql` over HTTP
    socket_leases: SocketLeases | None = None  # set by the app: the WebSocket caps

    @classmethod
    async def start(
        cls, settings: GatewaySettings, *, features: Any = None, ranker: Any = None
    ) -> GatewayRuntime:
        """`features` and `ranker`: deployment handles to FeatureStore and Ranker."""
        sealer = Sealer.from_settings(settings)
        db = await Database.connect(settings, application_name="nova-gateway")
        redis = make_redis(settings)
        keys = KeyRing(db, sealer, settings)
        await ensure_signing_key(db, sealer)
        await keys.load()
        revocations = Revocations(redis, db, access_ttl_s=settings.access_token_ttl_s)
        await revocations.start()
        passwords = Passwords(settings)
        invalidations = Invalidations(redis)
        users = UserCache(
            db,
            redis,
            invalidations,
            max_entries=settings.user_cache_size,
            local_ttl_s=settings.user_cache_ttl_s,
            redis_ttl_s=settings.user_redis_ttl_s,
        )
        relations = ViewerRelations(db, invalidations, settings)
        counters = CounterClient(settings.counter_shards, timeout_s=settings.counter_call_timeout_s)
        posts = Posts(
            db,
            counters,
            invalidations,
            cache_size=settings.post_cache_size,
            cache_ttl_s=settings.post_cache_ttl_s,
            blocklist=Blocklist.of(
                settings.moderation_blocked_words, settings.moderation_blocked_domains
            ),
        )
        # Every cache is registered: subscribe to their invalidations before serving.
        await invalidations.start()
        identity = Identity(
            db,
            settings,
            keys=keys,
            passwords=passwords,
            sealer=sealer,
            revocations=revocations,
            users=users,
        )
        timelines = TimelineClient(
            settings.timeline_shards,
            timeout_s=settings.timeline_call_timeout_s,
            direct_reads=settings.timeline_direct_reads,
        )
        feed = Feed(db, timelines, relations, settings)
        chat_shards = ChatClient(settings.chat_shards, timeout_s=settings.chat_call_timeout_s)
        moderation = Moderation(
            db, posts=posts, chat=chat_shards, revocations=revocations, users=users
        )
        identity.lift_ended_suspension = moderation.lift_ended
        ranked = None
        if features is not None and ranker is not None:
            ranked = RankedFeed(db, redis, feed, settings, features=features, ranker=ranker)
        latest_features = None
        if features is not None:  # where ranking runs: its training data accrues
            latest_features = LatestPageFeatures(redis, settings)
        store = open_store(
            settings.media_store,
            access_key=settings.media_s3_access_key,
            secret_key=settings.media_s3_secret_key,
        )
        return cls(
            settings=settings,
            db=db,
            redis=redis,
            kafka_probe=KafkaProbe(settings),
            keys=keys,
            revocations=revocations,
            invalidations=invalidations,
            users=users,
            relations=relations,
            identity=identity,
            profiles=Profiles(db, users, counters, relations),
            buckets=LocalBuckets(
                RateLimiter(redis),
                headroom=settings.rate_limit_headroom,
                max_age_s=settings.rate_limit_view_max_age_s,
            ),
            budgets=budgets(settings),
            persisted=PersistedQueryStore(redis, ttl_s=settings.persisted_query_ttl_s),
            counters=counters,
            graph=Graph(db, counters, relations),
            posts=posts,
            search=Search(db),
            timelines=timelines,
            feed=feed,
            ranked=ranked,
            latest_features=latest_features,
            analytics=Analytics(db, redis),
            hub=PubSubHub(redis),
            chat=Chat(db, redis, chat_shards),
            notifications=Notifications(db),
            sessions=Sessions(db, passwords, revocations),
            deletions=AccountDeletions(
                db, passwords, revocations, settings.account_deletion_grace_s
            ),
            media=Media(db, store, redis, settings),
            stories=Stories(db, settings.story_lifetime_s),
            moderation=moderation,
            exports=DataExports(db, store, settings),
        )

    @property
    def readiness(self) -> Readiness:
        return Readiness(self.db, self.redis, self.kafka_probe, self.settings.readiness_timeout_s)

    @property
    def query_limits(self) -> QueryLimits:
        return QueryLimits.from_settings(self.settings)

    async def verify(self, authorization: str | None) -> AccessClaims | None:
        """`Bearer <jwt>` → claims with a valid signature and lifetime, not yet checked
        against revocations; no header → anonymous (None)."""
        if authorization is None or not authorization.strip():
            return None
        scheme, _, token = authorization.strip().partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise Unauthenticated("Authorization must be 'Bearer <access token>'")
        await self.keys.refresh_if_stale()
        return await self.keys.verify(token.strip())

    async def authenticate(self, authorization: str | None) -> AccessClaims | None:
        """`Bearer <jwt>` → verified, unrevoked claims; no header → anonymous (None)."""
        claims = await self.verify(authorization)
        if claims is not None:
            await self.revocations.check(claims)
        return claims

    async def admit(
        self, client_ip: str | None, claims: AccessClaims | None, *, mutation: bool
    ) -> None:
        """Check one operation's token against revocations and charge its rate limits.

        Most operations wait for nothing: the revocation mirror answers from memory, and a
        bucket far from its limit admits at once (`gateway/limits/local_buckets.py`). What must ask
        Redis goes at once, so an operation waits for one round trip at most. A revoked
        token's error wins over a spent budget's; a revoked token's attempt is charged
        like any other.
        """
        waits: list[Awaitable[None]] = []
        revoked = False
        if claims is not None:
            known = self.revocations.known(claims)
            if known is None:
                waits.append(self.revocations.check(claims))
            revoked = bool(known)
        if self.settings.rate_limits_enabled:
            for budget, subject in self.operation_budgets(client_ip, claims, mutation=mutation):
                if not self.buckets.try_admit(budget, subject):
                    waits.append(self.charge(budget, subject))
        if revoked:
            if waits:
                await asyncio.gather(*waits, return_exceptions=True)
            raise Unauthenticated("access token was revoked")
        if not waits:
            return
        outcomes = await asyncio.gather(*waits, return_exceptions=True)
        for outcome in outcomes:
            if isinstance(outcome, BaseException):
                raise outcome

    async def charge(self, budget: Budget, subject: str, cost: int = 1) -> None:
        """Take from a rate-limit budget, waiting for Redis; raise `RateLimited` when it is
        spent.

        Redis being down fails open: rate limits protect the service, and refusing every
        request because the limiter is unreachable would be the outage they exist to stop.
        """
        if not self.settings.rate_limits_enabled:
            return
        try:
            decision = await self.buckets.take(budget, subject, cost)
        except Unavailable as exc:
            self.rate_limit_failures += 1
            log.warning("rate limit %s not enforced: %s", budget.name, exc)
            return
        if not decision.allowed:
            self.metrics.rate_limited(budget.name)
            raise RateLimited(
                f"rate limit exceeded ({budget.name}); retry in {decision.retry_after_s:.1f}s",
                decision.retry_after_s,
            )

    def operation_budgets(
        self, client_ip: str | None, claims: AccessClaims | None, *, mutation: bool
    ) -> list[tuple[Budget, str]]:
        """The buckets one operation is charged to: the client's IP budget, and the user's
        when signed in; mutation budgets for mutations, query budgets for everything else.
        HTTP requests and WebSocket operations pay the same."""
        budgets = self.budgets
        charged = [
            (budgets.ip_mutations if mutation else budgets.ip_queries, client_ip or "unknown")
        ]
        if claims is not None:
            budget = budgets.user_mutations if mutation else budgets.user_queries
            charged.append((budget, str(claims.user_id)))
        return charged

    def start_metrics(self) -> None:
        """Publish this replica's own counts as metrics; call from its event loop."""
        self.metrics.start(self.metric_snapshot)

    def metric_snapshot(self) -> tuple[dict[str, int], dict[str, int]]:
        users = self.users.stats
        counts = {
            "user_cache_local_hit": self.users.local.stats.hits,
            "user_cache_redis_hit": users.redis_hits,
            "user_cache_database_load": users.database_loads,
            "user_cache_invalidation": self.users.local.stats.invalidations,
            "post_cache_hit": self.posts.cache.stats.hits,
            "post_cache_miss": self.posts.cache.stats.misses,
            "cache_invalidation_feed_lost": self.invalidations.lost,
            "timeline_read_direct": self.timelines.direct_reads,
            "timeline_read_ray": self.timelines.ray_reads,
            "rate_limit_unenforced": self.rate_limit_failures + self.buckets.debits_lost,
            "rate_limit_admitted_at_once": self.buckets.admitted_at_once,
            "rate_limit_overrun": self.buckets.overruns,
            "revocation_mirror_lost": self.revocations.lost_sync,
            "subscription_event_executed": SHARED_EVENTS.executed,
            "subscription_event_shared": SHARED_EVENTS.reused,
            "subscriber_overflow": self.hub.dropped,
            "analytics_event_refused": self.analytics.refused,
            "websocket_cap_unenforced": (
                self.socket_leases.unenforced if self.socket_leases is not None else 0
            ),
        }
        in_flight = self.admission.in_flight if self.admission is not None else 0
        gauges = {"websockets": len(self.websockets), "http_requests": in_flight}
        return counts, gauges

    async def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        await self.metrics.stop()
        with contextlib.suppress(Exception):
            await self.buckets.close()
        with contextlib.suppress(Exception):
            await self.revocations.close()
        with contextlib.suppress(Exception):
            await self.invalidations.close()
        with contextlib.suppress(Exception):
            await self.hub.close()
        with contextlib.suppress(Exception):
            await self.timelines.close()
        if self.latest_features is not None:
            await self.latest_features.close()
        await self.kafka_probe.close()
        await self.redis.aclose()
        await self.db.close()
