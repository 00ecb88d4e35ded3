"""The embedded Redis: `requirepass` and AOF, its config and data under the state dir."""

from __future__ import annotations

import os
import shutil
from urllib.parse import quote

from deployments.stack.layout import Layout
from deployments.stack.processes import (
    LOCALHOST,
    StackError,
    pid_alive,
    port_open,
    run,
    secret,
    terminate,
    wait_for_port,
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
        password = quote(secret(self.password_file), safe="")
        return f"redis://:{password}@{LOCALHOST}:{self.layout.redis_port}/0"

    def running(self) -> bool:
        return pid_alive(self.pid_file) is not None and port_open(self.layout.redis_port)

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
        binary = shutil.which("redis-server")
        if binary is None:
            raise StackError("Redis is not installed (Debian package `redis-server`)")
        run([binary, str(self.conf)], what="Redis start", log_file=self.log_file)
        wait_for_port(self.layout.redis_port, what="Redis", timeout_s=15, log_file=self.log_file)

    def stop(self) -> None:
        pid = pid_alive(self.pid_file)
        if pid is not None:
            terminate(pid)
        self.pid_file.unlink(missing_ok=True)
