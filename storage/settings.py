"""Nova's configuration: read once from the environment, validated, typed, with units in names.

Settings come in layers, one frozen dataclass per layer, each extending the one below it:
`StorageSettings` (here) ← `ranking.settings.RankingSettings` ←
`actors.settings.ActorSettings` ← `gateway.settings.GatewaySettings` ←
`deployments.settings.Settings`, which the app is assembled with. Code takes the layer it
belongs to, so storage cannot come to depend on a gateway knob. A field declares its
default, its bounds and its meaning in one place (`setting`); `NOVA_<FIELD>` sets it, parsed
by `parse_value` whatever the layer; `nova config` prints the table the docs carry.

Every external part is reached through a URL (`NOVA_DATABASE_URL`, `NOVA_REDIS_URL`,
`NOVA_KAFKA_BOOTSTRAP`, `RAY_ADDRESS`). The embedded stack (`nova up`) only decides what
those URLs point at when they are unset; nothing else in Nova knows the difference.
"""

from __future__ import annotations

import dataclasses
import inspect
import math
import os
import types
import typing
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any, Self, TypeVar

T = TypeVar("T")
PREFIX = "NOVA_"

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}


@dataclass(frozen=True)
class Bounds:
    """What a value must satisfy, checked when settings are built."""

    gt: float | None = None  # greater than
    ge: float | None = None  # at least
    le: float | None = None  # at most
    prefixes: tuple[str, ...] = ()  # a URL's accepted schemes
    choices: tuple[str, ...] = ()  # accepted values, case-insensitive

    def check(self, name: str, value: Any) -> None:
        if value is None:
            return
        if self.gt is not None and not value > self.gt:
            raise ValueError(f"{name} must be > {self.gt:g}, got {value!r}")
        if self.ge is not None and not value >= self.ge:
            raise ValueError(f"{name} must be >= {self.ge:g}, got {value!r}")
        if self.le is not None and not value <= self.le:
            raise ValueError(f"{name} must be <= {self.le:g}, got {value!r}")
        if self.prefixes and not str(value).startswith(self.prefixes):
            raise ValueError(f"{name} must be a {' or '.join(self.prefixes)} URL")
        if self.choices and str(value).upper() not in self.choices:
            raise ValueError(f"{name} must be {', '.join(self.choices[:-1])} or {self.choices[-1]}")

    def describe(self) -> str:
        parts = []
        if self.gt is not None:
            parts.append(f"> {self.gt:g}")
        if self.ge is not None:
            parts.append(f"≥ {self.ge:g}")
        if self.le is not None:
            parts.append(f"≤ {self.le:g}")
        parts += [f"{prefix}…" for prefix in self.prefixes]
        if self.choices:
            parts.append(" / ".join(self.choices))
        return ", ".join(parts)


POSITIVE = Bounds(gt=0)
NOT_NEGATIVE = Bounds(ge=0)


def setting(default: T, doc: str, bounds: Bounds | None = None) -> T:
    """A settings field: its default, what it means (for the docs' table) and its bounds.
    Numbers must be positive unless `bounds` says otherwise; flags and text are free."""
    if bounds is None:
        number = isinstance(default, int | float) and not isinstance(default, bool)
        bounds = POSITIVE if number else Bounds()
    metadata = {"doc": doc, "bounds": bounds}
    return dataclasses.field(default=default, metadata=metadata)  # type: ignore[no-any-return]


def env_name(field: str, prefix: str = PREFIX) -> str:
    """The environment variable that sets `field`: `relay_count` → `NOVA_RELAY_COUNT`."""
    return prefix + field.upper()


def parse_value(name: str, raw: str, kind: type) -> Any:
    """The one parser of every `NOVA_*` variable: `raw` as `kind` (bool, int, float, str),
    or a `ValueError` that names the variable."""
    text = raw.strip()
    if kind is bool:
        if text.lower() in _TRUE:
            return True
        if text.lower() in _FALSE:
            return False
        raise ValueError(f"{name}={raw!r}: expected one of {sorted(_TRUE | _FALSE)}")
    if kind in (int, float):
        try:
            value = kind(text)
        except ValueError:
            raise ValueError(f"{name}={raw!r}: expected a {kind.__name__}") from None
        if isinstance(value, float) and not math.isfinite(value):
            raise ValueError(f"{name}={raw!r}: expected a finite number")
        return value
    if not text:
        raise ValueError(f"{name} is set but empty")
    return text


