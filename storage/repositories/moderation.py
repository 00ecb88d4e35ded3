"""Moderation's writes: hiding and restoring content, suspending accounts, and the
append-only audit log; and what the queue shows of a target.

Content hidden by moderation is hidden the way its author's deletion hides it (`deleted_at`
set), so every read that leaves deleted rows out leaves it out at once; `moderation` says
why ('removed', 'held', 'suspended'), and only such rows come back. Each action commits in
one transaction with its events, the resolution of the target's open reports and its
audit row.
"""

from __future__ import annotations

import uuid
from collections import Counter, defaultdict
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime

import asyncpg

from storage.db import Database
from storage.events import Event
from storage.outbox.rows import add_events
from storage.repositories.audit import Audit, add_audit
from storage.repositories.counters import CounterRow, bump
from storage.repositories.media import hide_media, unhide_media
from storage.repositories.posts import POST_COLUMNS, PostRecord
from storage.repositories.reports import resolve_reports
from storage.rows import from_row, from_rows


@dataclass(frozen=True)
class Changed:
    """What an action changed: posts that left or re-entered view (for their events and
    caches), counter rows bumped, sessions revoked."""

    posts: list[PostRecord] = field(default_factory=list)
    counters: list[CounterRow] = field(default_factory=list)
    sessions: list[uuid.UUID] = field(default_factory=list)
    found: bool = True


@dataclass(frozen=True)
class TargetState:
    """A target as the queue shows it. `state`: VISIBLE, REMOVED, HELD, SUSPENDED
    (hidden with its suspended author, or an account suspended), DELETED (by its author)
    or GONE (no such row)."""

    state: str
    author_id: uuid.UUID | None = None
    text: str | None = None
    media_ids: tuple[uuid.UUID, ...] = ()
    suspended_until: datetime | None = None
    post_id: uuid.UUID | None = None


_STATE_SQL = (
    "CASE WHEN moderation = 'removed' THEN 'REMOVED' WHEN moderation = 'held' THEN 'HELD'"
    " WHEN moderation = 'suspended' THEN 'SUSPENDED' WHEN deleted_at IS NOT NULL THEN 'DELETED'"
    " ELSE 'VISIBLE' END AS state"
)
_TARGET_SQL = {
    "POST": f"SELECT author_id, text, media_ids, {_STATE_SQL} FROM posts WHERE id = $1",
    "COMMENT": f"SELECT author_id, text, post_id, {_STATE_SQL} FROM comments WHERE id = $1",
    "STORY": "SELECT author_id, text, ARRAY[media_id] AS media_ids,"
    f" {_STATE_SQL} FROM stories WHERE id = $1",
    "USER": "SELECT id AS author_id, coalesce(display_name, username) || coalesce(': ' || bio, '')"
    " AS text, suspended_until, CASE WHEN suspended_until > now() THEN 'SUSPENDED'"
    " ELSE 'VISIBLE' END AS state FROM users WHERE id = $1",
    "MESSAGE": "SELECT sender_id AS author_id, CASE WHEN removed_at IS NOT NULL THEN 'REMOVED'"
    " WHEN deleted_at IS NOT NULL THEN 'DELETED' ELSE 'VISIBLE' END AS state"
    " FROM chat_messages WHERE id = $1",
}


# -- content ---------------------------------------------------------------------------


async def remove_post(conn: asyncpg.Connection, post_id: uuid.UUID, by: uuid.UUID) -> Changed:
    """Hide a live, held or suspended post as removed; `posts` holds it if it was live."""
    prior = await conn.fetchrow(
        "SELECT deleted_at IS NULL AS live, moderation FROM posts WHERE id = $1 FOR UPDATE",
        post_id,
    )
    if prior is None or (not prior["live"] and prior["moderation"] is None):
        return Changed(found=False)
    row = await conn.fetchrow(
        f"""
        UPDATE posts SET deleted_at = coalesce(deleted_at, clock_timestamp()), deleted_by = $2,
                         moderation = 'removed'
        WHERE id = $1 RETURNING {POST_COLUMNS}
        """,
        post_id,
        by,
    )
    removed = from_row(PostRecord, row)
    await hide_media(conn, removed.media_ids)
    if not prior["live"]:
        return Changed()
    return Changed(posts=[removed], counters=await _bump_posts(conn, -1, shares=[removed]))


async def restore_post(conn: asyncpg.Connection, post_id: uuid.UUID) -> Changed:
    """Bring back a post removed or held by moderation (not one hidden with a suspended
    author: UNSUSPEND does that)."""
    row = await conn.fetchrow(
        f"""
        UPDATE posts SET deleted_at = NULL, deleted_by = NULL, moderation = NULL
        WHERE id = $1 AND moderation IN ('removed', 'held') RETURNING {POST_COLUMNS}
        """,
        post_id,
    )
    exists = row is not None or await conn.fetchval("SELECT 1 FROM posts WHERE id = $1", post_id)
    restored = from_row(PostRecord, row) if row else None
    if restored is None:
        return Changed(found=bool(exists))
    await unhide_media(conn, restored.media_ids)
    return Changed(posts=[restored], counters=await _bump_posts(conn, 1, shares=[restored]))


