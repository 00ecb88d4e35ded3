"""The mail consumer: sends password-reset and email-verification messages over SMTP, a
notice when a password was changed (`identity.password.changed`) or the account's deletion
was asked for or cancelled (`account.deletion.requested` / `.cancelled`), no link in them,
and the link to a data export once it is ready (`privacy.export.ready`).

Identity writes `identity.password_reset.requested` / `identity.email_verification.requested`
events through the outbox with the one-time token sealed (`storage.secrets.Sealer`), so
neither the outbox nor Kafka holds a usable token; only this consumer opens it, right before
sending. Payload: `{"user_id", "token_sealed", "expires_at"}`. Events carry no address: the
consumer looks the account's email and username up in PostgreSQL when it sends (whoever can
read the broker reads its events), and sends nothing for an account that no longer exists.

Delivery is at-least-once. The message is sent inside `apply`, i.e. before the ledger's
transaction commits: a crash (or a later event of the same batch failing) between the send
and the commit makes Kafka redeliver the event and the mail goes out again. Each copy carries
the same `Message-ID` (derived from the event id), so a redelivery is recognizable. Sending
after the commit instead would lose the mail on such a crash, which is worse for a reset link.

Failures: an SMTP outage (connection refused, timeout, disconnect, 4xx, authentication or a
server-wide refusal) raises `Unavailable`, which the runner retries with backoff for as long
as it lasts, so an outage delays mail and never dead-letters it. A malformed payload, a token
that does not open, or a recipient the server permanently refuses (5xx) cannot succeed on a
retry: those are dead-lettered with the reason. An expired token is skipped. The raw token is
never logged.
"""

from __future__ import annotations

import logging
import re
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from email.message import EmailMessage
from email.utils import format_datetime, parseaddr
from typing import ClassVar
from urllib.parse import parse_qs, quote, unquote, urlsplit

import aiosmtplib

from actors.consumers.notices import (
    DELETION_CANCELLED,
    DELETION_REQUESTED,
    NOTICES,
    PASSWORD_CHANGED,
)
from actors.settings import ActorSettings
from storage.db import Connection
from storage.errors import ConfigError, NovaError, PoisonEvent, Unavailable
from storage.events import Event, payload_id
from storage.export_links import ExportLinks
from storage.kafka.consumer import Consumer
from storage.repositories.users import fetch_user
from storage.secrets import Sealer
from storage.settings import env_name

log = logging.getLogger(__name__)

PASSWORD_RESET = "identity.password_reset.requested"
EMAIL_VERIFICATION = "identity.email_verification.requested"
EXPORT_READY = "privacy.export.ready"


# A conservative check: the SMTP server has the last word, this only keeps header injection
# (CR/LF) and obvious garbage out of the envelope.
_ADDRESS = re.compile(r"^[^\s@<>\"]+@[^\s@<>\"]+$")


class RecipientRefused(NovaError):
    """The SMTP server refused every recipient for good (5xx): sending again cannot help."""


@dataclass(frozen=True)
class SmtpTarget:
    """Where and how to connect, parsed from `NOVA_SMTP_URL`."""

    hostname: str
    port: int
    use_tls: bool
    start_tls: bool
    username: str | None
    password: str | None

    @classmethod
    def parse(cls, url: str) -> SmtpTarget:
        """`smtp://[user:pass@]host[:port][?starttls=true]` or `smtps://...` (implicit TLS)."""
        try:
            parts = urlsplit(url)
            port = parts.port
        except ValueError as exc:
            raise ConfigError(f"{env_name('smtp_url')}: {exc}") from exc
        if parts.scheme not in ("smtp", "smtps") or not parts.hostname:
            raise ConfigError(f"{env_name('smtp_url')} must be smtp://host[:port] or smtps://...")
        query = parse_qs(parts.query)
        start_tls = query.get("starttls", ["false"])[-1].lower() in ("1", "true", "yes", "on")
        use_tls = parts.scheme == "smtps"
        if use_tls and start_tls:
            raise ConfigError(
                f"{env_name('smtp_url')}: smtps:// and starttls=true are mutually exclusive"
            )
        if port is None:
            port = 465 if use_tls else 587 if start_tls else 25
        return cls(
            hostname=parts.hostname,
            port=port,
            use_tls=use_tls,
            start_tls=start_tls,
            username=unquote(parts.username) if parts.username else None,
            password=unquote(parts.password) if parts.password is not None else None,
        )

    async def send(self, message: EmailMessage, timeout_s: float) -> None:
        """Send one message; `RecipientRefused` when every recipient is refused for good,
        `Unavailable` for anything that may pass (a deferral, an outage, a timeout)."""
        try:
            await aiosmtplib.send(
                message,
                hostname=self.hostname,
                port=self.port,
                username=self.username,
                password=self.password,
                use_tls=self.use_tls,
                start_tls=self.start_tls,
                timeout=timeout_s,
            )
        except aiosmtplib.SMTPRecipientsRefused as exc:
            codes = [refused.code for refused in exc.recipients]
            if codes and all(code >= 500 for code in codes):
                raise RecipientRefused(
                    "; ".join(f"{r.code} {r.message}" for r in exc.recipients)
                ) from exc
            raise Unavailable("smtp", f"recipient deferred: {_describe(exc)}") from exc
        except (aiosmtplib.SMTPException, OSError, TimeoutError) as exc:
            raise Unavailable("smtp", _describe(exc)) from exc


