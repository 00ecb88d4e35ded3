"""The embedded SMTP sink: aiosmtpd delivering every message to a Maildir."""

from __future__ import annotations

import sys

from deployments.stack.daemon import Daemon
from deployments.stack.layout import Layout
from deployments.stack.processes import LOCALHOST, keep_private, private_dir


class Smtp(Daemon):
    """aiosmtpd delivering every message to a Maildir: no mail leaves the machine.

    Stands in for a real relay on one machine, and lets tests read what Nova sent.
    """

    what = "SMTP"

    def __init__(self, layout: Layout) -> None:
        super().__init__(
            layout.smtp_port, layout.path("smtp", "aiosmtpd.pid"), layout.path("logs", "smtp.log")
        )
        self.layout = layout

    @property
    def url(self) -> str:
        return f"smtp://{LOCALHOST}:{self.layout.smtp_port}"

    def prepare(self) -> None:
        mail_dir = self.layout.mail_dir
        # Reset and verification mail carries one-time tokens: only the owner may read it.
        # A Maildir is these three directories; the handler only makes them if `mail_dir`
        # itself is missing.
        for sub in ("tmp", "new", "cur"):
            private_dir(mail_dir / sub)
        private_dir(mail_dir)
        keep_private(mail_dir)  # messages an earlier release delivered readable

    def command(self) -> list[str]:
        return [
            sys.executable,
            "-m",
            "aiosmtpd",
            "-n",  # stay the current user, who owns the Maildir
            "-l",
            f"{LOCALHOST}:{self.layout.smtp_port}",
            "-c",
            "aiosmtpd.handlers.Mailbox",
            str(self.layout.mail_dir),
        ]