async def remove_comment(conn: asyncpg.Connection, comment_id: uuid.UUID) -> Changed:
    row = await conn.fetchrow(
        """
        UPDATE comments SET deleted_at = coalesce(deleted_at, clock_timestamp()),
                            moderation = 'removed'
        WHERE id = $1 AND (deleted_at IS NULL OR moderation IS NOT NULL)
        RETURNING post_id, (SELECT deleted_at IS NULL FROM comments WHERE id = $1) AS was_live
        """,
        comment_id,
    )
    if row is None:
        return Changed(found=False)
    counters = (
        await bump(conn, "post", {row["post_id"]: {"comments": -1}}) if row["was_live"] else []
    )
    return Changed(counters=counters)


async def restore_comment(conn: asyncpg.Connection, comment_id: uuid.UUID) -> Changed:
    row = await conn.fetchrow(
        """
        UPDATE comments SET deleted_at = NULL, moderation = NULL
        WHERE id = $1 AND moderation IN ('removed', 'held') RETURNING post_id
        """,
        comment_id,
    )
    if row is None:
        exists = await conn.fetchval("SELECT 1 FROM comments WHERE id = $1", comment_id)
        return Changed(found=bool(exists))
    return Changed(counters=await bump(conn, "post", {row["post_id"]: {"comments": 1}}))


async def remove_story(conn: asyncpg.Connection, story_id: uuid.UUID) -> Changed:
    status = await conn.execute(
        """
        UPDATE stories SET deleted_at = coalesce(deleted_at, clock_timestamp()),
                           moderation = 'removed'
        WHERE id = $1 AND (deleted_at IS NULL OR moderation IS NOT NULL)
        """,
        story_id,
    )
    return Changed(found=status.split()[-1] == "1")


async def restore_story(conn: asyncpg.Connection, story_id: uuid.UUID) -> Changed:
    await conn.execute(
        "UPDATE stories SET deleted_at = NULL, moderation = NULL"
        " WHERE id = $1 AND moderation = 'removed'",
        story_id,
    )
    return Changed(found=bool(await conn.fetchval("SELECT 1 FROM stories WHERE id = $1", story_id)))


Change = Callable[[asyncpg.Connection], Awaitable[Changed]]


async def unchanged(_: asyncpg.Connection) -> Changed:
    return Changed()


def existing(target_type: str, target_id: uuid.UUID) -> Change:
    """Changes nothing; found if the target exists."""

    async def change(conn: asyncpg.Connection) -> Changed:
        row = await conn.fetchrow(_TARGET_SQL[target_type], target_id)
        return Changed(found=row is not None)

    return change


def change_for(
    target_type: str,
    target_id: uuid.UUID,
    action: str,
    moderator: uuid.UUID,
    until: datetime | None,
) -> Change:
    """The statements of REMOVE, RESTORE, SUSPEND or UNSUSPEND on a target."""

    async def change(conn: asyncpg.Connection) -> Changed:
        if action == "SUSPEND":
            return await suspend_user(conn, target_id, until)
        if action == "UNSUSPEND":
            return await unsuspend_user(conn, target_id)
        removing = action == "REMOVE"
        if target_type == "POST":
            if removing:
                return await remove_post(conn, target_id, moderator)
            return await restore_post(conn, target_id)
        if target_type == "COMMENT":
            if removing:
                return await remove_comment(conn, target_id)
            return await restore_comment(conn, target_id)
        if removing:
            return await remove_story(conn, target_id)
        return await restore_story(conn, target_id)

    return change


# -- accounts --------------------------------------------------------------------------


