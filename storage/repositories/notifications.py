"""Notifications in PostgreSQL: written in batches by the notifications consumer, read as
an inbox newest first, marked read up to a point.

Rules live in the insert: nobody is notified of their own acts, a block either way stops
a notification, and a re-like or re-follow does not notify a second time. Likes fold into
one unread row per post ("alice and 12 others liked your post"): a hot post's likes cost
one row per batch, not one per like. Chat messages fold the same way, into one unread row
per member and room ("3 new messages from bob"), and reading the room reads it.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import asyncpg

from storage.db import Database
from storage.rows import from_row, from_rows

KINDS = ("follow", "like", "comment", "share", "mention", "message")
_COLUMNS = (
    "id, user_id, kind, actor_id, post_id, actor_count, created_at, read_at IS NOT NULL AS read,"
    " room_id, message_count"
)


@dataclass(frozen=True)
class NewNotification:
    user_id: uuid.UUID
    kind: str
    actor_id: uuid.UUID
    post_id: uuid.UUID | None
    at: datetime  # when the act happened: the notification's time, whenever it is applied
    room_id: uuid.UUID | None = None  # MESSAGE: the room, and the message's seq in it
    seq: int | None = None


@dataclass(frozen=True)
class NotificationRecord:
    id: uuid.UUID
    user_id: uuid.UUID
    kind: str
    actor_id: uuid.UUID
    post_id: uuid.UUID | None
    created_at: datetime
    read: bool
    actor_count: int = 1
    room_id: uuid.UUID | None = None
    message_count: int | None = None

    def to_json(self) -> dict[str, Any]:
        """What a live subscriber receives over Redis (`from_json` reads it back)."""
        return {
            "id": str(self.id),
            "user_id": str(self.user_id),
            "kind": self.kind,
            "actor_id": str(self.actor_id),
            "post_id": str(self.post_id) if self.post_id else None,
            "actor_count": self.actor_count,
            "created_at": self.created_at.isoformat(),
            "room_id": str(self.room_id) if self.room_id else None,
            "message_count": self.message_count,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> NotificationRecord:
        post, room = data.get("post_id"), data.get("room_id")
        count = data.get("message_count")
        return cls(
            id=uuid.UUID(data["id"]),
            user_id=uuid.UUID(data["user_id"]),
            kind=str(data["kind"]),
            actor_id=uuid.UUID(data["actor_id"]),
            post_id=uuid.UUID(post) if post else None,
            created_at=datetime.fromisoformat(data["created_at"]),
            read=False,
            actor_count=int(data.get("actor_count", 1)),
            room_id=uuid.UUID(room) if room else None,
            message_count=int(count) if count is not None else None,
        )


_NOT_BLOCKED = """
NOT EXISTS (SELECT 1 FROM blocks b
            WHERE (b.blocker_id = n.user_id AND b.blocked_id = n.actor_id)
               OR (b.blocker_id = n.actor_id AND b.blocked_id = n.user_id))
