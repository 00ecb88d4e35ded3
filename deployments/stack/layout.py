"""Where a stack keeps its state and which ports it uses (all below 32768).

The dev stack (`nova up`) and the test stack (the pytest session) differ only in their
`Layout`, so tests never touch a running dev stack.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, replace
from pathlib import Path

from deployments.settings import TEST_PREFIX, StackSettings, StackSettingsForTests


@dataclass(frozen=True)
class Layout:
    """Where a stack keeps its state, which ports it uses (all below 32768), and how much
    memory its Redis may hold."""

    name: str
    state_dir: Path
    port_base: int
    http_port: int
    dashboard_port: int
    grpc_port: int
    redis_max_memory_mb: int = StackSettings.redis_max_memory_mb
    # The parts talk TLS with the stack's certificates (`deployments.stack.certs`).
    tls: bool = StackSettings.tls

    @classmethod
    def of(cls, name: str, settings: StackSettings, default_dir: str) -> Layout:
        return cls(
            name=name,
            state_dir=settings.state_path(default_dir),
            port_base=settings.port_base,
            http_port=settings.http_port,
            dashboard_port=settings.dashboard_port,
            grpc_port=settings.grpc_port,
            redis_max_memory_mb=settings.redis_max_memory_mb,
            tls=settings.tls,
        )

    @property
    def pg_port(self) -> int:
        return self.port_base + 432

    @property
    def redis_port(self) -> int:
        return self.port_base + 379

    @property
    def kafka_port(self) -> int:
        return self.port_base + 92

    @property
    def ray_port(self) -> int:
        return self.port_base + 637

    @property
    def smtp_port(self) -> int:
        return self.port_base + 25

    @property
    def prometheus_port(self) -> int:
        """Prometheus's HTTP API and UI (after its usual 9090)."""
        return self.port_base + 909

    def ray_ports(self) -> dict[str, int]:
        """Every port Ray listens on, pinned, so two stacks never collide."""
        base = self.port_base
        return {
            "ray-client-server-port": base + 1,
            "node-manager-port": base + 10,
            "object-manager-port": base + 11,
            "metrics-export-port": base + 12,
            "dashboard-agent-grpc-port": base + 13,
            "dashboard-agent-listen-port": base + 14,
            "runtime-env-agent-port": base + 15,
            "min-worker-port": base + 4000,
            "max-worker-port": base + 4999,
        }

    def serve_ingress(self) -> dict[str, str]:
        """Serve's HAProxy and direct-ingress settings for this stack: its own files and
        ports (Serve's defaults are fixed ports and /tmp paths, shared by two stacks)."""
        base = self.port_base
        haproxy = self.path("haproxy")
        settings = {
            "RAY_SERVE_DIRECT_INGRESS_MIN_HTTP_PORT": base + 100,
            "RAY_SERVE_DIRECT_INGRESS_MAX_HTTP_PORT": base + 139,
            "RAY_SERVE_DIRECT_INGRESS_MIN_GRPC_PORT": base + 140,
            "RAY_SERVE_DIRECT_INGRESS_MAX_GRPC_PORT": base + 179,
            "RAY_SERVE_HAPROXY_METRICS_PORT": base + 180,
            "RAY_SERVE_HAPROXY_STATS_PORT": base + 181,
            "RAY_SERVE_FALLBACK_PROXY_HTTP_PORT": base + 182,
            "RAY_SERVE_FALLBACK_PROXY_GRPC_PORT": base + 183,
            "RAY_SERVE_HAPROXY_CONFIG_FILE_LOC": haproxy / "haproxy.cfg",
            "RAY_SERVE_HAPROXY_SOCKET_PATH": haproxy / "admin.sock",
            "RAY_SERVE_HAPROXY_SERVER_STATE_BASE": haproxy,
            "RAY_SERVE_HAPROXY_SERVER_STATE_FILE": haproxy / "server-state",
        }
        # Not read from the environment: a stack's own ports and paths follow from its
        # layout (NOVA_PORT_BASE, NOVA_STATE_DIR), and a test run inherits the dev stack's.
        return {name: str(value) for name, value in settings.items()}

    def path(self, *parts: str) -> Path:
        return self.state_dir.joinpath(*parts)

    @property
    def env_file(self) -> Path:
        return self.path("nova.env")

    @property
    def manifest(self) -> Path:
        """What `nova up` last started itself, and whether with TLS (`Stack.up`)."""
        return self.path("embedded.json")

    def started_with_tls(self) -> bool | None:
        """Whether this stack's parts were last started with TLS; None if never started."""
        try:
            started = json.loads(self.manifest.read_text())
        except (OSError, ValueError):
            return None
        tls = started.get("tls") if isinstance(started, dict) else None
        return tls if isinstance(tls, bool) else None

    @property
    def mail_dir(self) -> Path:
        """The Maildir the embedded SMTP server delivers every message to."""
        return self.path("mail")


def dev_layout() -> Layout:
    """The dev stack's layout, from `NOVA_STATE_DIR`, `NOVA_PORT_BASE` and the ports. With
    `NOVA_TLS` unset, TLS is as the parts were last started: `nova status`, `nova stop`,
    `nova backup` or another `nova up` need not repeat `NOVA_TLS=true`."""
    layout = Layout.of("dev", StackSettings.from_env(), "nova")
    remembered = layout.started_with_tls()
    if "NOVA_TLS" not in os.environ and remembered is not None:
        layout = replace(layout, tls=remembered)
    return layout


def layout_for_tests() -> Layout:
    """The pytest session's, from `NOVA_TEST_STATE_DIR`, `NOVA_TEST_PORT_BASE`, ...: its
    own state dir and ports, so a test run never touches a dev stack."""
    return Layout.of("test", StackSettingsForTests.from_env(prefix=TEST_PREFIX), "nova-test")
