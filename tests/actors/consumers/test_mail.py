"""Mail: the embedded SMTP server, and the mail consumer from outbox event to Maildir.

The stack tests use the production `MailConsumer` that `deploy()` starts (group `mail`);
they never start a second member of it. Failure handling is tested against SMTP servers
run inside the test on 127.0.0.1 (or a port nobody listens on), never by stopping the
shared one.
"""

from __future__ import annotations

import asyncio
import contextlib
import email
import email.policy
import logging
import socket
import stat
import uuid
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from pathlib import Path
from typing import Any, cast

import aiosmtplib
import asyncpg
import pytest
import ray
from aiosmtpd.handlers import Mailbox
from aiosmtpd.smtp import SMTP, Envelope, Session

from actors.consumers.mail import (
    EMAIL_VERIFICATION,
    PASSWORD_RESET,
    MailConsumer,
    Recipient,
    SmtpTarget,
)
from actors.consumers.notices import PASSWORD_CHANGED
from deployments.settings import Settings
from deployments.stack import Layout, Stack
from storage.db import Connection, Database
from storage.errors import ConfigError, PoisonEvent, Unavailable
from storage.events import Event
from storage.outbox.rows import add_event
from storage.secrets import Sealer, new_secret_key
from tests.conftest import Consumers, Topics, wait_until
from tests.support.graphql import post, register
from tests.support.mailbox import (
    OUTAGE_TOPIC,
    extract_token,
    matching,
    outage_smtp_port,
    wait_for_mail,
)

RESET_REQUEST = "mutation($e: String!) { requestPasswordReset(email: $e) }"
# The production consumer may still be joining its group when the first test writes.
DELIVERY_TIMEOUT_S = 60.0


def _address(tag: str) -> str:
    return f"{tag}-{uuid.uuid4().hex[:12]}@example.test"


def _request_event(
    sealer: Sealer,
    *,
    kind: str = PASSWORD_RESET,
    token: str,
    user_id: str | None = None,
    expires_in: timedelta = timedelta(hours=1),
) -> Event:
    """An event exactly as identity writes it (the contract in actors.consumers.mail)."""
    user = user_id or str(uuid.uuid4())
    return Event(
        type=kind,
        aggregate_id=user,
        payload={
            "user_id": user,
            "token_sealed": sealer.seal(token.encode()),
            "expires_at": (datetime.now(UTC) + expires_in).isoformat(),
        },
    )


async def _account(db: Database, email: str, username: str = "") -> str:
    """An account with this address (the consumer looks it up by the event's user id)."""
    user_id = uuid.uuid4()
    await db.fetchval(
        "INSERT INTO users (id, username, email, password_hash) VALUES ($1, $2, $3, 'x')",
        user_id,
        username or f"ada_{user_id.hex[:12]}",
        email,
    )
    return str(user_id)


async def _write(db: Database, event: Event, *, topic: str | None = None) -> None:
    async with db.transaction() as conn:
        await add_event(conn, event, topic=topic)


# -- the stack -----------------------------------------------------------------------------


def test_stack_provides_smtp_url_public_url_and_a_lasting_secret_key(tmp_path: Path) -> None:
    layout = Layout(
        "unit", tmp_path / "state", port_base=23000, http_port=23800, dashboard_port=1, grpc_port=0
    )
    env = Stack(layout, environ={}).environment()
    assert env["NOVA_SMTP_URL"] == "smtp://127.0.0.1:23025"
    assert env["NOVA_PUBLIC_URL"] == "http://127.0.0.1:23800"
    key_file = layout.path("secrets", "secret_key")
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    Sealer(env["NOVA_SECRET_KEY"])  # a valid Fernet key
    # Reused on the next start: tokens sealed before a restart still open.
    assert Stack(layout, environ={}).environment()["NOVA_SECRET_KEY"] == env["NOVA_SECRET_KEY"]
    # Set ones win, and a set SMTP URL means no embedded SMTP server.
    mine = {
        "NOVA_SECRET_KEY": new_secret_key(),
        "NOVA_SMTP_URL": "smtp://127.0.0.1:2525",
        "NOVA_PUBLIC_URL": "https://nova.example",
    }
    stack = Stack(layout, environ=mine)
    assert not stack.embedded()["smtp"]
    assert {k: stack.environment()[k] for k in mine} == mine
    assert stack.status()["smtp"] == "external"


