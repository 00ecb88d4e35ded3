"""The notification email digest end to end: notifications written by the consumer, a user
away for longer than the setting, the digest job's round (run here, with a short
`notification_email_after_s`), the mail in the SMTP sink, and its unsubscribe links.

The deployed digest job runs too, with the production hour: the users here are away for
minutes only, so it leaves them to the test's job."""

from __future__ import annotations

import re
import time
import uuid
from datetime import UTC, datetime
from email.message import EmailMessage
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

from actors.notification_digest import DigestJob, describe
from deployments.settings import Settings
from deployments.stack import Stack
from storage.db import Database
from storage.redis_client import make_redis
from storage.repositories.notification_digests import DigestItem
from storage.unsubscribe_tokens import BadToken, UnsubscribeTokens
from tests.support.chat import operation, subscribed
from tests.support.mailbox import matching, wait_for_mail
from tests.support.notifications import COMMENT, MUTE_USER, consumed, preferences
from tests.support.social import FOLLOW, LIKE, Member, call, create_post, make_members

AWAY_S = 600  # how long the test's users have been away: past the test's setting only
SUBJECT = "on Nova"


def _job_settings(deployed: Settings) -> Settings:
    return deployed.replace(notification_email_after_s=60, notification_digest_interval_s=3600)


async def _away(db: Database, *members: Member) -> None:
    """Verified addresses, and nothing seen of them for `AWAY_S`."""
    ids = [m.uuid for m in members]
    async with db.transaction() as conn:
        await conn.execute(
            "UPDATE users SET email_verified_at = now(),"
            " last_seen_at = now() - make_interval(secs => $2) WHERE id = ANY($1::uuid[])",
            ids,
            AWAY_S,
        )
        await conn.execute(
            "UPDATE auth_sessions SET last_used_at = now() - make_interval(secs => $2)"
            " WHERE user_id = ANY($1::uuid[])",
            ids,
            AWAY_S,
        )


async def _run_digest(db: Database, settings: Settings) -> int:
    redis = make_redis(settings)
    try:
        done = await DigestJob(db, redis, settings).run_once()
    finally:
        await redis.aclose()
    return done.mailed


def _text(message: EmailMessage) -> str:
    body = message.get_body(preferencelist=("plain",))
    assert body is not None
    return str(body.get_content())


def _link(text: str, label: str) -> str:
    found = re.search(rf"^{re.escape(label)} (\S+)$", text, re.MULTILINE)
    assert found, text
    return found.group(1)