"""


async def insert_notifications(
    conn: asyncpg.Connection, batch: list[NewNotification]
) -> list[NotificationRecord]:
    """Write what the rules allow; returns the rows written or updated, oldest first."""
    wanted = [n for n in batch if n.user_id != n.actor_id]
    likes = [n for n in wanted if n.kind == "like"]
    messages = [n for n in wanted if n.kind == "message"]
    others = [n for n in wanted if n.kind not in ("like", "message")]
    records = [
        *await _fold_likes(conn, likes),
        *await _fold_messages(conn, messages),
        *await _insert(conn, others),
    ]
    return sorted(records, key=lambda r: (r.created_at, r.id))


async def _insert(
    conn: asyncpg.Connection, batch: list[NewNotification]
) -> list[NotificationRecord]:
    if not batch:
        return []
    rows = await conn.fetch(
        f"""
        INSERT INTO notifications (id, user_id, kind, actor_id, post_id, created_at)
        SELECT n.id, n.user_id, n.kind, n.actor_id, n.post_id, n.at
        FROM unnest($1::uuid[], $2::uuid[], $3::text[], $4::uuid[], $5::uuid[],
                    $6::timestamptz[])
             WITH ORDINALITY AS n(id, user_id, kind, actor_id, post_id, at, position)
        WHERE {_NOT_BLOCKED}
        ORDER BY n.position
        ON CONFLICT DO NOTHING
        RETURNING {_COLUMNS}
        """,
        [uuid.uuid4() for _ in batch],
        [n.user_id for n in batch],
        [n.kind for n in batch],
        [n.actor_id for n in batch],
        [n.post_id for n in batch],
        [n.at for n in batch],
    )
    return from_rows(NotificationRecord, rows)


async def _fold_likes(
    conn: asyncpg.Connection, likes: list[NewNotification]
) -> list[NotificationRecord]:
    """Likers seen for the first time on a post join its unread LIKE row (or start one):
    the latest becomes `actor_id`, the count grows by how many are new, and the row takes
    the newest like's time."""
    if not likes:
        return []
    rows = await conn.fetch(
        f"""
        WITH wanted AS (
            SELECT n.* FROM unnest($1::uuid[], $2::uuid[], $3::uuid[], $4::timestamptz[])
                 WITH ORDINALITY AS n(user_id, actor_id, post_id, at, position)
            WHERE {_NOT_BLOCKED}
        ), fresh AS (
            INSERT INTO notified_likes (post_id, actor_id)
            SELECT DISTINCT post_id, actor_id FROM wanted
            ON CONFLICT DO NOTHING
            RETURNING post_id, actor_id
        ), folded AS (
            SELECT w.user_id, w.post_id, count(DISTINCT w.actor_id)::int AS likers,
                   (array_agg(w.actor_id ORDER BY w.position DESC))[1] AS latest,
                   max(w.at) AS at
            FROM wanted w JOIN fresh f ON f.post_id = w.post_id AND f.actor_id = w.actor_id
            GROUP BY w.user_id, w.post_id
        )
        INSERT INTO notifications AS o
            (id, user_id, kind, actor_id, post_id, actor_count, created_at)
        SELECT gen_random_uuid(), user_id, 'like', latest, post_id, likers, at FROM folded
        ORDER BY user_id, post_id
        ON CONFLICT (user_id, post_id) WHERE kind = 'like' AND read_at IS NULL
        DO UPDATE SET actor_id = EXCLUDED.actor_id,
                      actor_count = o.actor_count + EXCLUDED.actor_count,
                      created_at = greatest(o.created_at, EXCLUDED.created_at)
        RETURNING {_COLUMNS}
        """,
        [n.user_id for n in likes],
        [n.actor_id for n in likes],
        [n.post_id for n in likes],
        [n.at for n in likes],
    )
    return from_rows(NotificationRecord, rows)


async def _fold_messages(
    conn: asyncpg.Connection, messages: list[NewNotification]
) -> list[NotificationRecord]:
    """Messages join the member's unread MESSAGE row for the room (or start one): the
    latest sender becomes `actor_id`, `message_count` grows, `room_seq` is the latest
    message's. Each event is applied once (the consumer's ledger), so the count is exact."""
    if not messages:
        return []
    rows = await conn.fetch(
        f"""
        WITH wanted AS (
            SELECT n.* FROM unnest($1::uuid[], $2::uuid[], $3::uuid[], $4::bigint[],
                                   $5::timestamptz[])
                 AS n(user_id, actor_id, room_id, seq, at)
            WHERE {_NOT_BLOCKED}
        ), folded AS (
            SELECT user_id, room_id, count(*)::int AS messages, max(seq) AS seq,
                   (array_agg(actor_id ORDER BY seq DESC))[1] AS latest, max(at) AS at
            FROM wanted GROUP BY user_id, room_id
        )
        INSERT INTO notifications AS o
            (id, user_id, kind, actor_id, room_id, room_seq, message_count, created_at)
        SELECT gen_random_uuid(), user_id, 'message', latest, room_id, seq, messages, at
        FROM folded ORDER BY user_id, room_id
        ON CONFLICT (user_id, room_id) WHERE kind = 'message' AND read_at IS NULL
        DO UPDATE SET actor_id = CASE WHEN EXCLUDED.room_seq > o.room_seq
                                      THEN EXCLUDED.actor_id ELSE o.actor_id END,
                      message_count = o.message_count + EXCLUDED.message_count,
                      room_seq = greatest(o.room_seq, EXCLUDED.room_seq),
                      created_at = greatest(o.created_at, EXCLUDED.created_at)
        RETURNING {_COLUMNS}
        """,
        [n.user_id for n in messages],
        [n.actor_id for n in messages],
        [n.room_id for n in messages],
        [n.seq for n in messages],
        [n.at for n in messages],
    )
    return from_rows(NotificationRecord, rows)


@dataclass(frozen=True)
class RoomMember:
    user_id: uuid.UUID
    joined_at: datetime
    read_up_to: int


async def room_members(
    conn: asyncpg.Connection, room_ids: list[uuid.UUID]
) -> dict[uuid.UUID, list[RoomMember]]:
    """The current members of each room, with when they joined and what they have read."""
    rows = await conn.fetch(
        "SELECT room_id, user_id, joined_at, read_up_to FROM chat_members"
        " WHERE room_id = ANY($1::uuid[]) AND left_at IS NULL",
        room_ids,
    )
    members: dict[uuid.UUID, list[RoomMember]] = {room: [] for room in room_ids}
    for row in rows:
        members[row["room_id"]].append(from_row(RoomMember, row))
    return members


