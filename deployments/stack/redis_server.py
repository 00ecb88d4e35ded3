"""The embedded Redis: `requirepass`, AOF, a memory limit without eviction; its config and
data under the state dir, its owner's alone."""

from __future__ import annotations

import shutil
from urllib.parse import quote

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

    @property
    def url(self) -> str:
        password = quote(secret(self.password_file), safe="")
        return f"redis://:{password}@{LOCALHOST}:{self.layout.redis_port}/0"

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
            f"bind {LOCALHOST}\nport {self.layout.redis_port}\nprotected-mode yes\n"
            f"daemonize yes\npidfile {self.pid_file}\nlogfile {self.log_file}\n"
            f'dir {self.dir}\nsave ""\nappendonly yes\nappendfsync everysec\n'
            f"maxmemory {self.layout.redis_max_memory_mb}mb\nmaxmemory-policy noeviction\n"
            f"requirepass {secret(self.password_file)}\n",
        )
        # It daemonizes itself and writes its own pid file: run it to completion (with the
        # stack's umask, so its AOF and log are 0600).
        run(self.command(), what="Redis start", log_file=self.log_file)
        wait_for_port(self.layout.redis_port, what="Redis", timeout_s=15, log_file=self.log_file)
