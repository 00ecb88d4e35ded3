"""Reading what the embedded SMTP server delivered: it writes every message to a Maildir
(`Layout.mail_dir`), so tests see exactly what a mail client would."""

from __future__ import annotations

import asyncio
import email
import email.policy
import mailbox
from email.message import EmailMessage
from email.utils import getaddresses
from pathlib import Path
from urllib.parse import urlsplit

from actors.consumers.mail import MailConsumer
from deployments.settings import Settings


def messages(mail_dir: Path) -> list[EmailMessage]:
    """Every message in the Maildir now, parsed with the modern (`EmailMessage`) API."""
    if not mail_dir.exists():
        return []
    box = mailbox.Maildir(mail_dir, create=False)
    found = []
    for key in box.iterkeys():
        try:
            raw = box.get_bytes(key)
        except KeyError:
            continue  # moved or deleted while we looked
        parsed = email.message_from_bytes(raw, policy=email.policy.default)
        assert isinstance(parsed, EmailMessage)
        found.append(parsed)
    return found


def matching(mail_dir: Path, *, to: str, subject_contains: str = "") -> list[EmailMessage]:
    """Messages addressed to `to` (case-insensitive) whose subject contains the text."""
    wanted = to.lower()
    return [
        message
        for message in messages(mail_dir)
        if any(addr.lower() == wanted for _, addr in getaddresses(message.get_all("To", [])))
        and subject_contains in str(message.get("Subject", ""))
    ]


async def wait_for_mail(
    mail_dir: Path, *, to: str, subject_contains: str, timeout_s: float = 15.0
) -> EmailMessage:
    """The first message to `to` with `subject_contains` in its subject; fails after
    `timeout_s` (delivery goes outbox → relay → Kafka → consumer → SMTP, so it is not instant)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while True:
        found = matching(mail_dir, to=to, subject_contains=subject_contains)
        if found:
            return found[0]
        if loop.time() >= deadline:
            raise AssertionError(
                f"no mail to {to} with {subject_contains!r} in the subject within {timeout_s}s "
                f"(the Maildir at {mail_dir} holds {len(messages(mail_dir))} messages)"
            )
        await asyncio.sleep(0.2)


def extract_token(message: EmailMessage) -> str:
    """The one-time token from the body's `Code: ` line."""
    body = message.get_body(preferencelist=("plain",))
    text = body.get_content() if body is not None else message.get_content()
    for line in str(text).splitlines():
        if line.startswith("Code: "):
            return line.removeprefix("Code: ").strip()
    raise AssertionError(f"no 'Code: ' line in the message:\n{text}")


OUTAGE_TOPIC = "test.mail-outage"


def outage_smtp_port(settings: Settings) -> int:
    """Where `OutageMailConsumer` sends: one above the stack's SMTP port, in the test
    layout's range, with nothing listening until a test starts its own server there."""
    port = urlsplit(settings.smtp_url).port
    assert port is not None, settings.smtp_url
    return port + 1


class OutageMailConsumer(MailConsumer):
    """The mail consumer in its own group, on its own topic, pointed at an SMTP port the
    test controls: an outage is simulated without stopping the shared SMTP server."""

    name = "test-mail-outage"
    topics = (OUTAGE_TOPIC,)

    def __init__(self, settings: Settings) -> None:
        port = outage_smtp_port(settings)
        super().__init__(settings.replace(smtp_url=f"smtp://127.0.0.1:{port}"))
