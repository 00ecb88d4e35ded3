"""The embedded stack: PostgreSQL, Redis, the Kafka-protocol broker, Ray and an SMTP sink
on 127.0.0.1.

Each part is used through its URL (`NOVA_DATABASE_URL`, `NOVA_REDIS_URL`,
`NOVA_KAFKA_BOOTSTRAP`, `RAY_ADDRESS`, `NOVA_SMTP_URL`); only the parts whose URL is unset
are started here, each in its own directory under the state dir, on its own port, and only
those are stopped by `nova stop`.

The stack also provides `NOVA_SECRET_KEY` and `NOVA_GRPC_TOKEN` (each generated once into
the state dir unless set) and `NOVA_PUBLIC_URL` (the local HTTP port unless set), so links
in mail work locally.
"""

from __future__ import annotations

import json
import os
import pwd
from pathlib import Path
from typing import Any, Protocol

from deployments.stack.broker import Broker
from deployments.stack.debian import ensure_debian_packages
from deployments.stack.layout import Layout
from deployments.stack.postgres import Postgres
from deployments.stack.processes import (
    LOCALHOST,
    StackError,
    keep_private,
    private_dir,
    private_file,
    secret,
)
from deployments.stack.prometheus import Prometheus
from deployments.stack.ray_head import Ray
from deployments.stack.redis_server import Redis
from deployments.stack.smtp import Smtp
from deployments.stack.supervisor import Supervised, SupervisorProcess, stack_lock

URL_VARIABLES = (
    "NOVA_DATABASE_URL",
    "NOVA_REDIS_URL",
    "NOVA_KAFKA_BOOTSTRAP",
    "RAY_ADDRESS",
    "NOVA_SMTP_URL",
)


class _Part(Protocol):
    def running(self) -> bool: ...

    def stop(self) -> None: ...


def _new_secret_key() -> str:
    # Imported here: the gateway package is only needed once a key must be made.
    from storage.secrets import new_secret_key

    return new_secret_key()


