"""The embedded Redis: `requirepass`, AOF, a memory limit without eviction; its config and
data under the state dir, its owner's alone.

With the stack's TLS on (`Layout.tls`) its port speaks only TLS, and clients must present a
certificate of the stack's CA as well as the password (`rediss://`).
"""

from __future__ import annotations

import shutil
from urllib.parse import quote, urlencode

from deployments.stack.certs import ensure_local, stack_tls_dir
from deployments.stack.daemon import Daemon
from deployments.stack.layout import Layout
from deployments.stack.processes import (
    LOCALHOST,
    StackError,
    keep_private,
    private_dir,
    private_file,
    run,
    secret,
    wait_for_port,
)


class Redis(Daemon):
    """redis-server daemonizing itself (it writes its own pid file) with a 0600 config."""

    what = "Redis"

    def __init__(self, layout: Layout) -> None:
        self.dir = layout.path("redis")
        super().__init__(
            layout.redis_port, self.dir / "redis.pid", layout.path("logs", "redis.log")
        )
        self.layout = layout
        self.conf = self.dir / "redis.conf"
        self.password_file = layout.path("secrets", "redis_password")
        self.certs = stack_tls_dir(layout)

    @property
    def url(self) -> str:
        password = quote(secret(self.password_file), safe="")
        if not self.layout.tls:
            return f"redis://:{password}@{LOCALHOST}:{self.layout.redis_port}/0"
        node = self.certs.node()
        # redis-py passes these query parameters to its SSL connections.
        tls = {
            "ssl_ca_certs": self.certs.ca_cert,
            "ssl_certfile": node.cert,
            "ssl_keyfile": node.key,
        }
        return f"rediss://:{password}@{LOCALHOST}:{self.layout.redis_port}/0?{urlencode(tls)}"

    def _tls_config(self) -> str:
        """The port speaks TLS only; clients need a certificate of the stack's CA."""
        if not self.layout.tls:
            return f"port {self.layout.redis_port}\n"
        node = ensure_local(self.certs)
        return (
            f"port 0\ntls-port {self.layout.redis_port}\ntls-cert-file {node.cert}\n"
            f"tls-key-file {node.key}\ntls-ca-cert-file {self.certs.ca_cert}\n"
            "tls-auth-clients yes\n"
        )

    def command(self) -> list[str]:
        binary = shutil.which("redis-server")
        if binary is None:
            raise StackError("Redis is not installed (Debian package `redis-server`)")
        return [binary, str(self.conf)]

    def start(self) -> None:
        if self.running():
            return
        private_dir(self.dir)
        # Files an earlier release left readable (the AOF holds cached user records).
        keep_private(self.dir)
        self.log_file.parent.mkdir(parents=True, exist_ok=True)
        if self.log_file.exists():
            self.log_file.chmod(0o600)
        # The password goes in a 0600 config file, not on the command line (`ps` shows that).
        # No eviction: rate limits, features and timelines are never dropped to make room;
        # past `maxmemory` writes fail (clients see UNAVAILABLE, consumers retry).
        private_file(
            self.conf,
            f"bind {LOCALHOST}\n{self._tls_config()}protected-mode yes\n"
            f"daemonize yes\npidfile {self.pid_file}\nlogfile {self.log_file}\n"
            f'dir {self.dir}\nsave ""\nappendonly yes\nappendfsync everysec\n'
            f"maxmemory {self.layout.redis_max_memory_mb}mb\nmaxmemory-policy noeviction\n"
            f"requirepass {secret(self.password_file)}\n",
        )
        # It daemonizes itself and writes its own pid file: run it to completion (with the
        # stack's umask, so its AOF and log are 0600).
        run(self.command(), what="Redis start", log_file=self.log_file)
        wait_for_port(self.layout.redis_port, what="Redis", timeout_s=15, log_file=self.log_file)
