"""Nova's configuration: read once from the environment, validated, typed, with units in names.

Every external part is reached through a URL (`NOVA_DATABASE_URL`, `NOVA_REDIS_URL`,
`NOVA_KAFKA_BOOTSTRAP`, `RAY_ADDRESS`). The embedded stack (`nova up`) only decides what
those URLs point at when they are unset; nothing else in Nova knows the difference.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

T = TypeVar("T")

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}


def _parse_bool(name: str, raw: str) -> bool:
    value = raw.strip().lower()
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise ValueError(f"{name}={raw!r}: expected one of {sorted(_TRUE | _FALSE)}")


def _parse_number(cast: Callable[[str], T]) -> Callable[[str, str], T]:
    def parse(name: str, raw: str) -> T:
        try:
            return cast(raw.strip())
        except ValueError:
            raise ValueError(f"{name}={raw!r}: expected a {cast.__name__}") from None

    return parse


def _parse_str(name: str, raw: str) -> str:
    value = raw.strip()
    if not value:
        raise ValueError(f"{name} is set but empty")
    return value


_PARSERS: dict[type, Callable[[str, str], Any]] = {
    bool: _parse_bool,
    int: _parse_number(int),
    float: _parse_number(float),
    str: _parse_str,
}


@dataclass(frozen=True)
class Settings:
    """Typed settings; `Settings.from_env()` builds one, `env_name(field)` names its variable."""

    database_url: str = "postgresql://nova@127.0.0.1:20432/nova"
    redis_url: str = "redis://127.0.0.1:20379/0"
    kafka_bootstrap: str = "127.0.0.1:20092"
    # Behind PgBouncer in transaction mode, LISTEN and migrations need a direct (or
    # session-mode) connection, and prepared statements must not be cached (size 0).
    database_direct_url: str | None = None
    pg_statement_cache_size: int = 100

    # PostgreSQL: every wait is bounded.
    pg_pool_min_size: int = 1
    pg_pool_max_size: int = 10
    pg_connect_timeout_s: float = 5.0
    pg_acquire_timeout_s: float = 5.0
    pg_command_timeout_s: float = 10.0
    pg_statement_timeout_ms: int = 10_000

    # Redis. Each process keeps at most `redis_max_connections`; a command that finds them
    # all busy waits up to `redis_timeout_s` for one (it used to fail at once).
    redis_timeout_s: float = 2.0
    redis_max_connections: int = 100

    # Kafka. Idempotence needs InitProducerId v1+, which the embedded broker lacks;
    # consumers deduplicate by event id either way, so correctness never depends on it.
    kafka_idempotence: bool = True
    kafka_request_timeout_ms: int = 5_000
    kafka_session_timeout_ms: int = 6_000
    kafka_heartbeat_interval_ms: int = 300
    kafka_rebalance_timeout_ms: int = 3_000
    kafka_client_id: str = "nova"
    kafka_replication_factor: int = 1
    # How long a fetch may wait for data. Apache Kafka answers early when data arrives, so
    # this only bounds idle polling; the embedded broker does not, so there it is latency.
    kafka_fetch_max_wait_ms: int = 500
    # A consumer's fetch wait while records flow (0: the same as idle). For brokers that
    # hold a fetch for its whole wait even when records are there (`storage.kafka.fetch_pacing`).
    kafka_fetch_busy_wait_ms: int = 0
    # Caps the catalogue's partition counts for topics Nova creates (0: no cap). The
    # embedded single-node broker uses 2; a real cluster keeps the catalogue's counts.
    kafka_max_partitions: int = 0

    # Outbox and relay.
    outbox_retention_s: int = 7 * 24 * 3600
    outbox_purge_interval_s: int = 300
    relay_count: int = 2
    relay_batch_size: int = 500
    # Batches one relay has in flight at once (each holds its own slots).
    relay_slot_concurrency: int = 2
    relay_poll_interval_ms: int = 500
    relay_max_backoff_ms: int = 5_000
    broker_check_interval_ms: int = 1_000

    # Consumers.
    consumer_batch_size: int = 500
    consumer_poison_attempts: int = 3
    consumer_max_backoff_ms: int = 5_000
    # Fetches of a partition repeated when its offsets jump, before the gap is believed
    # (`storage.kafka.offset_gaps`: the embedded broker can show a later batch first).
    consumer_gap_rereads: int = 5

    # Gateway.
    readiness_timeout_s: float = 1.0
    gateway_replicas: int = 1
    # Requests and open WebSockets one gateway replica takes at once (Serve counts both).
    gateway_max_ongoing_requests: int = 5_000
    # GraphQL HTTP requests one replica works on at once; beyond it, 503 with Retry-After.
    gateway_max_in_flight: int = 256
    # Requests Serve's proxy queues for a replica slot; beyond it Serve answers 503 itself.
    gateway_max_queued_requests: int = 1_000
    # Serve's access line per request in the gateway replica's log. Off: at 700 requests/s
    # it was about 3% of the replica's CPU; requests are counted by operation and status in
    # the gateway's metrics, and HAProxy can log each one (`option httplog`) for an operator.
    gateway_access_log: bool = False
    log_level: str = "INFO"
    # A process whose event loop stalls this long logs it, with the GC pauses inside.
    stall_warn_ms: float = 200.0
    # Where clients reach Nova; links in mail point here.
    public_url: str = "http://127.0.0.1:8000"
    # Fernet key (urlsafe base64 of 32 bytes) that encrypts secrets at rest: signing keys
    # in PostgreSQL and one-time tokens in outbox events. Required by the gateway and mail.
    secret_key: str | None = None

    # Identity.
    access_token_ttl_s: int = 15 * 60
    refresh_token_ttl_s: int = 30 * 24 * 3600
    password_reset_ttl_s: int = 3600
    email_verification_ttl_s: int = 48 * 3600
    jwt_issuer: str = "nova"
    jwt_leeway_s: int = 10
    # Argon2id cost; raising it makes stored hashes rehash at their owner's next login.
    argon2_time_cost: int = 3
    argon2_memory_kib: int = 65_536
    argon2_parallelism: int = 2
    signing_key_refresh_s: float = 30.0

    # Mail: the mail consumer delivers reset and verification messages here.
    smtp_url: str = "smtp://127.0.0.1:20025"
    smtp_timeout_s: float = 10.0
    mail_from: str = "Nova <no-reply@nova.localhost>"

    # Query limits, applied before execution (QUERY_TOO_COMPLEX).
    query_max_depth: int = 10
    query_max_aliases: int = 15
    query_max_tokens: int = 2_000
    query_max_cost: int = 5_000
    # A list field's cost multiplies by `first`/`last`; a list without them costs this.
    query_default_list_size: int = 100
    query_document_cache_size: int = 1_000
    max_request_bytes: int = 1_048_576
    introspection: bool = True
    # Production: only persisted (registered) query hashes are executed.
    persisted_queries_only: bool = False
    persisted_query_ttl_s: int = 30 * 24 * 3600

    # Rate limits (token buckets in Redis): sustained per-second rate and burst.
    rate_limits_enabled: bool = True
    rate_user_queries_per_s: float = 50.0
    rate_user_queries_burst: int = 200
    rate_user_mutations_per_s: float = 10.0
    rate_user_mutations_burst: int = 40
    rate_ip_queries_per_s: float = 100.0
    rate_ip_queries_burst: int = 400
    rate_ip_mutations_per_s: float = 20.0
    rate_ip_mutations_burst: int = 80
    rate_login_per_s: float = 0.1
    rate_login_burst: int = 10
    # A replica admits an operation without waiting for Redis while its last view of the
    # bucket keeps more than this share of the burst spare (1 or more: always wait), and
    # while that view is at most this old (gateway/limits/local_buckets.py).
    rate_limit_headroom: float = 0.25
    rate_limit_view_max_age_s: float = 2.0
    # Honour X-Forwarded-For (only behind a proxy that sets it).
    trust_forwarded_for: bool = False

    # User cache: in-process LRU in each replica, then Redis, then PostgreSQL.
    user_cache_size: int = 10_000
    user_cache_ttl_s: float = 60.0
    user_redis_ttl_s: int = 3600
    # Posts (edited or deleted: dropped in every replica) and per-viewer facts (who is
    # blocked either way; whether they follow an author merged at read time), in-process
    # in each replica (gateway/services/caches.py, gateway/services/relations.py).
    post_cache_size: int = 20_000
    post_cache_ttl_s: float = 300.0
    viewer_cache_size: int = 10_000
    viewer_cache_ttl_s: float = 60.0

    # Counter shards (likes, comments, shares, follower counts): how many, how many likes
    # one group commit takes, when idle keys leave memory, how often keys in use are
    # re-read (which bounds the effect of a lost update notice), and the call timeout.
    counter_shards: int = 4
    counter_max_batch: int = 1_000
    counter_idle_ttl_s: float = 300.0
    counter_refresh_s: float = 30.0
    counter_call_timeout_s: float = 5.0

    # Home timelines (TimelineShard actors): how many shards, entries kept per user, when an
    # idle timeline leaves memory, who is fanned out to, and the Ray call timeout. Authors
    # with more followers than `fanout_max_followers` are merged in at read time instead;
    # followers not seen for `inactive_after_days` are skipped and rebuilt when they return.
    timeline_shards: int = 4
    timeline_capacity: int = 800
    timeline_idle_ttl_s: float = 600.0
    timeline_call_timeout_s: float = 5.0
    # Page reads over each shard's direct channel instead of Ray calls (actors/read_channel.py).
    timeline_direct_reads: bool = True
    fanout_max_followers: int = 10_000
    inactive_after_days: int = 30
    feed_backfill_posts: int = 50

    # Chat rooms (ChatShard actors): how many shards, the Ray call timeout, and how many
    # messages a slow WebSocket subscriber may have waiting before it is disconnected.
    chat_shards: int = 2
    chat_call_timeout_s: float = 5.0
    chat_subscriber_queue: int = 1_000

    # Ranking. Model artifacts live in `model_store` (a directory every Ranker replica can
    # read); `ranking_model` is the model name whose route serves `feed(mode: RANKED)`;
    # gateways re-read routes every `route_refresh_s`. Candidates: the newest
    # `ranking_in_network` timeline entries plus up to `ranking_out_of_network` posts liked
    # by followees or trending; a ranked list is kept `ranking_session_ttl_s` for paging.
    model_store: str = "/var/lib/nova/models"
    # Serve's gRPC ingress (Ranker.Rank, FeatureStore.GetFeatures); 0 turns it off.
    grpc_port: int = 9000
    ranking_model: str = "home"
    route_refresh_s: float = 0.5
    ranking_in_network: int = 300
    ranking_out_of_network: int = 100
    ranking_session_ttl_s: int = 1_800
    ranking_call_timeout_s: float = 2.0
    ranker_replicas: int = 1
    feature_store_replicas: int = 1
    # Online features: engagement counts halve every `feature_half_life_s`; a post's features
    # expire `feature_post_ttl_s` after their last update, a viewer's affinities likewise.
    feature_half_life_s: float = 86_400.0
    feature_post_ttl_s: int = 14 * 24 * 3600
    feature_affinity_ttl_s: int = 60 * 24 * 3600
    # Notifications: acts older than this make none (a consumer group that starts on a
    # retained log, as on the upgrade that adds it, does not flood inboxes with old news),
    # and only acts newer than `notification_live_s` are pushed live.
    notification_max_age_s: int = 7 * 24 * 3600
    notification_live_s: int = 300

    def __post_init__(self) -> None:
        positive = [
            "notification_max_age_s",
            "notification_live_s",
            "pg_pool_max_size",
            "pg_connect_timeout_s",
            "pg_acquire_timeout_s",
            "pg_command_timeout_s",
            "pg_statement_timeout_ms",
            "redis_timeout_s",
            "redis_max_connections",
            "kafka_request_timeout_ms",
            "kafka_session_timeout_ms",
            "kafka_heartbeat_interval_ms",
            "kafka_rebalance_timeout_ms",
            "kafka_replication_factor",
            "kafka_fetch_max_wait_ms",
            "outbox_retention_s",
            "outbox_purge_interval_s",
            "relay_count",
            "relay_batch_size",
            "relay_slot_concurrency",
            "relay_poll_interval_ms",
            "relay_max_backoff_ms",
            "broker_check_interval_ms",
            "consumer_batch_size",
            "consumer_poison_attempts",
            "consumer_max_backoff_ms",
            "consumer_gap_rereads",
            "readiness_timeout_s",
            "gateway_replicas",
            "gateway_max_ongoing_requests",
            "gateway_max_in_flight",
            "gateway_max_queued_requests",
            "access_token_ttl_s",
            "refresh_token_ttl_s",
            "password_reset_ttl_s",
            "email_verification_ttl_s",
            "argon2_time_cost",
            "argon2_memory_kib",
            "argon2_parallelism",
            "signing_key_refresh_s",
            "smtp_timeout_s",
            "query_max_depth",
            "query_max_aliases",
            "query_max_tokens",
            "query_max_cost",
            "query_default_list_size",
            "query_document_cache_size",
            "max_request_bytes",
            "persisted_query_ttl_s",
            "rate_user_queries_per_s",
            "rate_user_queries_burst",
            "rate_user_mutations_per_s",
            "rate_user_mutations_burst",
            "rate_ip_queries_per_s",
            "rate_ip_queries_burst",
            "rate_ip_mutations_per_s",
            "rate_ip_mutations_burst",
            "rate_login_per_s",
            "rate_login_burst",
            "rate_limit_view_max_age_s",
            "user_cache_size",
            "user_cache_ttl_s",
            "user_redis_ttl_s",
            "post_cache_size",
            "post_cache_ttl_s",
            "viewer_cache_size",
            "viewer_cache_ttl_s",
            "counter_shards",
            "counter_max_batch",
            "counter_idle_ttl_s",
            "counter_refresh_s",
            "counter_call_timeout_s",
            "timeline_shards",
            "timeline_capacity",
            "timeline_idle_ttl_s",
            "timeline_call_timeout_s",
            "fanout_max_followers",
            "inactive_after_days",
            "feed_backfill_posts",
            "chat_shards",
            "chat_call_timeout_s",
            "chat_subscriber_queue",
            "route_refresh_s",
            "ranking_in_network",
            "ranking_out_of_network",
            "ranking_session_ttl_s",
            "ranking_call_timeout_s",
            "ranker_replicas",
            "feature_store_replicas",
            "feature_half_life_s",
            "feature_post_ttl_s",
            "feature_affinity_ttl_s",
        ]
        for name in positive:
            if getattr(self, name) <= 0:
                raise ValueError(f"{env_name(name)} must be > 0, got {getattr(self, name)!r}")
        if not 0 <= self.rate_limit_headroom < float("inf"):
            raise ValueError(
                f"NOVA_RATE_LIMIT_HEADROOM must be >= 0, got {self.rate_limit_headroom!r}"
            )
        if self.pg_pool_min_size < 0 or self.pg_pool_min_size > self.pg_pool_max_size:
            raise ValueError(
                f"{env_name('pg_pool_min_size')} must be between 0 and "
                f"{env_name('pg_pool_max_size')} ({self.pg_pool_max_size})"
            )
        if self.kafka_heartbeat_interval_ms >= self.kafka_session_timeout_ms:
            raise ValueError(
                f"{env_name('kafka_heartbeat_interval_ms')} must be below "
                f"{env_name('kafka_session_timeout_ms')}"
            )
        for name in ("database_url", "database_direct_url"):
            url = getattr(self, name)
            if url is not None and not url.startswith(("postgres://", "postgresql://")):
                raise ValueError(f"{env_name(name)} must be a postgresql:// URL")
        if not 0 <= self.grpc_port < 65536:
            raise ValueError(f"{env_name('grpc_port')} must be a port number (0: no gRPC)")
        if not 0 <= self.kafka_fetch_busy_wait_ms <= self.kafka_fetch_max_wait_ms:
            raise ValueError(
                f"{env_name('kafka_fetch_busy_wait_ms')} must be within 0.."
                f"{env_name('kafka_fetch_max_wait_ms')} ({self.kafka_fetch_max_wait_ms})"
            )
        if self.kafka_max_partitions < 0:
            raise ValueError(f"{env_name('kafka_max_partitions')} must be >= 0 (0: no cap)")
        if self.pg_statement_cache_size < 0:
            raise ValueError(f"{env_name('pg_statement_cache_size')} must be >= 0")
        if not self.redis_url.startswith(("redis://", "rediss://", "unix://")):
            raise ValueError(f"{env_name('redis_url')} must be a redis:// or rediss:// URL")
        if not self.smtp_url.startswith(("smtp://", "smtps://")):
            raise ValueError(f"{env_name('smtp_url')} must be an smtp:// or smtps:// URL")
        if self.jwt_leeway_s < 0:
            raise ValueError(f"{env_name('jwt_leeway_s')} must be >= 0")
        if self.stall_warn_ms <= 0:
            raise ValueError(f"{env_name('stall_warn_ms')} must be > 0")
        if self.log_level.upper() not in {"DEBUG", "INFO", "WARNING", "ERROR"}:
            raise ValueError(f"{env_name('log_level')} must be DEBUG, INFO, WARNING or ERROR")

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        """Build settings from `NOVA_*` variables; unset ones keep their defaults."""
        env = os.environ if environ is None else environ
        values: dict[str, Any] = {}
        for field in dataclasses.fields(cls):
            raw = env.get(env_name(field.name))
            if raw is None:
                continue
            parser = _PARSERS[_field_type(field)]
            values[field.name] = parser(env_name(field.name), raw)
        return cls(**values)

    @property
    def kafka_fetch_busy_wait(self) -> int:
        """A consumer's fetch wait while records flow: the busy wait if set, else the idle one."""
        return self.kafka_fetch_busy_wait_ms or self.kafka_fetch_max_wait_ms

    @property
    def direct_database_url(self) -> str:
        """The URL for LISTEN and migrations: the direct one if set, else the pooled one."""
        return self.database_direct_url or self.database_url

    def replace(self, **changes: Any) -> Settings:
        return dataclasses.replace(self, **changes)


def env_name(field: str) -> str:
    """The environment variable that sets `field`: `relay_count` → `NOVA_RELAY_COUNT`."""
    return "NOVA_" + field.upper()


def _field_type(field: dataclasses.Field[Any]) -> type:
    # With `from __future__ import annotations` the type is a string.
    name = field.type if isinstance(field.type, str) else field.type.__name__
    name = name.removesuffix(" | None")
    return {"bool": bool, "int": int, "float": float, "str": str}[name]
