"""The embedded Redis: `requirepass` and AOF, its config and data under the state dir."""

from __future__ import annotations

import os
import shutil
from urllib.parse import quote

from deployments.stack.daemon import Daemon
from deployments.stack.layout import Layout
from deployments.stack.processes import (
    LOCALHOST,
    StackError,
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
        self.dir.mkdir(parents=True, exist_ok=True)
        self.log_file.parent.mkdir(parents=True, exist_ok=True)
        # The password goes in a 0600 config file, not on the command line (`ps` shows that).
        fd = os.open(self.conf, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as conf:
            conf.write(
                f"bind {LOCALHOST}\nport {self.layout.redis_port}\nprotected-mode yes\n"
                f"daemonize yes\npidfile {self.pid_file}\nlogfile {self.log_file}\n"
                f'dir {self.dir}\nsave ""\nappendonly yes\nappendfsync everysec\n'
                f"requirepass {secret(self.password_file)}\n"
            )
        # It daemonizes itself and writes its own pid file: run it to completion.
        run(self.command(), what="Redis start", log_file=self.log_file)
        wait_for_port(self.layout.redis_port, what="Redis", timeout_s=15, log_file=self.log_file)