@pytest.mark.stack
async def test_embedded_smtp_server_delivers_to_the_maildir(
    stack: Stack, settings: Settings
) -> None:
    assert stack.status()["smtp"] == "running"
    assert settings.smtp_url == f"smtp://127.0.0.1:{stack.layout.smtp_port}"
    env_file = stack.layout.env_file.read_text()
    for key in ("NOVA_SMTP_URL", "NOVA_PUBLIC_URL", "NOVA_SECRET_KEY"):
        assert f"\n{key}=" in f"\n{env_file}", key
    to = _address("direct")
    message = EmailMessage()
    message["From"] = settings.mail_from
    message["To"] = to
    message["Subject"] = "hello from the test"
    message.set_content("Code: abc123\n")
    target = SmtpTarget.parse(settings.smtp_url)
    await aiosmtplib.send(message, hostname=target.hostname, port=target.port, timeout=10)
    received = await wait_for_mail(stack.layout.mail_dir, to=to, subject_contains="hello")
    assert extract_token(received) == "abc123"


# -- end to end: outbox → relay → Kafka → MailConsumer → SMTP → Maildir ---------------------


@pytest.mark.stack
@pytest.mark.parametrize(
    ("kind", "subject", "path"),
    [
        (PASSWORD_RESET, "Reset your Nova password", "/reset-password"),
        (EMAIL_VERIFICATION, "Verify your Nova email", "/verify-email"),
    ],
)
async def test_requested_event_is_mailed_with_its_token(
    db: Database, stack: Stack, settings: Settings, kind: str, subject: str, path: str
) -> None:
    to = _address("reset" if kind == PASSWORD_RESET else "verify")
    username = f"ada_{uuid.uuid4().hex[:12]}"
    user = await _account(db, to, username)
    token = f"tok-{uuid.uuid4().hex}"
    event = _request_event(Sealer.from_settings(settings), kind=kind, token=token, user_id=user)
    await _write(db, event)
    message = await wait_for_mail(
        stack.layout.mail_dir, to=to, subject_contains=subject, timeout_s=DELIVERY_TIMEOUT_S
    )
    assert extract_token(message) == token
    assert message["Subject"] == subject
    assert message["From"] == settings.mail_from
    assert str(event.event_id) in message["Message-ID"]
    body = message.get_content()
    assert f"{settings.public_url}{path}?token={token}" in body
    assert f"Hello {username}," in body


@pytest.mark.stack
async def test_expired_token_is_not_mailed(db: Database, stack: Stack, settings: Settings) -> None:
    sealer = Sealer.from_settings(settings)
    to = _address("expiry")
    user = await _account(db, to)  # one user: both events share a partition, keeping order
    expired = _request_event(sealer, token="old", user_id=user, expires_in=-timedelta(minutes=1))
    valid = _request_event(sealer, token="new", user_id=user)
    await _write(db, expired)
    await _write(db, valid)
    message = await wait_for_mail(
        stack.layout.mail_dir, to=to, subject_contains="Reset", timeout_s=DELIVERY_TIMEOUT_S
    )
    assert extract_token(message) == "new"
    # The expired event was consumed (it is in the ledger), and sent nothing.
    handled = await db.fetchval(
        "SELECT count(*) FROM processed_events WHERE consumer = 'mail' AND event_id = $1",
        expired.event_id,
    )
    assert handled == 1
    assert {extract_token(m) for m in matching(stack.layout.mail_dir, to=to)} == {"new"}