@dataclass(frozen=True)
class LayeredSettings:
    """The machinery every layer shares: bounds checked on construction, `from_env`,
    `replace`, and the fields a layer declares itself (`own_fields`)."""

    def __post_init__(self) -> None:
        for field in dataclasses.fields(self):
            bounds = field.metadata.get("bounds")
            if bounds is not None:
                bounds.check(env_name(field.name), getattr(self, field.name))
        self.check()

    def check(self) -> None:
        """Rules between fields; a layer that has some extends this and calls super()."""

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, *, prefix: str = PREFIX) -> Self:
        """Build settings from `NOVA_*` variables; unset ones keep their defaults."""
        env = os.environ if environ is None else environ
        values: dict[str, Any] = {}
        for field in dataclasses.fields(cls):
            name = env_name(field.name, prefix)
            raw = env.get(name)
            if raw is not None:
                values[field.name] = parse_value(name, raw, field_type(cls, field.name))
        return cls(**values)

    def replace(self, **changes: Any) -> Self:
        return dataclasses.replace(self, **changes)

    @classmethod
    def own_fields(cls) -> Iterator[dataclasses.Field[Any]]:
        """The fields this class declares, in order (not those of the layers below)."""
        own = inspect.get_annotations(cls)
        return (field for field in dataclasses.fields(cls) if field.name in own)


def field_type(cls: type, name: str) -> type:
    """The scalar type of a field (`int` for `int | None`)."""
    hint = typing.get_type_hints(cls)[name]
    if isinstance(hint, types.UnionType):
        hint = next(arg for arg in typing.get_args(hint) if arg is not type(None))
    if hint not in (bool, int, float, str):
        raise TypeError(f"setting {name} has unsupported type {hint!r}")
    return typing.cast(type, hint)


