"""The embedded SMTP sink: aiosmtpd delivering every message to a Maildir."""

from __future__ import annotations

import subprocess
import sys

from deployments.stack.layout import Layout
from deployments.stack.processes import (
    LOCALHOST,
    StackError,
    pid_alive,
    port_open,
    terminate,
    wait_for_port,
)


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
        return pid_alive(self.pid_file) is not None and port_open(self.layout.smtp_port)

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
        wait_for_port(self.layout.smtp_port, what="SMTP", timeout_s=15, log_file=self.log_file)

    def stop(self) -> None:
        pid = pid_alive(self.pid_file)
        if pid is not None:
            terminate(pid)
        self.pid_file.unlink(missing_ok=True)
