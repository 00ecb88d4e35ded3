"""The settings Nova is assembled with: every layer's, plus the deployment's own (replica
counts, Serve's knobs) and the embedded stack's (where it lives, which ports it serves).

`Settings` composes the layers: `GatewaySettings` (which extends the actors', ranking's
and storage's) and `StackSettings`. `nova config` prints them all as the table in
docs/operations.md, layer by layer (`settings_table`).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from actors.settings import ActorSettings
from gateway.settings import GatewaySettings
from ranking.settings import RankingSettings
from storage.settings import Bounds, LayeredSettings, StorageSettings, env_name, setting

PORT = Bounds(ge=1, le=65_535)


@dataclass(frozen=True)
class StackSettings(LayeredSettings):
    """Where an embedded stack keeps its state and the ports it serves on."""

    state_dir: str = setting(
        "",
        "where the embedded stack keeps its data, logs and secrets (default: /var/lib/nova as "
        "root, else $XDG_STATE_HOME/nova)",
    )
    port_base: int = setting(
        20_000,
        "the embedded servers' ports are offsets from it (PostgreSQL +432, Redis +379, the "
        "broker +92, Ray +637, SMTP +25, Prometheus +909)",
        Bounds(ge=1024, le=30_000),
    )
    http_port: int = setting(8000, "GraphQL over HTTP and WebSocket", PORT)
    dashboard_port: int = setting(8265, "the Ray dashboard", PORT)
    grpc_port: int = setting(
        9000,
        "Serve's gRPC ingress (Ranker.Rank, FeatureStore.GetFeatures); 0 turns it off",
        Bounds(ge=0, le=65_535),
    )

    redis_max_memory_mb: int = setting(
        1_024,
        "the embedded Redis's memory limit (`maxmemory`, policy `noeviction`): past it Redis "
        "refuses writes, which clients see as UNAVAILABLE and consumers retry, instead of "
        "evicting rate limits, features or timelines",
        Bounds(ge=16),
    )
    tls: bool = setting(
        False,
        "the embedded stack's parts talk TLS with certificates from `<state dir>/secrets/tls` "
        "(`nova certs create`, made at start when missing): PostgreSQL only over TLS "
        "(`sslmode=verify-full`, client certificate), Redis only on TLS (`rediss://`, mutual), "
        "Ray's mutual TLS, TLS on the gRPC ingress; the broker stays plaintext (it has no TLS). "
        "Takes effect when the parts start (`nova stop`, then `nova up`); unset, the mode they "
        "were last started with",
    )

    def state_path(self, name: str = "nova") -> Path:
        """The state dir: the one set, or `name` under the default root."""
        return Path(self.state_dir) if self.state_dir else default_state_root() / name


@dataclass(frozen=True)
class StackSettingsForTests(StackSettings):
    """The pytest session's stack: its own state dir and ports, from `NOVA_TEST_*`
    (`StackSettingsForTests.from_env(prefix=TEST_PREFIX)`), so it never touches a dev stack."""

    port_base: int = setting(21_000, "", Bounds(ge=1024, le=30_000))
    http_port: int = setting(21_800, "", PORT)
    dashboard_port: int = setting(21_265, "", PORT)
    grpc_port: int = setting(21_900, "", Bounds(ge=0, le=65_535))


TEST_PREFIX = "NOVA_TEST_"


@dataclass(frozen=True)
class Settings(GatewaySettings, StackSettings):
    """Everything a Nova process may be configured with; `Settings.from_env()` builds it."""

    relay_count: int = setting(2, "outbox relay actors; all of them publish")
    gateway_replicas: int = setting(
        1,
        "gateway replicas; with `NOVA_GATEWAY_MAX_REPLICAS` above it, the fewest Serve's "
        "autoscaler keeps",
    )
    gateway_max_replicas: int = setting(
        0,
        "the most gateway replicas Serve's autoscaler runs, adding and removing replicas to "
        "keep about `NOVA_GATEWAY_TARGET_ONGOING_REQUESTS` on each; 0, or "
        "`NOVA_GATEWAY_REPLICAS`, keeps the count fixed (on one machine more replicas share "
        "the same cores: no throughput gained, a replica's start paid during the burst)",
        Bounds(ge=0),
    )
    gateway_target_ongoing_requests: float = setting(
        25.0,
        "requests in flight per gateway replica the autoscaler aims at: a replica's core is "
        "busy at about 30. Every open WebSocket is one more for as long as it is open: add "
        "the sockets a replica should hold",
    )
    gateway_max_ongoing_requests: int = setting(
        5_000, "requests plus open WebSockets Serve gives one gateway replica at once"
    )
    gateway_max_queued_requests: int = setting(
        1_000,
        "requests Serve's Python proxy (HAProxy's backup) queues for a gateway slot; past it "
        "Serve answers 503 with Retry-After",
    )
    gateway_access_log: bool = setting(
        False,
        "Serve's access line for each request in the gateway replica's log (about 3% of the "
        "replica at 700 requests/s; requests are counted in the gateway's metrics)",
    )
    grpc_tls_cert: str | None = setting(
        None,
        "a PEM file holding the certificate and key with which HAProxy's gRPC frontend "
        "(`NOVA_GRPC_PORT`) speaks TLS, refusing plaintext calls (`nova certs create` writes "
        "`<node>.pem`). Read by every Ray worker from its environment "
        "(`deployments.ingress_tls`): export it before `ray start` on every node; needs "
        "`RAY_SERVE_ENABLE_HA_PROXY=1`",
    )
    grpc_tls_client_ca: str | None = setting(
        None,
        "with `NOVA_GRPC_TLS_CERT`, the CA whose client certificates gRPC callers must "
        "present besides the token (mutual TLS); read like it",
    )
    ranker_replicas: int = setting(
        1, "Ranker replicas; with `NOVA_RANKER_MAX_REPLICAS` above it, the fewest kept"
    )
    ranker_max_replicas: int = setting(
        0,
        "the most Ranker replicas the autoscaler runs; 0, or `NOVA_RANKER_REPLICAS`, keeps "
        "the count fixed",
        Bounds(ge=0),
    )
    ranker_target_ongoing_requests: float = setting(
        4.0,
        "scoring calls in flight per Ranker replica the autoscaler aims at: a replica scores "
        "one matrix at a time on its event loop, so more in flight only wait",
    )
    feature_store_replicas: int = setting(
        1, "FeatureStore replicas; with `NOVA_FEATURE_STORE_MAX_REPLICAS` above it, the fewest kept"
    )
    feature_store_max_replicas: int = setting(
        0,
        "the most FeatureStore replicas the autoscaler runs; 0, or "
        "`NOVA_FEATURE_STORE_REPLICAS`, keeps the count fixed",
        Bounds(ge=0),
    )
    feature_store_target_ongoing_requests: float = setting(
        20.0,
        "feature lookups in flight per FeatureStore replica the autoscaler aims at: a lookup "
        "is one Redis round trip, mostly waiting",
    )
    autoscale_upscale_delay_s: float = setting(
        30.0,
        "how long an autoscaled deployment must want more replicas before Serve starts them",
        Bounds(ge=0),
    )
    autoscale_downscale_delay_s: float = setting(
        600.0,
        "how long an autoscaled deployment must want fewer replicas before Serve stops some; "
        "a gateway replica stopped closes its WebSockets with 1012 and their clients "
        "reconnect, so keep it long",
        Bounds(ge=0),
    )
    autoscale_look_back_s: float = setting(
        30.0, "the window over which Serve averages each replica's requests in flight"
    )

    def check(self) -> None:
        super().check()
        for name in ("gateway", "ranker", "feature_store"):
            fewest, most = getattr(self, f"{name}_replicas"), getattr(self, f"{name}_max_replicas")
            if 0 < most < fewest:
                raise ValueError(
                    f"{env_name(f'{name}_max_replicas')}={most} is below "
                    f"{env_name(f'{name}_replicas')}={fewest}: set it to 0 for a fixed count"
                )


def default_state_root() -> Path:
    # PostgreSQL runs as the `postgres` user when we are root, so its directory must be
    # reachable by that user: a home directory under /root is not.
    if os.geteuid() == 0:
        return Path("/var/lib")
    return Path(os.environ.get("XDG_STATE_HOME", Path.home() / ".local" / "state"))


def settings_table() -> str:
    """The configuration table, one section per layer: variable, default, meaning."""
    layers: list[tuple[str, type[LayeredSettings]]] = [
        ("Storage (`storage.settings`)", StorageSettings),
        ("Ranking (`ranking.settings`)", RankingSettings),
        ("Actors: shards and consumers (`actors.settings`)", ActorSettings),
        ("Gateway (`gateway.settings`)", GatewaySettings),
        ("Deployment (`deployments.settings`)", Settings),
        ("Embedded stack (`deployments.settings`)", StackSettings),
    ]
    lines: list[str] = []
    for title, layer in layers:
        lines += [f"#### {title}", "", "| variable | default | meaning |", "|---|---|---|"]
        for field in layer.own_fields():
            bounds = field.metadata["bounds"].describe()
            meaning = field.metadata["doc"] + (f" ({bounds})" if bounds else "")
            default = "" if field.default in (None, "") else f"`{_shown(field.default)}`"
            lines.append(f"| `{env_name(field.name)}` | {default} | {meaning} |")
        lines.append("")
    return "\n".join(lines)


def _shown(value: object) -> str:
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, int):
        return f"{value:_}".replace("_", ",") if value >= 10_000 else str(value)
    return str(value)
