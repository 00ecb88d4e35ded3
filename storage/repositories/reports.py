"""Reports of posts, comments, users, messages and stories, and the moderation queue.

A report names its target by type and id. What a reporter may report is what they may
see: a live post, comment or story of someone no block separates from them, an account,
or a message of a room they are a member of. A MESSAGE report keeps a snapshot of that
message alone (text, sender, media, seq, room), since the room moves on without it.

The queue groups open (or resolved) reports by target, most severe first, then oldest.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import asyncpg

from storage.db import Database
from storage.errors import InvalidInput, NotFound
from storage.rows import from_row, from_rows

TARGET_TYPES = ("POST", "COMMENT", "USER", "MESSAGE", "STORY")
REASONS = ("SPAM", "HARASSMENT", "HATE", "VIOLENCE", "SEXUAL", "SELF_HARM", "OTHER")
# The queue's first key: the most severe reason of a target's reports.
SEVERITY = {
    "SELF_HARM": 3,
    "VIOLENCE": 3,
    "HATE": 2,
    "HARASSMENT": 2,
    "SEXUAL": 2,
    "SPAM": 1,
    "OTHER": 1,
}
_SEVERITY_SQL = (
    "CASE reason WHEN 'SELF_HARM' THEN 3 WHEN 'VIOLENCE' THEN 3 WHEN 'HATE' THEN 2"
    " WHEN 'HARASSMENT' THEN 2 WHEN 'SEXUAL' THEN 2 ELSE 1 END"
)

_NOT_BLOCKED = """NOT EXISTS (SELECT 1 FROM blocks b
    WHERE (b.blocker_id = {owner} AND b.blocked_id = $2)
       OR (b.blocker_id = $2 AND b.blocked_id = {owner}))"""

# Per target type: its owner, if the reporter ($2) may see the target ($1).
_OWNER_IF_VISIBLE = {
    "POST": "SELECT p.author_id FROM posts p WHERE p.id = $1 AND p.deleted_at IS NULL AND "
    + _NOT_BLOCKED.format(owner="p.author_id"),
    "COMMENT": "SELECT c.author_id FROM comments c JOIN posts p ON p.id = c.post_id"
    " WHERE c.id = $1 AND c.deleted_at IS NULL AND p.deleted_at IS NULL AND "
    + _NOT_BLOCKED.format(owner="c.author_id")
    + " AND "
    + _NOT_BLOCKED.format(owner="p.author_id"),
    "USER": "SELECT u.id FROM users u WHERE u.id = $1 AND " + _NOT_BLOCKED.format(owner="u.id"),
    "STORY": "SELECT s.author_id FROM stories s WHERE s.id = $1 AND s.deleted_at IS NULL"
    " AND s.expires_at > now() AND (s.author_id = $2 OR EXISTS (SELECT 1 FROM follows f"
    " WHERE f.follower_id = $2 AND f.followee_id = s.author_id)) AND "
    + _NOT_BLOCKED.format(owner="s.author_id"),
}


@dataclass(frozen=True)
class ReportRecord:
    id: uuid.UUID
    reporter_id: uuid.UUID | None
    target_type: str
    target_id: uuid.UUID
    reason: str
    note: str | None
    created_at: datetime
    resolved_at: datetime | None


_REPORT_COLUMNS = "id, reporter_id, target_type, target_id, reason, note, created_at, resolved_at"


@dataclass(frozen=True)
class QueueRow:
    """A target with its reports, as the queue shows it."""

    target_type: str
    target_id: uuid.UUID
    reports: int
    reasons: list[str]
    first_at: datetime
    last_at: datetime
    severity: int
    snapshot: dict[str, Any] | None


QueueBound = tuple[int, datetime, uuid.UUID]
"""(severity, first report time, target id) of the last row of a page."""


async def message_snapshot(
    conn: asyncpg.Connection, message_id: uuid.UUID, reporter: uuid.UUID
) -> dict[str, Any] | None:
    """The live message `message_id` as a report keeps it, if `reporter` is a current
    member of its room; None otherwise."""
    row = await conn.fetchrow(
        """
        SELECT m.id, m.room_id, m.seq, m.sender_id, m.text, m.media_ids, m.created_at
        FROM chat_messages m
        JOIN chat_members cm ON cm.room_id = m.room_id AND cm.user_id = $2
                             AND cm.left_at IS NULL
        WHERE m.id = $1 AND m.deleted_at IS NULL
        """,
        message_id,
        reporter,
    )
    if row is None:
        return None
    return {
        "message_id": str(row["id"]),
        "room_id": str(row["room_id"]),
        "seq": row["seq"],
        "sender_id": str(row["sender_id"]),
        "text": row["text"],
        "media_ids": [str(m) for m in row["media_ids"]],
        "created_at": row["created_at"].isoformat(),
    }


async def insert_report(
    conn: asyncpg.Connection,
    *,
    reporter: uuid.UUID | None,
    target_type: str,
    target_id: uuid.UUID,
    reason: str,
    note: str | None,
    snapshot: dict[str, Any] | None = None,
) -> ReportRecord | None:
    """A new open report; None if this reporter has one open on the target already."""
    row = await conn.fetchrow(
        f"""
        INSERT INTO reports (id, reporter_id, target_type, target_id, reason, note, snapshot)
        VALUES ($1, $2, $3, $4, $5, $6, $7::jsonb)
        ON CONFLICT (reporter_id, target_type, target_id)
            WHERE resolved_at IS NULL AND reporter_id IS NOT NULL
        DO NOTHING
        RETURNING {_REPORT_COLUMNS}
        """,
        uuid.uuid4(),
        reporter,
        target_type,
        target_id,
        reason,
        note,
        json.dumps(snapshot) if snapshot is not None else None,
    )
    return from_row(ReportRecord, row) if row is not None else None


async def hold(
    conn: asyncpg.Connection, target_type: str, target_id: uuid.UUID, entry: str
) -> None:
    """Queue held content for review: an automatic report (no reporter)."""
    await insert_report(
        conn,
        reporter=None,
        target_type=target_type,
        target_id=target_id,
        reason="OTHER",
        note=f"blocklist: {entry}",
    )


async def resolve_reports(
    conn: asyncpg.Connection,
    target_type: str,
    target_id: uuid.UUID,
    moderator: uuid.UUID,
    resolution: str,
) -> int:
    """Close the target's open reports; how many were open."""
    status = await conn.execute(
        """
        UPDATE reports SET resolved_at = clock_timestamp(), resolved_by = $3, resolution = $4
        WHERE target_type = $1 AND target_id = $2 AND resolved_at IS NULL
        """,
        target_type,
        target_id,
        moderator,
        resolution,
    )
    return int(status.split()[-1])


