"""Keeps the embedded servers running, as systemd's `Restart=on-failure` would.

`nova up` (and the test session) starts one supervisor process beside the servers it
started. Twice a second it looks at each server's pid file: a pid file that names a dead
process means the server died without being stopped (a clean stop removes the pid file
first, so a stopped server stays stopped). Seen dead on two looks in a row, the server is
started again; a start that fails is retried after 1, 2, 4 … 30 s, and the count resets
once the server has stayed up for a minute. What it did is written to a status file that
`nova status` shows, and to `logs/supervisor.log`.

The Ray head is not supervised here: Ray restarts its own workers and actors, and a lost
head takes the Serve application with it, which `nova up` redeploys.
"""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import json
import logging
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from deployments.stack.layout import Layout
from deployments.stack.processes import (
    PRIVATE_UMASK,
    StackError,
    open_log,
    pid_alive,
    private_dir,
    private_file,
    process_alive,
    reap_children,
    terminate,
)

log = logging.getLogger("nova.supervisor")

TICK_S = 0.5
FIRST_RETRY_S = 1.0
MAX_RETRY_S = 30.0
# A server that stayed up this long after a restart starts its backoff from the beginning.
SETTLED_S = 60.0


@dataclass
class Supervised:
    """One server: the pid file it leaves while it runs, and how to start it again."""

    name: str
    pid_file: Path
    start: Callable[[], None]


@dataclass
class Watch:
    """What the supervisor knows of one server, as `nova status` shows it."""

    state: str = "running"  # running | restarting | failing
    restarts: int = 0
    last_restart_at: float | None = None
    last_error: str | None = None
    down_looks: int = 0
    failures: int = 0
    retry_at: float = 0.0
    up_since: float = field(default_factory=time.monotonic)

    def report(self) -> dict[str, Any]:
        return {
            "state": self.state,
            "restarts": self.restarts,
            "last_restart_at": self.last_restart_at,
            "last_error": self.last_error,
        }


def pid_in(pid_file: Path) -> int | None:
    """The pid a server's pid file names (PostgreSQL's holds more lines after it)."""
    try:
        return int(pid_file.read_text().split("\n", 1)[0].strip())
    except (OSError, ValueError):
        return None


def died(pid_file: Path) -> bool:
    """The server left its pid file but its process is gone: it did not stop cleanly."""
    if not pid_file.exists():
        return False
    pid = pid_in(pid_file)
    return pid is not None and not process_alive(pid)