async def suspend_user(
    conn: asyncpg.Connection, user_id: uuid.UUID, until: datetime | None
) -> Changed:
    """Suspend until `until` (None: indefinitely): hide the account's live posts, comments
    and stories, and revoke its sessions."""
    status = await conn.execute(
        """
        UPDATE users SET suspended_until = coalesce($2, 'infinity'::timestamptz),
                         version = version + 1, updated_at = now()
        WHERE id = $1
        """,
        user_id,
        until,
    )
    if status.split()[-1] != "1":
        return Changed(found=False)
    posts = await conn.fetch(
        f"""
        UPDATE posts SET deleted_at = clock_timestamp(), moderation = 'suspended'
        WHERE author_id = $1 AND deleted_at IS NULL RETURNING {POST_COLUMNS}
        """,
        user_id,
    )
    comments = await conn.fetch(
        """
        UPDATE comments SET deleted_at = clock_timestamp(), moderation = 'suspended'
        WHERE author_id = $1 AND deleted_at IS NULL RETURNING post_id
        """,
        user_id,
    )
    await conn.execute(
        "UPDATE stories SET deleted_at = clock_timestamp(), moderation = 'suspended'"
        " WHERE author_id = $1 AND deleted_at IS NULL",
        user_id,
    )
    sessions = await conn.fetch(
        """
        UPDATE auth_sessions SET revoked_at = now(), revoked_reason = 'suspended'
        WHERE user_id = $1 AND revoked_at IS NULL RETURNING id
        """,
        user_id,
    )
    hidden = from_rows(PostRecord, posts)
    await hide_media(conn, [media_id for post in hidden for media_id in post.media_ids])
    return Changed(
        posts=hidden,
        counters=await _bump_posts(
            conn, -1, comments_on=[row["post_id"] for row in comments], shares=hidden
        ),
        sessions=[row["id"] for row in sessions],
    )


async def unsuspend_user(
    conn: asyncpg.Connection, user_id: uuid.UUID, *, ended_only: bool = False
) -> Changed:
    """Lift a suspension (`ended_only`: only one whose time is up) and bring back what it
    hid."""
    status = await conn.execute(
        "UPDATE users SET suspended_until = NULL, version = version + 1, updated_at = now()"
        " WHERE id = $1 AND (NOT $2 OR suspended_until <= now())",
        user_id,
        ended_only,
    )
    if status.split()[-1] != "1":
        return Changed(found=False)
    posts = await conn.fetch(
        f"""
        UPDATE posts SET deleted_at = NULL, moderation = NULL
        WHERE author_id = $1 AND moderation = 'suspended' RETURNING {POST_COLUMNS}
        """,
        user_id,
    )
    comments = await conn.fetch(
        """
        UPDATE comments SET deleted_at = NULL, moderation = NULL
        WHERE author_id = $1 AND moderation = 'suspended' RETURNING post_id
        """,
        user_id,
    )
    await conn.execute(
        "UPDATE stories SET deleted_at = NULL, moderation = NULL"
        " WHERE author_id = $1 AND moderation = 'suspended'",
        user_id,
    )
    back = from_rows(PostRecord, posts)
    await unhide_media(conn, [media_id for post in back for media_id in post.media_ids])
    return Changed(
        posts=back,
        counters=await _bump_posts(
            conn, 1, comments_on=[row["post_id"] for row in comments], shares=back
        ),
    )


async def _bump_posts(
    conn: asyncpg.Connection,
    sign: int,
    *,
    comments_on: Iterable[uuid.UUID] = (),
    shares: Iterable[PostRecord] = (),
) -> list[CounterRow]:
    """Comments hidden (or back) change their posts' comment counts, and shares the share
    counts of the posts they share: one statement for both."""
    deltas: dict[uuid.UUID, dict[str, int]] = defaultdict(dict)
    shared = (p.shared_post_id for p in shares if p.shared_post_id is not None)
    for field_name, ids in (("comments", comments_on), ("shares", shared)):
        for post, n in Counter(ids).items():
            deltas[post][field_name] = sign * n
    return await bump(conn, "post", deltas)


async def suspended_until(conn: asyncpg.Connection, user_id: uuid.UUID) -> datetime | None:
    """When the account's suspension ends or ended, if it has one not lifted yet
    ('infinity', indefinitely, comes back from the driver as the largest datetime)."""
    value: datetime | None = await conn.fetchval(
        "SELECT suspended_until FROM users WHERE id = $1", user_id
    )
    return value


class ModerationStore:
    def __init__(self, db: Database) -> None:
        self._db = db

    async def act(
        self,
        change: Change,
        *,
        events: Callable[[Changed], list[Event]],
        audit: Audit,
        resolution: str,
    ) -> tuple[Changed, int]:
        """Apply `change`, write its events, resolve the target's open reports and log
        it, in one transaction. Returns what changed and how many reports were resolved;
        nothing is written when the target is not found."""
        async with self._db.transaction() as conn:
            changed = await change(conn)
            if not changed.found:
                return changed, 0
            await add_events(conn, events(changed))
            resolved = 0
            if audit.actor_id is not None and audit.target_id is not None:  # not the system's
                resolved = await resolve_reports(
                    conn, audit.target_type, audit.target_id, audit.actor_id, resolution
                )
            await add_audit(conn, audit)
        return changed, resolved

    async def target(self, target_type: str, target_id: uuid.UUID) -> TargetState:
        async with self._db.connection() as conn:
            row = await conn.fetchrow(_TARGET_SQL[target_type], target_id)
        if row is None:
            return TargetState("GONE")
        return from_row(TargetState, row)

    async def suspended_until(self, user_id: uuid.UUID) -> datetime | None:
        async with self._db.connection() as conn:
            return await suspended_until(conn, user_id)