@dataclass(frozen=True, repr=False)
class _Request:
    """A validated event payload (the raw token is only ever held here, never logged)."""

    user_id: uuid.UUID
    token: str
    expires_at: datetime

    def __repr__(self) -> str:
        return f"_Request(user_id={self.user_id}, expires_at={self.expires_at.isoformat()})"


@dataclass(frozen=True)
class Recipient:
    """Whom a mail goes to: the account's address and the name it is greeted by."""

    email: str
    username: str


_KINDS: dict[str, tuple[str, str, str]] = {
    # type: (subject, link path, what the link does)
    PASSWORD_RESET: (
        "Reset your Nova password",
        "/reset-password",
        "Someone (hopefully you) asked to reset the password of your Nova account.\n"
        "Open this link to choose a new password:",
    ),
    EMAIL_VERIFICATION: (
        "Verify your Nova email",
        "/verify-email",
        "Please confirm that this address belongs to your Nova account.\n"
        "Open this link to verify it:",
    ),
}


class MailConsumer(Consumer[ActorSettings]):
    """Renders and sends the one-time-token mail identity asks for."""

    name: ClassVar[str] = "mail"
    topics: ClassVar[tuple[str, ...]] = (
        PASSWORD_RESET,
        EMAIL_VERIFICATION,
        PASSWORD_CHANGED,
        EXPORT_READY,
        DELETION_REQUESTED,
        DELETION_CANCELLED,
    )

    def __init__(self, settings: ActorSettings) -> None:
        super().__init__(settings)
        self._sealer: Sealer | None = None
        self._target: SmtpTarget | None = None

    async def start(self) -> None:
        settings = self.settings
        # A missing key or a bad URL stops the consumer here (its loop restarts with backoff
        # until an operator fixes it) instead of dead-lettering every message.
        self._sealer = Sealer.from_settings(settings)
        self._target = SmtpTarget.parse(settings.smtp_url)

    async def apply(self, event: Event, conn: Connection) -> None:
        if self._sealer is None:
            raise ConfigError("MailConsumer.apply called before start()")
        if event.type in NOTICES:
            user_id = payload_id(event.payload, "user_id")
            to = await self._recipient(conn, user_id, event)
            if to is None:
                return
            notice = self.render_notice(event, to, now=datetime.now(UTC))
            await self._send(notice, event)
            log.info("mail: sent %s to user %s (event %s)", event.type, user_id, event.event_id)
            return
        if event.type == EXPORT_READY:
            await self._export_ready(event, conn)
            return
        if event.type not in _KINDS:
            raise PoisonEvent(f"mail: unexpected event type {event.type!r}")
        request = self._parse(event, self._sealer)
        now = datetime.now(UTC)
        if request.expires_at <= now:
            log.info(
                "mail: %s for user %s expired at %s; not sent (event %s)",
                event.type,
                request.user_id,
                request.expires_at.isoformat(),
                event.event_id,
            )
            return
        recipient = await self._recipient(conn, request.user_id, event)
        if recipient is None:
            return
        message = self.render(event, request, recipient, now=now)
        await self._send(message, event)
        log.info("mail: sent %s to user %s (event %s)", event.type, request.user_id, event.event_id)

    async def _export_ready(self, event: Event, conn: Connection) -> None:
        """'Your data is ready', with the archive's signed link (`storage.export_links`);
        nothing once the link has expired."""
        user_id = payload_id(event.payload, "user_id")
        export_id = payload_id(event.payload, "export_id")
        expires = event.payload.get("expires")
        if not isinstance(expires, int):
            raise PoisonEvent("mail: payload field 'expires' is missing or not an integer")
        if expires <= datetime.now(UTC).timestamp():
            return
        to = await self._recipient(conn, user_id, event)
        if to is None:
            return
        link = ExportLinks(self.settings.secret_key).url(
            self.settings.public_url, export_id, expires
        )
        until = datetime.fromtimestamp(expires, UTC).strftime("%Y-%m-%d %H:%M UTC")
        greeting = f"Hello {to.username}" if to.username else "Hello"
        message = self._headed(to.email, "Your Nova data is ready", event, datetime.now(UTC))
        message.set_content(
            f"{greeting},\n\n"
            "The archive of your Nova data that you asked for is ready. Download it here "
            f"until {until}, when it is deleted:\n\n{link}\n\n"
            "Anyone with this link can download your data: do not share it.\n\n"
            "-- \nNova\n"
        )
        await self._send(message, event)
        log.info("mail: sent %s to user %s (event %s)", event.type, user_id, event.event_id)

    async def recipient(self, conn: Connection, user_id: uuid.UUID) -> Recipient | None:
        """The account's address and username, read in the ledger's transaction; None if
        the account no longer exists."""
        user = await fetch_user(conn, user_id)
        return None if user is None else Recipient(user.email, user.username)

    async def _recipient(
        self, conn: Connection, user_id: uuid.UUID, event: Event
    ) -> Recipient | None:
        found = await self.recipient(conn, user_id)
        if found is None:
            log.info(
                "mail: %s for user %s, whose account is gone; not sent (event %s)",
                event.type,
                user_id,
                event.event_id,
            )
            return None
        email = found.email.strip()
        if not _ADDRESS.match(email):
            raise PoisonEvent(f"mail: the address of user {user_id} is not an email address")
        return Recipient(email, _one_line(found.username))

    def _parse(self, event: Event, sealer: Sealer) -> _Request:
        payload = event.payload
        user_id = payload_id(payload, "user_id")
        fields: dict[str, str] = {}
        for key in ("token_sealed", "expires_at"):
            value = payload.get(key)
            if not isinstance(value, str) or not value:
                raise PoisonEvent(f"mail: payload field {key!r} is missing or not a string")
            fields[key] = value
        try:
            expires_at = datetime.fromisoformat(fields["expires_at"])
        except ValueError as exc:
            raise PoisonEvent(f"mail: expires_at is not ISO-8601: {exc}") from exc
        if expires_at.tzinfo is None:
            expires_at = expires_at.replace(tzinfo=UTC)
        # ConfigError (not retriable) if it does not open: a wrong key or a tampered value.
        raw = sealer.open(fields["token_sealed"])
        try:
            token = raw.decode("ascii")
        except UnicodeDecodeError as exc:
            raise PoisonEvent("mail: the sealed token is not ASCII") from exc
        if not token or not token.isprintable() or any(c.isspace() for c in token):
            raise PoisonEvent("mail: the sealed token is empty or holds whitespace")
        return _Request(user_id=user_id, token=token, expires_at=expires_at)

    def render(
        self, event: Event, request: _Request, to: Recipient, *, now: datetime
    ) -> EmailMessage:
        """The plain-text message for `event`; the link and the `Code: ` line hold the token."""
        subject, path, intro = _KINDS[event.type]
        link = f"{self.settings.public_url.rstrip('/')}{path}?token={quote(request.token, safe='')}"
        expires = request.expires_at.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")
        greeting = f"Hello {to.username}" if to.username else "Hello"
        message = self._headed(to.email, subject, event, now)
        message.set_content(
            f"{greeting},\n\n"
            f"{intro}\n\n"
            f"{link}\n\n"
            "An app that asks for a code instead takes this one:\n\n"
            f"Code: {request.token}\n\n"
            f"It expires at {expires}. If you did not ask for this, ignore this message.\n\n"
            "-- \nNova\n"
        )
        return message

    def render_notice(self, event: Event, to: Recipient, *, now: datetime) -> EmailMessage:
        """A notice about the account (`NOTICES`), sent to its address."""
        subject, text = NOTICES[event.type]
        erase_after = str(event.payload.get("erase_after") or "")
        when = (
            datetime.fromisoformat(erase_after).strftime("%Y-%m-%d %H:%M UTC")
            if erase_after
            else ""
        )
        greeting = f"Hello {to.username}" if to.username else "Hello"
        message = self._headed(to.email, subject, event, now)
        message.set_content(f"{greeting},\n\n{text.format(erase_after=when)}\n\n-- \nNova\n")
        return message

    def _headed(self, to: str, subject: str, event: Event, now: datetime) -> EmailMessage:
        message = EmailMessage()
        message["From"] = self.settings.mail_from
        message["To"] = to
        message["Subject"] = subject
        message["Date"] = format_datetime(now)
        message["Message-ID"] = _message_id(event, self.settings.mail_from)
        message["Auto-Submitted"] = "auto-generated"
        return message

    async def _send(self, message: EmailMessage, event: Event) -> None:
        target = self._target
        if target is None:
            raise ConfigError("MailConsumer used before start()")
        try:
            await target.send(message, self.settings.smtp_timeout_s)
        except RecipientRefused as refused:
            raise PoisonEvent(
                f"mail: the SMTP server refused the recipient of event {event.event_id} ({refused})"
            ) from refused


def _describe(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"


def _one_line(text: str) -> str:
    """Usernames go into the body only; still, keep them to one line."""
    return " ".join(text.split())


def _message_id(event: Event, mail_from: str) -> str:
    """Stable per event, so every copy of a redelivered mail has the same Message-ID."""
    _, address = parseaddr(mail_from)
    domain = address.rpartition("@")[2] or "nova.localhost"
    return f"<{event.event_id}@{domain}>"
