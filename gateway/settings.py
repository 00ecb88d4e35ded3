"""The gateway's settings: tokens and passwords, query limits, rate limits, per-replica
caches and admission. Extends the actors' (the gateway calls every shard)."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

from actors.settings import ActorSettings
from storage.settings import NOT_NEGATIVE, env_name, setting


@dataclass(frozen=True)
class GatewaySettings(ActorSettings):
    """What one gateway replica needs besides the layers below it."""

    readiness_timeout_s: float = setting(
        1.0, "`/readyz`: PostgreSQL, Redis and Kafka must each answer within this"
    )
    gateway_max_in_flight: int = setting(
        256,
        "GraphQL HTTP requests one gateway replica works on at once; past it, 503 "
        "`UNAVAILABLE` with `Retry-After: 1`",
    )

    # Identity.
    access_token_ttl_s: int = setting(15 * 60, "access token lifetime")
    refresh_token_ttl_s: int = setting(30 * 24 * 3600, "refresh token and session lifetime")
    password_reset_ttl_s: int = setting(3600, "a mailed password-reset token's lifetime")
    email_verification_ttl_s: int = setting(48 * 3600, "a mailed verification token's lifetime")
    jwt_issuer: str = setting("nova", "the `iss` of access tokens")
    jwt_leeway_s: int = setting(10, "clock skew allowed when checking tokens", NOT_NEGATIVE)
    argon2_time_cost: int = setting(
        3, "Argon2id passes; raising a cost rehashes at each owner's next login"
    )
    argon2_memory_kib: int = setting(65_536, "Argon2id memory")
    argon2_parallelism: int = setting(2, "Argon2id lanes")
    signing_key_refresh_s: float = setting(
        30.0, "how often a replica re-reads the signing keys (rotations reach it within this)"
    )

    # Query limits, applied before execution (QUERY_TOO_COMPLEX).
    query_max_depth: int = setting(10, "deepest selection a document may have")
    query_max_aliases: int = setting(15, "aliases per document")
    query_max_tokens: int = setting(2_000, "lexical tokens per document")
    query_max_cost: int = setting(5_000, "a document's cost: list fields multiply by their size")
    query_default_list_size: int = setting(
        100, "the cost of a list field given no `first` or `last`"
    )
    query_document_cache_size: int = setting(1_000, "parsed documents cached per replica")
    query_document_cache_bytes: int = setting(
        32 * 1_048_576,
        "memory those documents may take, by estimate; documents that fail to parse or "
        "validate are kept apart, in at most a quarter of it",
    )
    max_request_bytes: int = setting(1_048_576, "largest request body (413 past it)")
    media_max_image_bytes: int = setting(20_971_520, "largest image upload (20 MiB)")
    media_max_video_bytes: int = setting(209_715_200, "largest video upload (200 MiB)")
    media_upload_ttl_s: int = setting(900, "how long an upload URL may be used")
    story_lifetime_s: float = setting(
        86_400.0, "how long a story is shown: it disappears from every read at its end"
    )
    media_public_recheck_s: float = setting(
        30.0,
        "how long a replica trusts that a post's media is public before it looks again (a "
        "deleted post's media stops being served within this)",
    )
    media_url_ttl_s: int = setting(
        3600,
        "how long a signed download URL of private media (a message's, a story's) stays "
        "valid, at least; it is rounded up so that URLs stay the same for a while and "
        "clients can cache the files",
    )
    introspection: bool = setting(True, "whether the schema may be introspected")
    graphiql: bool = setting(
        True,
        "serve GraphiQL at `/graphql` to browsers (a GET whose `Accept` ranks `text/html` "
        "first and that carries no query); off, it gets the GraphQL endpoint's answer (406 or "
        "400). Production: off",
    )
    persisted_queries_only: bool = setting(
        False, "production: execute only registered query hashes (`nova queries add`)"
    )
    persisted_query_ttl_s: int = setting(
        30 * 24 * 3600, "how long an automatic persisted query is kept"
    )

    # Rate limits (token buckets in Redis): sustained per-second rate and burst.
    rate_limits_enabled: bool = setting(True, "whether rate limits are enforced")
    rate_user_queries_per_s: float = setting(50.0, "queries per second per user")
    rate_user_queries_burst: int = setting(200, "query burst per user")
    rate_user_mutations_per_s: float = setting(10.0, "mutations per second per user")
    rate_user_mutations_burst: int = setting(40, "mutation burst per user")
    rate_ip_queries_per_s: float = setting(100.0, "queries per second per client IP")
    rate_ip_queries_burst: int = setting(400, "query burst per client IP")
    rate_ip_mutations_per_s: float = setting(20.0, "mutations per second per client IP")
    rate_ip_mutations_burst: int = setting(80, "mutation burst per client IP")
    rate_login_per_s: float = setting(0.1, "login, reset and verification mails per account")
    rate_login_burst: int = setting(10, "their burst")
    rate_reports_per_s: float = setting(0.01, "reports (`report`) per second per user (36 an hour)")
    rate_reports_burst: int = setting(10, "report burst per user")
    moderation_blocked_words: str | None = setting(
        None,
        "comma-separated words (case-insensitive, whole words) that hold a post or comment "
        "for review instead of publishing it",
    )
    moderation_blocked_domains: str | None = setting(
        None,
        "comma-separated domains whose links (the domain or any subdomain) hold a post or "
        "comment for review",
    )
    rate_limit_headroom: float = setting(
        0.25,
        "a replica admits without waiting for Redis while its last view of the bucket keeps "
        "more than this share of the burst spare (1 or more: always wait)",
        NOT_NEGATIVE,
    )
    rate_limit_view_max_age_s: float = setting(
        2.0, "and while that view is at most this old (`gateway.limits.local_buckets`)"
    )
    trusted_proxies: str | None = setting(
        None,
        "addresses or networks (comma-separated, e.g. `10.0.0.0/8,::1`) of the proxies in "
        "front of the gateway, whose `X-Forwarded-For` names the client; a request from any "
        "other address is the client's own. Unset: no proxy is trusted",
    )
    trust_forwarded_for: bool = setting(
        False,
        "trust the proxies on this machine (127.0.0.0/8 and ::1) when "
        "`NOVA_TRUSTED_PROXIES` is unset",
    )

    # Per-replica caches: users (then Redis, then PostgreSQL), posts, per-viewer facts.
    user_cache_size: int = setting(10_000, "users cached in each replica")
    user_cache_ttl_s: float = setting(60.0, "how long a replica keeps a user")
    user_redis_ttl_s: int = setting(3600, "how long Redis keeps a user")
    post_cache_size: int = setting(20_000, "posts cached in each replica")
    post_cache_ttl_s: float = setting(300.0, "how long a replica keeps a post")
    viewer_cache_size: int = setting(
        10_000, "viewers whose blocks and followed celebrities each replica keeps"
    )
    viewer_cache_ttl_s: float = setting(60.0, "how long a replica keeps them")
    # WebSocket connections (graphql-transport-ws).
    ws_max_per_ip: int = setting(
        200, "open WebSockets one client IP may hold, across all gateway replicas"
    )
    ws_max_per_user: int = setting(
        20, "open WebSockets one signed-in user may hold, across all gateway replicas"
    )
    ws_anonymous_idle_s: float = setting(
        60.0,
        "an anonymous WebSocket (or one whose token was revoked) with no operation running "
        "is closed after this",
    )
    chat_subscriber_queue: int = setting(
        1_000, "messages a slow WebSocket subscriber may have waiting before it is disconnected"
    )

    def check(self) -> None:
        super().check()
        for entry in proxy_networks(self.trusted_proxies):
            try:
                ipaddress.ip_network(entry, strict=False)
            except ValueError:
                raise ValueError(
                    f"{env_name('trusted_proxies')}: {entry!r} is not an address or network"
                ) from None


def proxy_networks(trusted_proxies: str | None) -> list[str]:
    """The entries of `NOVA_TRUSTED_PROXIES`, as written."""
    return [entry.strip() for entry in (trusted_proxies or "").split(",") if entry.strip()]