@pytest.mark.stack
async def test_an_away_user_gets_one_digest_without_muted_kinds_or_users(
    http_url: str, db: Database, deployed: Settings, stack: Stack
) -> None:
    me, friend, pest, liker = await make_members(db, deployed, 4, prefix="dg")
    post = await create_post(http_url, me, "digest me")
    (await call(http_url, pest, FOLLOW, id=me.id)).ok()
    await consumed(db, "graph.follow.created", follower_id=pest.id, followee_id=me.id)
    (await call(http_url, me, MUTE_USER, id=pest.id)).ok()  # after the row was written
    (await call(http_url, friend, FOLLOW, id=me.id)).ok()
    (await call(http_url, friend, COMMENT, id=post["id"])).ok()
    (await call(http_url, liker, LIKE, id=post["id"])).ok()  # LIKE: no email by default
    await consumed(db, "graph.follow.created", follower_id=friend.id, followee_id=me.id)
    await consumed(db, "social.comment.created", post_id=post["id"], user_id=friend.id)
    await consumed(db, "social.like.created", post_id=post["id"], user_id=liker.id)
    await _away(db, me)

    settings = _job_settings(deployed)
    assert await _run_digest(db, settings) >= 1
    mail_dir: Path = stack.layout.mail_dir
    address = f"{me.username}@example.com"
    message = await wait_for_mail(mail_dir, to=address, subject_contains=SUBJECT)
    text = _text(message)
    assert message["Subject"] == "2 new notifications on Nova"
    assert f"- {friend.username} followed you" in text
    assert f"- {friend.username} commented on your post" in text
    assert pest.username not in text
    assert liker.username not in text
    assert message["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    header = str(message["List-Unsubscribe"])
    assert header == f"<{_link(text, 'Stop all notification emails:')}>"

    # Again: nothing new to mail, and the interval holds anyway.
    assert await _run_digest(db, settings) == 0
    assert len(matching(mail_dir, to=address, subject_contains=SUBJECT)) == 1
    async with db.connection() as conn:
        emailed = await conn.fetch(
            "SELECT kind FROM notifications WHERE user_id = $1 AND emailed_at IS NOT NULL"
            " ORDER BY kind",
            me.uuid,
        )
    assert [r["kind"] for r in emailed] == ["comment", "follow"]


@pytest.mark.stack
async def test_the_unsubscribe_link_stops_digests_and_a_tampered_one_is_refused(
    http_url: str, db: Database, deployed: Settings, stack: Stack
) -> None:
    me, fan, later = await make_members(db, deployed, 3, prefix="un")
    (await call(http_url, fan, FOLLOW, id=me.id)).ok()
    await consumed(db, "graph.follow.created", follower_id=fan.id, followee_id=me.id)
    await _away(db, me)
    settings = _job_settings(deployed)
    await _run_digest(db, settings)
    address = f"{me.username}@example.com"
    message = await wait_for_mail(stack.layout.mail_dir, to=address, subject_contains=SUBJECT)
    link = _link(_text(message), "Stop all notification emails:")
    assert link.startswith(f"{deployed.public_url.rstrip('/')}/unsubscribe?token=")
    token = parse_qs(urlsplit(link).query)["token"][0]
    local = f"{http_url}/unsubscribe"
    found_before = await preferences(http_url, me)

    async with httpx.AsyncClient(timeout=30) as client:
        # Opening a link (as a mail scanner would) changes nothing: it asks to confirm.
        follows = _link(_text(message), "Stop emails about new followers:")
        follows_token = parse_qs(urlsplit(follows).query)
        asked = await client.get(local, params=follows_token)
        assert asked.status_code == 200, asked.text
        assert "<form method=post" in asked.text
        assert (await preferences(http_url, me))["kinds"] == found_before["kinds"]
        one_kind = await client.post(
            local, params=follows_token, headers={"Accept": "application/json"}
        )
        assert one_kind.json()["kind"] == "FOLLOW", one_kind.text
        found = await preferences(http_url, me)
        assert found["emailDigest"] is True
        assert {"kind": "FOLLOW", "inApp": True, "email": False} in found["kinds"]

        tampered = token[:-2] + ("AA" if not token.endswith("AA") else "BB")
        refused = await client.get(local, params={"token": tampered})
        assert refused.status_code == 403, refused.text
        assert "not valid" in refused.text
        other = token.replace(me.uuid.hex, fan.uuid.hex)
        assert (await client.get(local, params={"token": other})).status_code == 403
        assert (await client.get(local, params={"token": "junk"})).status_code == 400
        assert (await preferences(http_url, me))["emailDigest"] is True

        # The mail client's one-click POST (RFC 8058), then the link itself: idempotent.
        one_click = await client.post(
            local,
            params={"token": token},
            content=b"List-Unsubscribe=One-Click",
            headers={"Content-Type": "application/x-www-form-urlencoded"},
        )
        assert one_click.status_code == 200, one_click.text
        assert one_click.json()["unsubscribed"] is True
        # The confirmation page's button, from a browser: answered with a page.
        page = await client.post(local, params={"token": token}, headers={"Accept": "text/html"})
        assert page.status_code == 200
        assert page.headers["content-type"].startswith("text/html")
        assert "no longer get emails" in page.text
    assert (await preferences(http_url, me))["emailDigest"] is False

    # A new notification after the interval: no digest for someone unsubscribed.
    (await call(http_url, later, FOLLOW, id=me.id)).ok()
    await consumed(db, "graph.follow.created", follower_id=later.id, followee_id=me.id)
    async with db.transaction() as conn:
        await conn.execute(
            "UPDATE notification_digests SET last_sent_at = now() - interval '2 hours'"
            " WHERE user_id = $1",
            me.uuid,
        )
    await _run_digest(db, settings)
    assert len(matching(stack.layout.mail_dir, to=address, subject_contains=SUBJECT)) == 1


@pytest.mark.stack
async def test_someone_with_a_websocket_open_is_not_away(
    http_url: str, db: Database, deployed: Settings, stack: Stack
) -> None:
    me, fan = await make_members(db, deployed, 2, prefix="ws")
    (await call(http_url, fan, FOLLOW, id=me.id)).ok()
    await consumed(db, "graph.follow.created", follower_id=fan.id, followee_id=me.id)
    await _away(db, me)
    settings = _job_settings(deployed)
    address = f"{me.username}@example.com"
    async with subscribed(http_url, me) as session:
        # A round trip on the socket: its lease is taken by now.
        await session.execute(operation("query { unreadNotificationCount }"))
        await _run_digest(db, settings)
        assert matching(stack.layout.mail_dir, to=address, subject_contains=SUBJECT) == []
    await _run_digest(db, settings)  # the socket's lease went with it
    await wait_for_mail(stack.layout.mail_dir, to=address, subject_contains=SUBJECT)


def test_tokens_sign_verify_and_refuse() -> None:
    tokens = UnsubscribeTokens("secret-one")
    user = uuid.uuid4()
    token = tokens.sign(user, "like", ttl_s=60)
    found = tokens.verify(token)
    assert (found.user_id, found.kind) == (user, "like")
    assert tokens.verify(tokens.sign(user, None, ttl_s=60)).kind is None
    with pytest.raises(BadToken) as expired:
        tokens.verify(tokens.sign(user, None, ttl_s=60, now=time.time() - 120))
    assert expired.value.status == 403
    with pytest.raises(BadToken) as foreign:
        UnsubscribeTokens("secret-two").verify(token)
    assert foreign.value.status == 403
    widened = token.replace(".like.", ".all.")
    with pytest.raises(BadToken):
        tokens.verify(widened)
    with pytest.raises(BadToken) as malformed:
        tokens.verify("a.b")
    assert malformed.value.status == 400


def test_digest_lines() -> None:
    def item(kind: str, actors: int = 1, messages: int | None = None) -> DigestItem:
        room = "crew" if kind == "message" else None
        return DigestItem(
            uuid.uuid4(), kind, "ana", actors, messages, room, None, datetime.now(UTC)
        )

    assert describe(item("like", 3)) == "ana and 2 others liked your post"
    assert describe(item("follow")) == "ana followed you"
    assert describe(item("message", 1, 4)) == "4 new messages from ana in crew"