class Supervisor:
    """Restarts servers that died, with backoff; `tick` is one look at all of them."""

    def __init__(
        self,
        parts: list[Supervised],
        *,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        self.parts = parts
        self.clock = clock
        self.wall_clock = wall_clock
        self.watches = {part.name: Watch(up_since=clock()) for part in parts}

    def tick(self) -> None:
        for part in self.parts:
            self._look(part, self.watches[part.name])

    def _look(self, part: Supervised, watch: Watch) -> None:
        now = self.clock()
        if not died(part.pid_file):
            watch.down_looks = 0
            if watch.state == "running" and now - watch.up_since >= SETTLED_S:
                watch.failures = 0
            return
        watch.down_looks += 1
        if watch.down_looks < 2 or now < watch.retry_at:
            return  # one look could catch a clean stop between its signal and its unlink
        watch.state = "restarting"
        log.warning("%s died; starting it again (restart %d)", part.name, watch.restarts + 1)
        try:
            part.start()
        except (StackError, OSError) as exc:
            watch.failures += 1
            delay = min(MAX_RETRY_S, FIRST_RETRY_S * 2 ** (watch.failures - 1))
            watch.retry_at = now + delay
            watch.state = "failing"
            watch.last_error = str(exc).splitlines()[0][:300]
            log.error("%s did not start (next try in %.0fs): %s", part.name, delay, exc)
            return
        watch.restarts += 1
        watch.last_restart_at = self.wall_clock()
        watch.state = "running"
        watch.down_looks = 0
        watch.up_since = self.clock()
        log.warning("%s is running again", part.name)

    def report(self) -> dict[str, Any]:
        return {
            "heartbeat_at": self.wall_clock(),
            "parts": {name: watch.report() for name, watch in self.watches.items()},
        }


@contextlib.contextmanager
def stack_lock(layout: Layout, *, wait: bool = True) -> Iterator[bool]:
    """The stack's lock: held by `nova up` and `nova stop` while they start or stop
    servers, and by the supervisor while it restarts one, so they never race. Yields
    whether it was taken (always, when `wait`)."""
    path = layout.path("stack.lock")
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
        except BlockingIOError:
            yield False
            return
        try:
            yield True
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def layout_to_json(layout: Layout) -> str:
    return json.dumps(
        {k: str(v) if isinstance(v, Path) else v for k, v in dataclasses.asdict(layout).items()}
    )


def layout_from_json(text: str) -> Layout:
    """The layout `layout_to_json` wrote: paths come back as paths, the rest as JSON has
    them (numbers, flags, names)."""
    paths = {f.name for f in dataclasses.fields(Layout) if "Path" in str(f.type)}
    raw: dict[str, Any] = json.loads(text)
    values: dict[str, Any] = {k: Path(v) if k in paths else v for k, v in raw.items()}
    return Layout(**values)


class SupervisorProcess:
    """The supervisor as a process of its own: started by `Stack.up`, stopped first by
    `Stack.down` (so it never restarts what is being stopped)."""

    def __init__(self, layout: Layout) -> None:
        self.layout = layout
        self.dir = layout.path("supervisor")
        self.pid_file = self.dir / "supervisor.pid"
        self.status_file = self.dir / "status.json"
        self.config_file = self.dir / "config.json"
        self.log_file = layout.path("logs", "supervisor.log")

    def running(self) -> bool:
        return pid_alive(self.pid_file) is not None

    def start(self, embedded: dict[str, bool]) -> None:
        if self.running():
            return
        private_dir(self.dir)
        self.status_file.unlink(missing_ok=True)
        config = {
            "layout": layout_to_json(self.layout),
            "embedded": embedded,
            "status_file": str(self.status_file),
        }
        private_file(self.config_file, json.dumps(config))
        with open_log(self.log_file) as log_handle:
            process = subprocess.Popen(
                [sys.executable, "-m", "deployments.stack.supervisor", str(self.config_file)],
                stdout=log_handle,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
                umask=PRIVATE_UMASK,
                cwd=Path(__file__).resolve().parents[2],
            )
        private_file(self.pid_file, str(process.pid))

    def stop(self) -> None:
        pid = pid_alive(self.pid_file)
        self.pid_file.unlink(missing_ok=True)
        if pid is not None:
            terminate(pid)

    def status(self) -> dict[str, Any]:
        """What the supervisor last wrote, and whether it is running."""
        report: dict[str, Any] = {"running": self.running()}
        with contextlib.suppress(OSError, ValueError):
            report.update(json.loads(self.status_file.read_text()))
        return report


def serve(supervisor: Supervisor, layout: Layout, status_file: Path) -> None:
    """Look every `TICK_S` until SIGTERM; skip a look while `nova up`/`stop` hold the lock."""
    stopping = False

    def stop(*_: Any) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    while not stopping:
        reap_children()  # servers it restarted are its children: no zombies
        with stack_lock(layout, wait=False) as locked:
            if locked:
                supervisor.tick()
        private_file(status_file, json.dumps(supervisor.report()))
        time.sleep(TICK_S)


def main(argv: list[str]) -> int:
    """`python -m deployments.stack.supervisor CONFIG`: CONFIG names the layout and which
    parts this stack started."""
    from deployments.stack.embedded import supervised_parts

    config = json.loads(Path(argv[0]).read_text())
    layout = layout_from_json(config["layout"])
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s", stream=sys.stderr
    )
    parts = supervised_parts(layout, config["embedded"])
    log.info("supervising %s", ", ".join(p.name for p in parts) or "nothing")
    serve(Supervisor(parts), layout, Path(config["status_file"]))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