async def read_room_notifications(
    conn: asyncpg.Connection, user_id: uuid.UUID, room_id: uuid.UUID, seq: int
) -> int:
    """Reading a room up to `seq` reads its MESSAGE notification if nothing newer is in it."""
    status: str = await conn.execute(
        """
        UPDATE notifications SET read_at = clock_timestamp()
        WHERE user_id = $1 AND room_id = $2 AND kind = 'message' AND read_at IS NULL
          AND room_seq <= $3
        """,
        user_id,
        room_id,
        seq,
    )
    return int(status.split()[-1])


async def users_named(conn: asyncpg.Connection, usernames: list[str]) -> dict[str, uuid.UUID]:
    """Lower-cased username → id, for those that exist (mentions name people by username)."""
    if not usernames:
        return {}
    rows = await conn.fetch(
        "SELECT lower(username) AS name, id FROM users WHERE lower(username) = ANY($1::text[])",
        [name.lower() for name in usernames],
    )
    return {row["name"]: row["id"] for row in rows}


# A notification about a post that moderation hides (removed, held, its author suspended)
# is left out while it stays hidden.
_NOT_MODERATED = """NOT EXISTS (SELECT 1 FROM posts p
    WHERE p.id = notifications.post_id AND p.moderation IS NOT NULL)"""


async def inbox_page(
    conn: asyncpg.Connection,
    user_id: uuid.UUID,
    limit: int,
    before: tuple[datetime, uuid.UUID] | None,
) -> list[NotificationRecord]:
    """Newest first; `limit + 1` rows tell whether another page exists.

    Only kinds this release knows: during a rolling upgrade a newer consumer may write a
    kind the older replicas still serving could not render."""
    rows = await conn.fetch(
        f"""
        SELECT {_COLUMNS} FROM notifications
        WHERE user_id = $1 AND kind = ANY($5::text[]) AND {_NOT_MODERATED}
          AND ($2::timestamptz IS NULL OR (created_at, id) < ($2, $3::uuid))
        ORDER BY created_at DESC, id DESC LIMIT $4
        """,
        user_id,
        before[0] if before else None,
        before[1] if before else None,
        limit + 1,
        list(KINDS),
    )
    return from_rows(NotificationRecord, rows)


async def unread_count(conn: asyncpg.Connection, user_id: uuid.UUID) -> int:
    count: int = await conn.fetchval(
        "SELECT count(*) FROM notifications"
        f" WHERE user_id = $1 AND read_at IS NULL AND kind = ANY($2::text[]) AND {_NOT_MODERATED}",
        user_id,
        list(KINDS),
    )
    return count


async def mark_read(
    conn: asyncpg.Connection, user_id: uuid.UUID, up_to: uuid.UUID | None
) -> int | None:
    """Mark `up_to` and everything older read (everything when None); the number marked,
    or None when `up_to` is not one of the user's notifications."""
    if up_to is None:
        status: str = await conn.execute(
            "UPDATE notifications SET read_at = clock_timestamp() "
            "WHERE user_id = $1 AND read_at IS NULL",
            user_id,
        )
        return int(status.split()[-1])
    anchor = await conn.fetchrow(
        "SELECT created_at, id FROM notifications WHERE id = $1 AND user_id = $2", up_to, user_id
    )
    if anchor is None:
        return None
    status = await conn.execute(
        """
        UPDATE notifications SET read_at = clock_timestamp()
        WHERE user_id = $1 AND read_at IS NULL AND (created_at, id) <= ($2, $3)
        """,
        user_id,
        anchor["created_at"],
        anchor["id"],
    )
    return int(status.split()[-1])


class NotificationStore:
    """The inbox as the gateway reads and marks it; each method is one pooled connection."""

    def __init__(self, db: Database) -> None:
        self._db = db

    async def page(
        self, user_id: uuid.UUID, limit: int, before: tuple[datetime, uuid.UUID] | None
    ) -> list[NotificationRecord]:
        async with self._db.connection() as conn:
            return await inbox_page(conn, user_id, limit, before)

    async def unread(self, user_id: uuid.UUID) -> int:
        async with self._db.connection() as conn:
            return await unread_count(conn, user_id)

    async def mark_read(self, user_id: uuid.UUID, up_to: uuid.UUID | None) -> int | None:
        async with self._db.connection() as conn:
            return await mark_read(conn, user_id, up_to)
