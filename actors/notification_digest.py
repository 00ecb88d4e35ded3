"""The notification email digest: unread notifications mailed to people who are away.

Every `NOVA_NOTIFICATION_DIGEST_POLL_S` the job (run by the `nova-notification-digest`
actor, `deployments.jobs`) takes up to `NOVA_NOTIFICATION_DIGEST_BATCH` users who

* have a verified address and unread notifications no digest carried yet, of kinds they
  get by email, from nobody they muted, in no room they muted
  (`storage.repositories.notification_digests`);
* are away: no session signed in or refreshed and no feed read for
  `NOVA_NOTIFICATION_EMAIL_AFTER_S`, and no WebSocket open on any replica (the sockets'
  leases in Redis, `nova:ws:user:<id>`). An access token lives 15 minutes and a client
  refreshes it to keep working, so a session's `last_used_at` trails a client's last
  request by at most that;
* got no digest for `NOVA_NOTIFICATION_DIGEST_INTERVAL_S`;

and sends each one mail listing them (at most `NOVA_NOTIFICATION_DIGEST_MAX_ITEMS`), with
one-click unsubscribe links (`storage.unsubscribe_tokens`, RFC 8058 headers). The mail is
sent inside the user's transaction, which then marks what it carried: committed digests
are never sent again, and a crash between the send and the commit resends that digest
(with the same `Message-ID`). When Redis cannot say who is online, nobody is mailed that
round: a digest late beats mail to someone using the app.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from email.utils import format_datetime, parseaddr
from typing import cast
from urllib.parse import quote

import redis.asyncio as aioredis

from actors.consumers.mail import RecipientRefused, SmtpTarget
from actors.settings import ActorSettings
from storage.db import Database
from storage.errors import Unavailable, classify
from storage.repositories import notification_digests as digests
from storage.repositories.notification_digests import DigestItem, DigestRecipient
from storage.unsubscribe_tokens import UnsubscribeTokens

log = logging.getLogger(__name__)

SOCKETS_KEY = "nova:ws:user:{}"  # `gateway.transport.ws_caps`: a lease per open socket
UNSUBSCRIBE_PATH = "/unsubscribe"
_NOUNS = {
    "follow": "new followers",
    "like": "likes",
    "comment": "comments",
    "share": "shares",
    "mention": "mentions",
    "message": "chat messages",
}


@dataclass
class DigestRun:
    """What one run did."""

    candidates: int = 0
    mailed: int = 0
    notifications: int = 0
    refused: int = 0


class DigestJob:
    """Finds who is owed a digest and mails it; `run` loops, `run_once` is one round."""

    def __init__(self, db: Database, redis: aioredis.Redis, settings: ActorSettings) -> None:
        self._db = db
        self._redis = redis
        self._settings = settings
        self._target = SmtpTarget.parse(settings.smtp_url)
        self._tokens = UnsubscribeTokens(settings.secret_key)
        self.totals = DigestRun()

    async def run(self) -> None:
        while True:
            try:
                done = await self.run_once()
                self.totals.mailed += done.mailed
                self.totals.notifications += done.notifications
            except Unavailable as exc:  # SMTP, PostgreSQL or Redis away: next round
                log.warning("notification digest postponed: %s", exc)
            await asyncio.sleep(self._settings.notification_digest_poll_s)

    async def run_once(self, now: datetime | None = None) -> DigestRun:
        settings = self._settings
        now = now or datetime.now(UTC)
        since = now - timedelta(seconds=settings.notification_max_age_s)
        sent_before = now - timedelta(seconds=settings.notification_digest_interval_s)
        async with self._db.connection() as conn:
            found = await digests.digest_candidates(
                conn,
                since=since,
                idle_before=now - timedelta(seconds=settings.notification_email_after_s),
                sent_before=sent_before,
                limit=settings.notification_digest_batch,
            )
        done = DigestRun(candidates=len(found))
        away = await self._without_sockets(found)
        for recipient in away:
            async with self._db.transaction() as conn:
                if not await digests.claim(conn, recipient.user_id, sent_before):
                    continue  # another job has them, or just mailed them
                items = await digests.digest_items(
                    conn,
                    recipient.user_id,
                    since=since,
                    limit=settings.notification_digest_max_items,
                )
                if not items:
                    continue
                if await self._send(self.render(recipient, items, now=now)):
                    done.mailed += 1
                    done.notifications += len(items)
                else:
                    done.refused += 1
                await digests.record(conn, recipient.user_id, [item.id for item in items])
        if done.mailed or done.refused:
            log.info(
                "notification digest: %d mailed (%d notifications), %d refused by the server",
                done.mailed,
                done.notifications,
                done.refused,
            )
        return done

    async def _without_sockets(self, found: list[DigestRecipient]) -> list[DigestRecipient]:
        if not found:
            return []
        now = time.time()
        try:
            async with self._redis.pipeline(transaction=False) as pipe:
                for recipient in found:
                    pipe.zcount(SOCKETS_KEY.format(recipient.user_id), now, "+inf")
                counts = cast(list[int], await pipe.execute())
        except Exception as exc:
            raise Unavailable(
                "redis", f"who is online is unknown: {classify(exc, 'redis')}"
            ) from exc
        return [r for r, sockets in zip(found, counts, strict=True) if not sockets]

    def unsubscribe_url(self, user_id: uuid.UUID, kind: str | None) -> str:
        token = self._tokens.sign(user_id, kind, ttl_s=self._settings.unsubscribe_token_ttl_s)
        base = self._settings.public_url.rstrip("/")
        return f"{base}{UNSUBSCRIBE_PATH}?token={quote(token, safe='')}"

    def render(
        self, to: DigestRecipient, items: list[DigestItem], *, now: datetime
    ) -> EmailMessage:
        settings = self._settings
        count = len(items)
        stop_all = self.unsubscribe_url(to.user_id, None)
        message = EmailMessage()
        message["From"] = settings.mail_from
        message["To"] = to.email
        message["Subject"] = (
            "1 new notification on Nova" if count == 1 else f"{count} new notifications on Nova"
        )
        message["Date"] = format_datetime(now)
        message["Message-ID"] = _message_id(to.user_id, items, settings.mail_from)
        message["Auto-Submitted"] = "auto-generated"
        message["List-Unsubscribe"] = f"<{stop_all}>"
        message["List-Unsubscribe-Post"] = "List-Unsubscribe=One-Click"
        lines = "\n".join(f"- {describe(item)}" for item in items)
        kinds = sorted({item.kind for item in items})
        per_kind = "\n".join(
            f"Stop emails about {_NOUNS[kind]}: {self.unsubscribe_url(to.user_id, kind)}"
            for kind in kinds
            if kind in _NOUNS
        )
        message.set_content(
            f"Hello {_one_line(to.username)},\n\n"
            "While you were away:\n\n"
            f"{lines}\n\n"
            f"Open Nova to catch up: {settings.public_url.rstrip('/')}/\n\n"
            "-- \n"
            "You get this because you have unread notifications and have not used Nova "
            "for a while.\n"
            f"{per_kind}\n"
            f"Stop all notification emails: {stop_all}\n"
        )
        return message

    async def _send(self, message: EmailMessage) -> bool:
        """True once sent; False if the server permanently refuses the recipient (the
        digest is recorded all the same: retrying cannot help). An outage raises
        `Unavailable`, which rolls the user's digest back for the next round."""
        try:
            await self._target.send(message, self._settings.smtp_timeout_s)
        except RecipientRefused as refused:
            log.warning("notification digest refused for a recipient: %s", refused)
            return False
        return True


