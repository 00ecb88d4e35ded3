"""What the email digest reads and records (`actors.notification_digest`).

A notification is *mailable* to its recipient while it is unread, no digest has carried it
(`emailed_at`), its kind has email on, email is not switched off (an unsubscribe link), its
actor and room are not muted, no block stands between the two, and its post (if any) is
not hidden by moderation (as in the inbox). A user gets a digest when their address is
verified, they have mailable notifications, they have been away (no session signed in or
refreshed, no feed read, since `idle_before`) and their last digest is older than the
interval.

A digest is one transaction per user: `claim` locks the user's digest row (another job
running at the same time skips the user), the job sends the mail, then `record` marks the
notifications it carried and the time. A crash between the send and the commit sends that
digest again on the next run (at least once, as the mail consumer does); nothing that was
committed is mailed twice.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime

import asyncpg

from storage.repositories.notification_preferences import DEFAULT_EMAIL
from storage.rows import from_rows

_MAILABLE = """
n.read_at IS NULL AND n.emailed_at IS NULL AND n.created_at >= $2
AND n.kind = ANY(coalesce(p.email_kinds, $3::text[]))
AND coalesce(p.email_enabled, true)
AND NOT EXISTS (SELECT 1 FROM notification_muted_users m
                WHERE m.user_id = n.user_id AND m.muted_id = n.actor_id)
AND (n.room_id IS NULL OR NOT EXISTS (SELECT 1 FROM notification_muted_rooms r
                                      WHERE r.user_id = n.user_id AND r.room_id = n.room_id))
AND NOT EXISTS (SELECT 1 FROM blocks b
                WHERE (b.blocker_id = n.user_id AND b.blocked_id = n.actor_id)
                   OR (b.blocker_id = n.actor_id AND b.blocked_id = n.user_id))
AND NOT EXISTS (SELECT 1 FROM posts mp WHERE mp.id = n.post_id AND mp.moderation IS NOT NULL)
"""


@dataclass(frozen=True)
class DigestItem:
    id: uuid.UUID
    kind: str
    actor_name: str
    actor_count: int
    message_count: int | None
    room_name: str | None
    post_id: uuid.UUID | None
    created_at: datetime


@dataclass(frozen=True)
class DigestRecipient:
    user_id: uuid.UUID
    email: str
    username: str


async def digest_candidates(
    conn: asyncpg.Connection,
    *,
    since: datetime,
    idle_before: datetime,
    sent_before: datetime,
    limit: int,
) -> list[DigestRecipient]:
    """Users owed a digest, those waiting longest first, at most `limit`."""
    rows = await conn.fetch(
        f"""
        SELECT u.id AS user_id, u.email, u.username
        FROM notifications n
        JOIN users u ON u.id = n.user_id
        LEFT JOIN notification_preferences p ON p.user_id = n.user_id
        LEFT JOIN notification_digests d ON d.user_id = n.user_id
        WHERE {_MAILABLE}
          AND u.email_verified_at IS NOT NULL
          AND u.last_seen_at < $1
          AND (d.last_sent_at IS NULL OR d.last_sent_at < $4)
          AND NOT EXISTS (SELECT 1 FROM auth_sessions s
                          WHERE s.user_id = n.user_id AND s.revoked_at IS NULL
                            AND s.last_used_at >= $1)
        GROUP BY u.id, u.email, u.username
        ORDER BY min(n.created_at), u.id
        LIMIT $5
        """,
        idle_before,
        since,
        sorted(DEFAULT_EMAIL),
        sent_before,
        limit,
    )
    return from_rows(DigestRecipient, rows)


async def claim(conn: asyncpg.Connection, user_id: uuid.UUID, sent_before: datetime) -> bool:
    """Lock the user's digest row for this transaction if their last digest is older than
    `sent_before`; False if it is not, or another job holds it."""
    await conn.execute(
        "INSERT INTO notification_digests (user_id, last_sent_at) VALUES ($1, '-infinity')"
        " ON CONFLICT DO NOTHING",
        user_id,
    )
    found = await conn.fetchval(
        "SELECT 1 FROM notification_digests WHERE user_id = $1 AND last_sent_at < $2"
        " FOR UPDATE SKIP LOCKED",
        user_id,
        sent_before,
    )
    return found is not None


async def digest_items(
    conn: asyncpg.Connection, user_id: uuid.UUID, *, since: datetime, limit: int
) -> list[DigestItem]:
    """The user's mailable notifications, newest first, at most `limit`."""
    rows = await conn.fetch(
        f"""
        SELECT n.id, n.kind, a.username AS actor_name, n.actor_count, n.message_count,
               c.name AS room_name, n.post_id, n.created_at
        FROM notifications n
        JOIN users a ON a.id = n.actor_id
        LEFT JOIN chat_rooms c ON c.id = n.room_id
        LEFT JOIN notification_preferences p ON p.user_id = n.user_id
        WHERE n.user_id = $1 AND {_MAILABLE}
        ORDER BY n.created_at DESC, n.id DESC
        LIMIT $4
        """,
        user_id,
        since,
        sorted(DEFAULT_EMAIL),
        limit,
    )
    return from_rows(DigestItem, rows)


async def record(conn: asyncpg.Connection, user_id: uuid.UUID, ids: list[uuid.UUID]) -> None:
    """The digest went out carrying `ids`: they are never mailed again."""
    await conn.execute(
        "UPDATE notifications SET emailed_at = clock_timestamp()"
        " WHERE user_id = $1 AND id = ANY($2::uuid[])",
        user_id,
        ids,
    )
    await conn.execute(
        "UPDATE notification_digests SET last_sent_at = clock_timestamp() WHERE user_id = $1",
        user_id,
    )
