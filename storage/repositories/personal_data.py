"""One person's data, read for their export (`actors.exports`): each kind a stream of
JSON-ready rows, read a page at a time (keyset paging), so an archive of any size is made
in bounded memory.

What is theirs: their profile, their posts and comments (not those deleted by them; those
removed by moderation, marked so), their likes, follows both ways, the messages they sent
(with room ids; never other people's messages), their notifications, their sessions (when
and from where, never a token or its hash) and their processed media.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from datetime import datetime
from typing import Any

from storage.db import Database

PAGE = 500

# Each query takes the person ($1), the last row's (created_at, key) ($2, $3; NULL for the
# first page) and the page size ($4), and returns `k` as the keyset's second part.
_QUERIES: dict[str, str] = {
    "posts": """
        SELECT id, id AS k, text, tags, mentions, shared_post_id, media_ids, created_at,
               edited_at, moderation AS removed_by_moderation
        FROM posts WHERE author_id = $1 AND (deleted_at IS NULL OR moderation IS NOT NULL)
    """,
    "comments": """
        SELECT id, id AS k, post_id, text, created_at, moderation AS removed_by_moderation
        FROM comments WHERE author_id = $1 AND (deleted_at IS NULL OR moderation IS NOT NULL)
    """,
    "likes": "SELECT post_id, post_id AS k, created_at FROM likes WHERE user_id = $1",
    "following": """
        SELECT f.followee_id AS user_id, f.followee_id AS k, u.username, f.created_at
        FROM follows f JOIN users u ON u.id = f.followee_id WHERE f.follower_id = $1
    """,
    "followers": """
        SELECT f.follower_id AS user_id, f.follower_id AS k, u.username, f.created_at
        FROM follows f JOIN users u ON u.id = f.follower_id WHERE f.followee_id = $1
    """,
    "messages": """
        SELECT id, id AS k, room_id, seq, text, media_ids, created_at,
               removed_at AS removed_by_moderation_at
        FROM chat_messages WHERE sender_id = $1 AND deleted_at IS NULL
    """,
    "notifications": """
        SELECT id, id AS k, kind, actor_id, post_id, room_id, actor_count, message_count,
               created_at, read_at
        FROM notifications WHERE user_id = $1
    """,
    "sessions": """
        SELECT id, id AS k, created_at, last_used_at, expires_at, revoked_at, revoked_reason,
               user_agent, ip
        FROM auth_sessions WHERE user_id = $1
    """,
    "media": """
        SELECT id, id AS k, kind, filename, content_type, width, height, duration_ms,
               attached_to, created_at, variants
        FROM media WHERE owner_id = $1 AND status = 'ready'
    """,
}
_PAGED = """
    SELECT * FROM ({query}) AS t
    WHERE $2::timestamptz IS NULL OR (t.created_at, t.k) > ($2, $3::uuid)
    ORDER BY t.created_at, t.k LIMIT $4
"""
KINDS = tuple(_QUERIES)


class PersonalData:
    def __init__(self, db: Database) -> None:
        self._db = db

    async def profile(self, user_id: uuid.UUID) -> dict[str, Any] | None:
        async with self._db.connection() as conn:
            row = await conn.fetchrow(
                """
                SELECT id, username, email, display_name, bio, avatar_url, roles,
                       email_verified_at, created_at, updated_at, last_seen_at, suspended_until
                FROM users WHERE id = $1
                """,
                user_id,
            )
        return dict(row) if row else None

    async def rows(
        self, kind: str, user_id: uuid.UUID, page: int = PAGE
    ) -> AsyncIterator[dict[str, Any]]:
        """Every row of `kind` (one of `KINDS`) for the person, oldest first."""
        sql = _PAGED.format(query=_QUERIES[kind])
        after: tuple[datetime | None, uuid.UUID | None] = (None, None)
        while True:
            async with self._db.connection() as conn:
                found = await conn.fetch(sql, user_id, after[0], after[1], page)
            for row in found:
                item = dict(row)
                item.pop("k")
                yield item
            if len(found) < page:
                return
            after = (found[-1]["created_at"], found[-1]["k"])