@pytest.mark.stack
async def test_mail_waits_out_an_smtp_outage_and_is_not_dead_lettered(
    db: Database, topics: Topics, consumers: Consumers, settings: Settings, tmp_path: Path
) -> None:
    await topics.create(OUTAGE_TOPIC, partitions=1)
    handle = consumers.start("tests.support.mailbox:OutageMailConsumer")
    to = _address("outage")
    user = await _account(db, to)
    event = _request_event(Sealer.from_settings(settings), token="after-outage", user_id=user)
    await _write(db, event, topic=OUTAGE_TOPIC)

    async def retrying() -> Any:
        status: dict[str, Any] = await asyncio.to_thread(
            ray.get, handle.status.remote(), timeout=30
        )
        error = status.get("last_error") or ""
        return status if status.get("retries", 0) >= 2 and "smtp unavailable" in error else None

    await wait_until(retrying, timeout_s=DELIVERY_TIMEOUT_S, message="retries against SMTP")
    mail_dir = tmp_path / "mail"
    async with _smtp_server(Mailbox(mail_dir), port=outage_smtp_port(settings)):
        message = await wait_for_mail(mail_dir, to=to, subject_contains="Reset", timeout_s=30)
    assert extract_token(message) == "after-outage"
    letters = await db.fetchval(
        "SELECT count(*) FROM dead_letters WHERE consumer = 'test-mail-outage'"
    )
    assert letters == 0


async def _read_as_an_outsider(
    settings: Settings, topics: tuple[str, ...], key: str, *, timeout_s: float = 60.0
) -> dict[str, bytes]:
    """What anyone on the machine reads off the broker: a plain client, no group, from
    the start of each topic; the value of the first record per topic keyed `key`."""
    from aiokafka import AIOKafkaConsumer, TopicPartition

    consumer = AIOKafkaConsumer(
        bootstrap_servers=settings.kafka_bootstrap,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        request_timeout_ms=10_000,
    )
    found: dict[str, bytes] = {}
    await consumer.start()
    try:
        await consumer.topics()  # the cluster's metadata, with every topic's partitions
        partitions = [
            TopicPartition(topic, partition)
            for topic in topics
            for partition in sorted(consumer.partitions_for_topic(topic) or ())
        ]
        consumer.assign(partitions)
        await consumer.seek_to_beginning(*partitions)
        deadline = asyncio.get_running_loop().time() + timeout_s
        while len(found) < len(topics) and asyncio.get_running_loop().time() < deadline:
            batches = await consumer.getmany(timeout_ms=500, max_records=500)
            for records in batches.values():
                for record in records:
                    if record.key is not None and record.key.decode() == key:
                        found.setdefault(record.topic, record.value or b"")
    finally:
        await consumer.stop()
    assert set(found) == set(topics), f"only {sorted(found)} carried {key} in {timeout_s}s"
    return found


@pytest.mark.stack
async def test_identity_events_on_the_broker_carry_no_email_address(
    http_url: str, stack: Stack, settings: Settings
) -> None:
    account = await register(http_url)  # mails a verification link
    assert (await post(http_url, RESET_REQUEST, {"e": account.email})).ok()
    change = "mutation($c: String!, $n: String!) { changePassword(currentPassword: $c, newPassword: $n) }"  # noqa: E501
    changed = {"c": account.password, "n": f"{account.password} again"}
    assert (await post(http_url, change, changed, token=account.access_token)).ok()
    topics = (EMAIL_VERIFICATION, PASSWORD_RESET, PASSWORD_CHANGED)
    values = await _read_as_an_outsider(settings, topics, account.id)
    for topic, value in values.items():
        assert account.email.encode() not in value, f"{topic} carries the address: {value!r}"
        assert account.username.encode() not in value, f"{topic} carries the name: {value!r}"
        assert b'"email"' not in value, f"{topic}: {value!r}"
    # The mail consumer found the address itself.
    for subject in ("Verify", "Reset", "password was changed"):
        message = await wait_for_mail(
            stack.layout.mail_dir,
            to=account.email,
            subject_contains=subject,
            timeout_s=DELIVERY_TIMEOUT_S,
        )
        assert account.username in message.get_content()