class ReportStore:
    def __init__(self, db: Database) -> None:
        self._db = db

    async def add(
        self,
        reporter: uuid.UUID,
        target_type: str,
        target_id: uuid.UUID,
        reason: str,
        note: str | None,
    ) -> ReportRecord:
        """Record a report. Raises `NotFound` when the reporter cannot see the target,
        `InvalidInput` for their own content or a second open report on one target."""
        async with self._db.transaction() as conn:
            snapshot = None
            if target_type == "MESSAGE":
                snapshot = await message_snapshot(conn, target_id, reporter)
                if snapshot is None:
                    raise NotFound("no such message in a room of yours")
                owner = uuid.UUID(snapshot["sender_id"])
            else:
                owner = await conn.fetchval(_OWNER_IF_VISIBLE[target_type], target_id, reporter)
                if owner is None:
                    raise NotFound(f"no such {target_type.lower()}")
            if owner == reporter:
                raise InvalidInput("you cannot report yourself or your own content")
            report = await insert_report(
                conn,
                reporter=reporter,
                target_type=target_type,
                target_id=target_id,
                reason=reason,
                note=note,
                snapshot=snapshot,
            )
            if report is None:
                raise InvalidInput("you have an open report on this already")
        return report

    async def queue(self, *, open_: bool, after: QueueBound | None, limit: int) -> list[QueueRow]:
        """Targets with open (or resolved) reports: most severe first, then oldest first."""
        async with self._db.connection() as conn:
            rows = await conn.fetch(
                f"""
                SELECT * FROM (
                    SELECT target_type, target_id, count(*)::int AS reports,
                           array_agg(DISTINCT reason ORDER BY reason) AS reasons,
                           min(created_at) AS first_at, max(created_at) AS last_at,
                           max({_SEVERITY_SQL}) AS severity,
                           (array_agg(snapshot ORDER BY created_at DESC)
                               FILTER (WHERE snapshot IS NOT NULL))[1] AS snapshot
                    FROM reports
                    WHERE (resolved_at IS NULL) = $1
                    GROUP BY target_type, target_id
                ) AS g
                WHERE $2::int IS NULL OR (-severity, first_at, target_id) > (-$2, $3, $4::uuid)
                ORDER BY severity DESC, first_at, target_id
                LIMIT $5
                """,
                open_,
                after[0] if after else None,
                after[1] if after else None,
                after[2] if after else None,
                limit,
            )
        return [
            QueueRow(
                **{
                    **dict(row),
                    "snapshot": json.loads(row["snapshot"]) if row["snapshot"] else None,
                }
            )
            for row in rows
        ]

    async def group(self, target_type: str, target_id: uuid.UUID) -> QueueRow | None:
        """One target's reports as a queue row (open ones if any, else all)."""
        async with self._db.connection() as conn:
            row = await conn.fetchrow(
                f"""
                SELECT target_type, target_id, count(*)::int AS reports,
                       array_agg(DISTINCT reason ORDER BY reason) AS reasons,
                       min(created_at) AS first_at, max(created_at) AS last_at,
                       max({_SEVERITY_SQL}) AS severity,
                       (array_agg(snapshot ORDER BY created_at DESC)
                           FILTER (WHERE snapshot IS NOT NULL))[1] AS snapshot
                FROM reports
                WHERE target_type = $1 AND target_id = $2
                GROUP BY target_type, target_id
                """,
                target_type,
                target_id,
            )
        if row is None:
            return None
        snapshot = json.loads(row["snapshot"]) if row["snapshot"] else None
        return QueueRow(**{**dict(row), "snapshot": snapshot})

    async def of_reporter(self, reporter: uuid.UUID, limit: int) -> list[ReportRecord]:
        async with self._db.connection() as conn:
            rows = await conn.fetch(
                f"SELECT {_REPORT_COLUMNS} FROM reports WHERE reporter_id = $1"
                " ORDER BY created_at DESC LIMIT $2",
                reporter,
                limit,
            )
        return from_rows(ReportRecord, rows)