class Stack:
    """The parts of one layout; starts the embedded ones whose URL is unset."""

    def __init__(self, layout: Layout, environ: dict[str, str] | None = None) -> None:
        self.layout = layout
        self.environ = dict(os.environ if environ is None else environ)
        self.postgres = Postgres(layout)
        self.redis = Redis(layout)
        self.broker = Broker(layout)
        self.ray = Ray(layout)
        self.smtp = Smtp(layout)
        self.prometheus = Prometheus(layout)
        self.supervisor = SupervisorProcess(layout)
        self.secret_key_file = layout.path("secrets", "secret_key")
        self.grpc_token_file = layout.path("secrets", "grpc_token")
        self._manifest = layout.manifest

    def embedded(self) -> dict[str, bool]:
        """Which parts this stack runs itself (their URL variable is unset)."""
        return {
            "postgresql": "NOVA_DATABASE_URL" not in self.environ,
            "redis": "NOVA_REDIS_URL" not in self.environ,
            "kafka": "NOVA_KAFKA_BOOTSTRAP" not in self.environ,
            "ray": "RAY_ADDRESS" not in self.environ,
            "smtp": "NOVA_SMTP_URL" not in self.environ,
            # An operator who points Ray's dashboard at their own Prometheus runs that one.
            "prometheus": self.environ.get("RAY_PROMETHEUS_HOST", self.prometheus.url)
            == self.prometheus.url,
        }

    def environment(self) -> dict[str, str]:
        """The environment Nova processes of this stack run with: URLs, the secret key (one
        per state dir, so sealed values survive restarts), the public URL and Ray's needs."""
        embedded = self.embedded()
        env = {**self.environ, "RAY_USAGE_STATS_ENABLED": "0"}
        if "NOVA_SECRET_KEY" not in env:
            env["NOVA_SECRET_KEY"] = secret(self.secret_key_file, _new_secret_key)
        if "NOVA_GRPC_TOKEN" not in env:
            env["NOVA_GRPC_TOKEN"] = secret(self.grpc_token_file)
        env.setdefault("NOVA_PUBLIC_URL", f"http://{LOCALHOST}:{self.layout.http_port}")
        env.setdefault("NOVA_MODEL_STORE", str(self.layout.state_dir / "models"))
        env.setdefault("NOVA_MEDIA_STORE", str(self.layout.state_dir / "media"))
        if embedded["smtp"]:
            env["NOVA_SMTP_URL"] = self.smtp.url
        if embedded["postgresql"]:
            env["NOVA_DATABASE_URL"] = self.postgres.url
        if embedded["redis"]:
            env["NOVA_REDIS_URL"] = self.redis.url
        if embedded["kafka"]:
            env["NOVA_KAFKA_BOOTSTRAP"] = self.broker.url
            # The embedded broker lacks InitProducerId v1+; dedup by event id carries us.
            env.setdefault("NOVA_KAFKA_IDEMPOTENCE", "false")
            # It does not answer a waiting fetch early when data arrives (often not even
            # when data is there already), so the wait is the latency of every hop. Every
            # fetch costs it CPU: at 20 ms, four idle consumer groups kept it at a quarter of
            # a core (9% at 100 ms). A shorter wait only while records flow
            # (NOVA_KAFKA_FETCH_BUSY_WAIT_MS, `storage.kafka.fetch_pacing`) stays off: it cut
            # outbox latency at 300 events/s but cost the likes shard path a third of its
            # throughput on two cores.
            env.setdefault("NOVA_KAFKA_FETCH_MAX_WAIT_MS", "100")
            # It is one node, and its every fetch costs CPU per partition (an idle consumer
            # of 40 partitions kept it at a quarter of a core): two partitions a topic.
            env.setdefault("NOVA_KAFKA_MAX_PARTITIONS", "2")
        if embedded["ray"]:
            env.update(self.ray.environment())
            env["RAY_ADDRESS"] = self.ray.address
        return env

    def up(self) -> dict[str, str]:
        """Start the embedded parts (idempotent) and their supervisor, and write the env
        file; return the env."""
        embedded = self.embedded()
        if embedded["postgresql"] or embedded["redis"]:
            ensure_debian_packages()
        self._keep_state_private(embedded)
        env = self.environment()
        with stack_lock(self.layout):
            self._refuse_another_tls_mode(embedded)
            self._start(embedded, env)
        self._write_env_file(env)
        private_file(self._manifest, json.dumps({**embedded, "tls": self.layout.tls}))
        return env

    def _refuse_another_tls_mode(self, embedded: dict[str, bool]) -> None:
        """TLS is set when the parts start: parts running with it on cannot be joined with
        it off, nor the other way round (clients would speak the wrong protocol)."""
        running_with = self.layout.started_with_tls()
        if running_with is None or running_with == self.layout.tls:
            return
        parts = dict(self._parts_in_stop_order())
        running = [name for name, on in embedded.items() if on and parts[name].running()]
        if running:
            now, wanted = ("on", "off") if running_with else ("off", "on")
            raise StackError(
                f"the stack's parts ({', '.join(running)}) run with TLS {now}: to turn it"
                f" {wanted}, run `nova stop` first, then `nova up` with NOVA_TLS set"
            )

    def _start(self, embedded: dict[str, bool], env: dict[str, str]) -> None:
        if embedded["postgresql"]:
            self.postgres.start()
        if embedded["redis"]:
            self.redis.start()
        if embedded["kafka"]:
            self.broker.start()
        if embedded["smtp"]:
            self.smtp.start()
        if embedded["ray"]:
            self.ray.start(env)
        if embedded["prometheus"]:
            self.prometheus.start()  # after Ray: it scrapes what Ray's discovery file lists
        self.supervisor.start(embedded)

    def _keep_state_private(self, embedded: dict[str, bool]) -> None:
        """The state dir and the logs dir are their owner's; as root, with an embedded
        PostgreSQL (which runs as `postgres` and must reach its data dir and its log), that
        user's group may pass through them, but not list or read them."""
        group = None
        if embedded["postgresql"] and os.geteuid() == 0:
            group = pwd.getpwnam("postgres").pw_gid
        private_dir(self.layout.state_dir, group=group)
        logs = private_dir(self.layout.path("logs"), group=group)
        for log in logs.iterdir():
            if log.is_file() and log.stat().st_mode & 0o077:
                log.chmod(0o600)  # written by an earlier release
        for name in ("secrets", "broker", "smtp"):
            if self.layout.path(name).exists():
                private_dir(self.layout.path(name))
                keep_private(self.layout.path(name))

    def _write_env_file(self, env: dict[str, str]) -> None:
        keys = [
            *URL_VARIABLES,
            "NOVA_KAFKA_IDEMPOTENCE",
            "NOVA_KAFKA_FETCH_MAX_WAIT_MS",
            "NOVA_KAFKA_FETCH_BUSY_WAIT_MS",
            "NOVA_KAFKA_MAX_PARTITIONS",
            *self.ray.environment(),
            "NOVA_HTTP_PORT",
            "NOVA_PUBLIC_URL",
            "NOVA_MODEL_STORE",
            "NOVA_MEDIA_STORE",
            "NOVA_SECRET_KEY",
            "NOVA_GRPC_TOKEN",
        ]
        fd = os.open(self.layout.env_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as handle:
            for key in keys:
                if key in env:
                    handle.write(f"{key}={env[key]}\n")

    def down(self) -> list[str]:
        """Stop what this stack started, in reverse order; return what was stopped."""
        try:
            started = json.loads(self._manifest.read_text())
        except (OSError, ValueError):
            started = dict.fromkeys(
                ("postgresql", "redis", "kafka", "ray", "smtp", "prometheus"), True
            )
        stopped = []
        with stack_lock(self.layout):
            self.supervisor.stop()  # first: it would start again what is being stopped
            for name, part in self._parts_in_stop_order():
                if started.get(name):
                    part.stop()
                    stopped.append(name)
        return stopped

    def _parts_in_stop_order(self) -> tuple[tuple[str, _Part], ...]:
        return (
            ("prometheus", self.prometheus),
            ("ray", self.ray),
            ("smtp", self.smtp),
            ("kafka", self.broker),
            ("redis", self.redis),
            ("postgresql", self.postgres),
        )

    def status(self) -> dict[str, str]:
        embedded = self.embedded()
        parts: dict[str, _Part] = {
            "postgresql": self.postgres,
            "redis": self.redis,
            "kafka": self.broker,
            "ray": self.ray,
            "smtp": self.smtp,
            "prometheus": self.prometheus,
        }
        return {
            name: ("external" if not embedded[name] else "running" if part.running() else "stopped")
            for name, part in parts.items()
        }

    def supervision(self) -> dict[str, Any]:
        """The supervisor's report: running or not, and per server its state (running,
        restarting, failing), restarts and the last error."""
        return self.supervisor.status()


def supervised_parts(layout: Layout, embedded: dict[str, bool]) -> list[Supervised]:
    """The servers of `layout` this stack started, as the supervisor watches them."""
    postgres, redis, broker, smtp = Postgres(layout), Redis(layout), Broker(layout), Smtp(layout)
    prometheus = Prometheus(layout)
    candidates = (
        ("postgresql", Supervised("postgresql", postgres.data / "postmaster.pid", postgres.start)),
        ("redis", Supervised("redis", redis.pid_file, redis.start)),
        ("kafka", Supervised("kafka", broker.pid_file, broker.start)),
        ("smtp", Supervised("smtp", smtp.pid_file, smtp.start)),
        ("prometheus", Supervised("prometheus", prometheus.pid_file, prometheus.start)),
    )
    return [part for name, part in candidates if embedded.get(name)]


def read_env_file(path: Path) -> dict[str, str]:
    if not path.exists():
        return {}
    values = {}
    for line in path.read_text().splitlines():
        key, sep, value = line.partition("=")
        if sep and key.strip():
            values[key.strip()] = value
    return values