# -- the consumer against SMTP servers run by the test -------------------------------------


class _Recorder:
    """An aiosmtpd handler that keeps envelopes, or answers RCPT with a fixed refusal."""

    def __init__(self, rcpt_reply: str | None = None) -> None:
        self.rcpt_reply = rcpt_reply
        self.envelopes: list[Envelope] = []

    async def handle_RCPT(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, options: Any
    ) -> str:
        if self.rcpt_reply:
            return self.rcpt_reply
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        self.envelopes.append(envelope)
        return "250 Message accepted"


@contextlib.asynccontextmanager
async def _smtp_server(handler: Any, *, port: int = 0) -> AsyncIterator[int]:
    """An aiosmtpd server on 127.0.0.1 in this event loop while the block runs; its port."""
    server = await asyncio.get_running_loop().create_server(
        lambda: SMTP(handler, hostname="nova-test"), "127.0.0.1", port
    )
    try:
        yield int(server.sockets[0].getsockname()[1])
    finally:
        server.close()
        await server.wait_closed()


@pytest.fixture
def consumer_settings() -> Callable[[str], Settings]:
    """Settings for a MailConsumer under test: one secret key, the given SMTP URL."""
    key = new_secret_key()
    return lambda url: Settings(
        secret_key=key, smtp_url=url, smtp_timeout_s=1.0, public_url="https://nova.example/"
    )


def _no_conn() -> asyncpg.Connection:
    # `_OneAccount` looks nothing up: the ledger's connection is not touched.
    return cast(asyncpg.Connection, None)


ADA = Recipient("a@example.test", "ada")


class _OneAccount(MailConsumer):
    """The consumer with every event's account answered without PostgreSQL."""

    def __init__(self, settings: Settings, to: Recipient | None) -> None:
        super().__init__(settings)
        self._to = to

    async def recipient(self, conn: Connection, user_id: uuid.UUID) -> Recipient | None:
        return self._to


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def _started(settings: Settings, to: Recipient | None = ADA) -> MailConsumer:
    consumer = _OneAccount(settings, to)
    await consumer.start()
    return consumer


async def test_sent_message_carries_the_link_code_and_a_stable_message_id(
    consumer_settings: Callable[[str], Settings], caplog: pytest.LogCaptureFixture
) -> None:
    recorder = _Recorder()
    async with _smtp_server(recorder) as port:
        settings = consumer_settings(f"smtp://127.0.0.1:{port}")
        consumer = await _started(settings)
        token = f"secret-{uuid.uuid4().hex}"
        event = _request_event(Sealer.from_settings(settings), token=token)
        with caplog.at_level(logging.DEBUG):
            await consumer.apply(event, _no_conn())
            await consumer.apply(event, _no_conn())  # a redelivery
    assert [e.rcpt_tos for e in recorder.envelopes] == [["a@example.test"]] * 2
    first, again = (
        email.message_from_bytes(e.original_content or b"", policy=email.policy.default)
        for e in recorder.envelopes
    )
    assert first["Message-ID"] == again["Message-ID"] == f"<{event.event_id}@nova.localhost>"
    assert isinstance(first, EmailMessage)
    assert f"https://nova.example/reset-password?token={token}" in first.get_content()
    # (`mail.log` is the test's own SMTP server, which logs the whole DATA at debug level.)
    ours = [r.getMessage() for r in caplog.records if r.name != "mail.log"]
    assert not [line for line in ours if token in line], "the raw token must never be logged"
    assert any("sent identity.password_reset.requested" in line for line in ours)