@dataclass(frozen=True)
class StorageSettings(LayeredSettings):
    """PostgreSQL, Redis and Kafka, the outbox relay, consumers, logs and secrets at rest."""

    database_url: str = setting(
        "postgresql://nova@127.0.0.1:20432/nova",
        "PostgreSQL; the embedded stack's unless set",
        Bounds(prefixes=("postgres://", "postgresql://")),
    )
    redis_url: str = setting(
        "redis://127.0.0.1:20379/0",
        "Redis; the embedded stack's unless set",
        Bounds(prefixes=("redis://", "rediss://", "unix://")),
    )
    kafka_bootstrap: str = setting(
        "127.0.0.1:20092", "Kafka bootstrap servers; the embedded broker unless set"
    )
    database_direct_url: str | None = setting(
        None,
        "a direct or session-mode PostgreSQL URL for LISTEN and migrations when "
        "`NOVA_DATABASE_URL` goes through PgBouncer in transaction mode (default: that URL)",
        Bounds(prefixes=("postgres://", "postgresql://")),
    )
    pg_statement_cache_size: int = setting(
        100, "prepared statements cached per connection; 0 behind PgBouncer", NOT_NEGATIVE
    )

    pg_pool_min_size: int = setting(1, "PostgreSQL connections each process keeps", NOT_NEGATIVE)
    pg_pool_max_size: int = setting(10, "PostgreSQL connections each process may open")
    pg_connect_timeout_s: float = setting(5.0, "bound on opening a PostgreSQL connection")
    pg_acquire_timeout_s: float = setting(5.0, "bound on waiting for a pooled connection")
    pg_command_timeout_s: float = setting(10.0, "client-side bound on one statement")
    pg_statement_timeout_ms: int = setting(10_000, "server-side `statement_timeout`")

    redis_timeout_s: float = setting(
        2.0, "bound on a Redis command, and on waiting for a free connection"
    )
    redis_max_connections: int = setting(100, "Redis connections per process")

    kafka_idempotence: bool = setting(
        True,
        "aiokafka's idempotent producer (`false` for the embedded broker, which lacks "
        "InitProducerId v1+; consumers deduplicate by event id either way)",
    )
    kafka_request_timeout_ms: int = setting(5_000, "bound on one Kafka request")
    kafka_session_timeout_ms: int = setting(6_000, "consumer-group session timeout")
    kafka_heartbeat_interval_ms: int = setting(
        300, "consumer heartbeats; below the session timeout"
    )
    kafka_rebalance_timeout_ms: int = setting(3_000, "consumer-group rebalance timeout")
    kafka_replication_factor: int = setting(1, "for topics Nova creates; 3 on Apache Kafka")
    kafka_fetch_max_wait_ms: int = setting(
        500,
        "how long a consumer's fetch may wait at the broker (`100` on the embedded broker, "
        "which holds a fetch for its whole wait, so there it is the latency of every hop)",
    )
    kafka_fetch_busy_wait_ms: int = setting(
        0,
        "a shorter fetch wait while a consumer group's records flow, back to the long one "
        "after a quiet second; 0: off (`storage.kafka.fetch_pacing`)",
        NOT_NEGATIVE,
    )
    kafka_max_partitions: int = setting(
        0,
        "caps the catalogue's partition counts for topics Nova creates; 0: no cap (the "
        "embedded single-node broker uses 2)",
        NOT_NEGATIVE,
    )
    kafka_security_protocol: str = setting(
        "PLAINTEXT",
        "how Kafka clients reach the brokers: `SASL_SSL` (SCRAM over TLS) for Apache Kafka in "
        "production, `SSL` for TLS alone; the embedded broker speaks only `PLAINTEXT`",
        Bounds(choices=("PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL")),
    )
    kafka_sasl_mechanism: str = setting(
        "SCRAM-SHA-512",
        "with `SASL_SSL` or `SASL_PLAINTEXT` (`PLAIN` only over TLS: it sends the password)",
        Bounds(choices=("SCRAM-SHA-256", "SCRAM-SHA-512", "PLAIN")),
    )
    kafka_sasl_username: str | None = setting(None, "the SASL user; needed with `SASL_*`")
    kafka_sasl_password: str | None = setting(None, "that user's password")
    kafka_tls_ca_file: str | None = setting(
        None,
        "PEM file of the CA that signed the brokers' certificates, with `SSL` or `SASL_SSL` "
        "(unset: the system's CAs); brokers must be named by their certificates",
    )
    kafka_tls_cert_file: str | None = setting(
        None, "a client certificate (PEM) for brokers that ask for one (mutual TLS)"
    )
    kafka_tls_key_file: str | None = setting(None, "that certificate's key (PEM)")

    outbox_retention_s: int = setting(
        7 * 24 * 3600, "how long published events are kept for re-driving"
    )
    outbox_purge_interval_s: int = setting(300, "how often published events past it go")
    relay_batch_size: int = setting(500, "outbox rows one relay publishes per transaction")
    relay_slot_concurrency: int = setting(
        2, "batches one relay has in flight at once, each holding its own slots"
    )
    relay_poll_interval_ms: int = setting(500, "how often an idle relay looks without a NOTIFY")
    relay_max_backoff_ms: int = setting(5_000, "the relay's longest wait between retries")
    broker_check_interval_ms: int = setting(
        1_000, "how often a relay checks the broker for lost data"
    )

    consumer_batch_size: int = setting(500, "records a consumer applies per transaction")
    consumer_poison_attempts: int = setting(3, "failures of one event before it is dead-lettered")
    consumer_max_backoff_ms: int = setting(5_000, "a consumer's longest wait between retries")
    consumer_gap_rereads: int = setting(
        5,
        "fetches a consumer repeats when a partition's offsets jump before it takes the gap "
        "as real (`storage.kafka.offset_gaps`)",
    )

    log_level: str = setting(
        "INFO",
        "log level of every Nova process",
        Bounds(choices=("DEBUG", "INFO", "WARNING", "ERROR")),
    )
    stall_warn_ms: float = setting(
        200.0, "an event-loop stall this long is logged, with the GC pauses inside it"
    )
    otlp_endpoint: str | None = setting(
        None,
        "an OTLP/HTTP collector (`http://host:4318`; spans go to `/v1/traces` under it) to "
        "export spans to, with the trace ids Nova logs; unset: no export (`storage.otel`)",
        Bounds(prefixes=("http://", "https://")),
    )
    otlp_headers: str | None = setting(
        None, "headers sent with every export, `name=value,name2=value2` (a vendor's API key)"
    )
    otlp_sample_ratio: float = setting(
        1.0,
        "share of traces exported, chosen by trace id so every process agrees",
        Bounds(ge=0, le=1),
    )
    media_store: str = setting(
        "/var/lib/nova/media",
        "where uploads and their variants are kept: a directory every gateway replica and "
        "media task reaches (a shared volume on a cluster; `<state dir>/media` on the "
        "embedded stack), or an S3 bucket, `s3://bucket[/prefix]` with optional "
        "`?endpoint=http://host:port` (an S3-compatible server), `&region=` and "
        "`&path_style=1` (`storage.media_store.open_store`)",
    )
    media_s3_access_key: str | None = setting(
        None,
        "access key of an `s3://` media store; unset: boto3's own credential chain (AWS's "
        "variables, `~/.aws`, an instance role)",
    )
    media_s3_secret_key: str | None = setting(
        None, "secret key that goes with `NOVA_MEDIA_S3_ACCESS_KEY`"
    )
    secret_key: str | None = setting(
        None,
        "Fernet key (urlsafe base64 of 32 bytes) sealing secrets at rest: signing keys in "
        "PostgreSQL and one-time tokens in outbox events; generated once by `nova up`",
    )

    def check(self) -> None:
        super().check()
        if self.pg_pool_min_size > self.pg_pool_max_size:
            raise ValueError(
                f"{env_name('pg_pool_min_size')} must be between 0 and "
                f"{env_name('pg_pool_max_size')} ({self.pg_pool_max_size})"
            )
        if self.kafka_heartbeat_interval_ms >= self.kafka_session_timeout_ms:
            raise ValueError(
                f"{env_name('kafka_heartbeat_interval_ms')} must be below "
                f"{env_name('kafka_session_timeout_ms')}"
            )
        if self.kafka_fetch_busy_wait_ms > self.kafka_fetch_max_wait_ms:
            raise ValueError(
                f"{env_name('kafka_fetch_busy_wait_ms')} must be within 0.."
                f"{env_name('kafka_fetch_max_wait_ms')} ({self.kafka_fetch_max_wait_ms})"
            )
        self._check_kafka_security()

    def _check_kafka_security(self) -> None:
        """SASL needs credentials, TLS files need TLS, and a password never travels bare."""
        protocol = self.kafka_security_protocol.upper()
        sasl, tls = protocol.startswith("SASL_"), protocol.endswith("SSL")
        credentials = ("kafka_sasl_username", "kafka_sasl_password")
        given = [name for name in credentials if getattr(self, name)]
        if sasl and len(given) < len(credentials):
            raise ValueError(
                f"{env_name('kafka_security_protocol')}={protocol} needs "
                f"{env_name(credentials[0])} and {env_name(credentials[1])}"
            )
        if given and not sasl:
            raise ValueError(
                f"{env_name(given[0])} is used only with "
                f"{env_name('kafka_security_protocol')}=SASL_SSL (or SASL_PLAINTEXT)"
            )
        if protocol == "SASL_PLAINTEXT" and self.kafka_sasl_mechanism.upper() == "PLAIN":
            raise ValueError(
                f"{env_name('kafka_sasl_mechanism')}=PLAIN sends the password: use it with "
                f"{env_name('kafka_security_protocol')}=SASL_SSL"
            )
        files = ("kafka_tls_ca_file", "kafka_tls_cert_file", "kafka_tls_key_file")
        named = [name for name in files if getattr(self, name)]
        if named and not tls:
            raise ValueError(
                f"{env_name(named[0])} is used only with "
                f"{env_name('kafka_security_protocol')}=SSL or SASL_SSL"
            )
        if bool(self.kafka_tls_cert_file) != bool(self.kafka_tls_key_file):
            raise ValueError(
                f"{env_name('kafka_tls_cert_file')} and {env_name('kafka_tls_key_file')} "
                "go together"
            )

    @property
    def kafka_fetch_busy_wait(self) -> int:
        """A consumer's fetch wait while records flow: the busy wait if set, else the idle one."""
        return self.kafka_fetch_busy_wait_ms or self.kafka_fetch_max_wait_ms

    @property
    def direct_database_url(self) -> str:
        """The URL for LISTEN and migrations: the direct one if set, else the pooled one."""
        return self.database_direct_url or self.database_url