def describe(item: DigestItem) -> str:
    """One line of the digest, in words."""
    who = item.actor_name
    others = item.actor_count - 1
    if others > 0:
        who = f"{who} and {others} other{'s' if others > 1 else ''}"
    if item.kind == "follow":
        return f"{who} followed you"
    if item.kind == "like":
        return f"{who} liked your post"
    if item.kind == "comment":
        return f"{who} commented on your post"
    if item.kind == "share":
        return f"{who} shared your post"
    if item.kind == "mention":
        return f"{who} mentioned you in a post"
    messages = item.message_count or 1
    noun = "message" if messages == 1 else "messages"
    where = f" in {_one_line(item.room_name)}" if item.room_name else ""
    return f"{messages} new {noun} from {who}{where}"


def _one_line(text: str) -> str:
    return " ".join(text.split())


def _message_id(user_id: uuid.UUID, items: list[DigestItem], mail_from: str) -> str:
    """The same for the same digest, so a digest resent after a crash is recognizable."""
    digest = hashlib.sha256(b"".join(item.id.bytes for item in items)).hexdigest()[:24]
    _, address = parseaddr(mail_from)
    domain = address.rpartition("@")[2] or "nova.localhost"
    return f"<digest-{user_id.hex}-{digest}@{domain}>"