async def test_smtp_down_or_silent_is_unavailable_so_the_runner_retries(
    consumer_settings: Callable[[str], Settings],
) -> None:
    settings = consumer_settings(f"smtp://127.0.0.1:{_closed_port()}")
    event = _request_event(Sealer.from_settings(settings), token="t")
    refused = await _started(settings)
    with pytest.raises(Unavailable, match="smtp unavailable") as exc_info:
        await refused.apply(event, _no_conn())
    assert exc_info.value.retriable

    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await asyncio.sleep(30)  # accepts, never greets
        writer.close()

    server = await asyncio.start_server(silent, "127.0.0.1", 0)
    try:
        port = server.sockets[0].getsockname()[1]
        mute = await _started(consumer_settings(f"smtp://127.0.0.1:{port}"))
        with pytest.raises(Unavailable, match="smtp unavailable"):
            await asyncio.wait_for(mute.apply(event, _no_conn()), 10)
    finally:
        server.close()


async def test_refused_recipient_is_dead_lettered_deferred_one_retried(
    consumer_settings: Callable[[str], Settings],
) -> None:
    cases: list[tuple[str, type[Exception]]] = [
        ("550 5.1.1 no such user", PoisonEvent),
        ("451 4.3.0 try later", Unavailable),
    ]
    for reply, expected in cases:
        recorder = _Recorder(reply)
        async with _smtp_server(recorder) as port:
            settings = consumer_settings(f"smtp://127.0.0.1:{port}")
            consumer = await _started(settings, Recipient("gone@example.test", "ada"))
            event = _request_event(Sealer.from_settings(settings), token="t")
            with pytest.raises(expected):
                await consumer.apply(event, _no_conn())


async def test_expired_malformed_or_foreign_events(
    consumer_settings: Callable[[str], Settings],
) -> None:
    # Nothing listens here: reaching SMTP at all would raise Unavailable.
    settings = consumer_settings(f"smtp://127.0.0.1:{_closed_port()}")
    consumer = await _started(settings)
    sealer = Sealer.from_settings(settings)
    expired = _request_event(sealer, token="t", expires_in=-timedelta(seconds=1))
    await consumer.apply(expired, _no_conn())  # skipped, no error
    good = _request_event(sealer, token="t")
    gone = await _started(settings, None)
    await gone.apply(good, _no_conn())  # the account is gone: skipped, no error

    injected = await _started(settings, Recipient("a@example.test\r\nBcc: x@example.test", "a"))
    with pytest.raises(PoisonEvent):
        await injected.apply(good, _no_conn())
    for broken in (
        {"user_id": None},
        {"user_id": "not an id"},
        {"expires_at": "tomorrow"},
        {"token_sealed": "not sealed"},
        {"token_sealed": Sealer(new_secret_key()).seal(b"t")},
    ):
        event = Event(type=good.type, aggregate_id="u", payload={**good.payload, **broken})
        with pytest.raises((PoisonEvent, ConfigError)) as exc_info:
            await consumer.apply(event, _no_conn())
        assert not exc_info.value.retriable, broken


async def test_consumer_needs_the_secret_key() -> None:
    with pytest.raises(ConfigError, match="NOVA_SECRET_KEY"):
        await MailConsumer(Settings()).start()


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("smtp://127.0.0.1:21025", ("127.0.0.1", 21025, False, False, None, None)),
        ("smtp://mail.example", ("mail.example", 25, False, False, None, None)),
        ("smtps://u%40x:p%3Aw@mail.example", ("mail.example", 465, True, False, "u@x", "p:w")),
        ("smtp://u:p@mail.example?starttls=true", ("mail.example", 587, False, True, "u", "p")),
    ],
)
def test_smtp_url_parsing(url: str, expected: tuple[Any, ...]) -> None:
    t = SmtpTarget.parse(url)
    assert (t.hostname, t.port, t.use_tls, t.start_tls, t.username, t.password) == expected


@pytest.mark.parametrize("url", ["http://mail.example", "smtp://", "smtps://h?starttls=true"])
def test_bad_smtp_url_is_a_config_error(url: str) -> None:
    with pytest.raises(ConfigError):
        SmtpTarget.parse(url)
