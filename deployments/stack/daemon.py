"""A server the stack runs as a child process it tracks by pid file: started once, found
running by its pid and its port, stopped with SIGTERM (then SIGKILL), started again by
the supervisor if it dies. It runs with the
umask `PRIVATE_UMASK`; its log, pid file and directory are its owner's alone."""

from __future__ import annotations

import subprocess
from abc import ABC, abstractmethod
from pathlib import Path

from deployments.stack.processes import (
    PRIVATE_UMASK,
    StackError,
    open_log,
    pid_alive,
    port_open,
    private_dir,
    private_file,
    terminate,
    wait_for_port,
)


class Daemon(ABC):
    """Subclasses say what to run (`command`) and what to prepare first (`prepare`)."""

    what = "server"

    def __init__(self, port: int, pid_file: Path, log_file: Path) -> None:
        self.port = port
        self.pid_file = pid_file
        self.log_file = log_file

    @abstractmethod
    def command(self) -> list[str]:
        """The server's command line."""

    def prepare(self) -> None:  # noqa: B027 - optional hook
        """Whatever must exist before the process starts (directories, config)."""

    def running(self) -> bool:
        return pid_alive(self.pid_file) is not None and port_open(self.port)

    def start(self) -> None:
        if self.running():
            return
        if port_open(self.port):
            raise StackError(f"port {self.port} is taken by another process")
        private_dir(self.pid_file.parent)
        self.log_file.parent.mkdir(parents=True, exist_ok=True)
        self.prepare()
        with open_log(self.log_file) as log_handle:
            process = subprocess.Popen(
                self.command(),
                stdout=log_handle,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
                umask=PRIVATE_UMASK,
            )
        private_file(self.pid_file, str(process.pid))
        wait_for_port(self.port, what=self.what, timeout_s=15, log_file=self.log_file)

    def stop(self) -> None:
        # The pid file goes first: a pid file naming a dead process is how the supervisor
        # tells a crash from a stop.
        pid = pid_alive(self.pid_file)
        self.pid_file.unlink(missing_ok=True)
        if pid is not None:
            terminate(pid)
