"""Story rows: a picture or video shown to the author's followers until `expires_at`, and
who viewed it.

Every read filters on `expires_at > now()` in the same statement that reads, so an expired
story is never returned, whether or not the sweep (`expired`, `delete`) has removed it
yet; reads also leave out stories whose author and reader are blocked either way.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime

from storage.db import Database
from storage.events import Event
from storage.outbox.rows import add_event
from storage.repositories.keysets import Bound, bound_args
from storage.repositories.media import attach_media
from storage.rows import from_row, from_rows

MAX_STORY_TEXT = 500

# Neither of two people sees the other's stories when a block stands between them.
_NOT_BLOCKED = """
NOT EXISTS (SELECT 1 FROM blocks b
            WHERE (b.blocker_id = s.author_id AND b.blocked_id = $1)
               OR (b.blocker_id = $1 AND b.blocked_id = s.author_id))
"""
_LIVE = "s.deleted_at IS NULL AND s.expires_at > now()"


@dataclass(frozen=True)
class StoryRecord:
    id: uuid.UUID
    author_id: uuid.UUID
    media_id: uuid.UUID
    text: str
    created_at: datetime
    expires_at: datetime
    seen: bool = False  # by the reader it was read for


@dataclass(frozen=True)
class StoryView:
    viewer_id: uuid.UUID
    viewed_at: datetime


_COLUMNS = "s.id, s.author_id, s.media_id, s.text, s.created_at, s.expires_at"


class StoryRepository:
    def __init__(self, db: Database) -> None:
        self._db = db

    async def create(
        self,
        *,
        story_id: uuid.UUID,
        author_id: uuid.UUID,
        media_id: uuid.UUID,
        text: str,
        lifetime_s: float,
        event: Event,
    ) -> StoryRecord:
        """The story, its media attached to it and its event, in one transaction;
        `InvalidInput` (nothing written) if the media cannot be attached."""
        async with self._db.transaction() as conn:
            await attach_media(conn, author_id, [media_id], "story")
            row = await conn.fetchrow(
                f"""
                INSERT INTO stories AS s (id, author_id, media_id, text, created_at, expires_at)
                VALUES ($1, $2, $3, $4, now(), now() + make_interval(secs => $5))
                RETURNING {_COLUMNS}
                """,
                story_id,
                author_id,
                media_id,
                text,
                lifetime_s,
            )
            await add_event(conn, event)
        return from_row(StoryRecord, row)

    async def visible(self, story_id: uuid.UUID, reader: uuid.UUID) -> StoryRecord | None:
        """The story if `reader` may see it now: live, and theirs or a followee's whom no
        block separates from them."""
        async with self._db.connection() as conn:
            row = await conn.fetchrow(
                f"""
                SELECT {_COLUMNS},
                       EXISTS (SELECT 1 FROM story_views v
                               WHERE v.story_id = s.id AND v.viewer_id = $1) AS seen
                FROM stories s
                WHERE s.id = $2 AND {_LIVE}
                  AND (s.author_id = $1
                       OR (EXISTS (SELECT 1 FROM follows f
                                   WHERE f.follower_id = $1 AND f.followee_id = s.author_id)
                           AND {_NOT_BLOCKED}))
                """,
                reader,
                story_id,
            )
        return from_row(StoryRecord, row) if row else None

    async def of_followees(self, reader: uuid.UUID, limit: int) -> list[StoryRecord]:
        """Live stories of the people `reader` follows (blocks apply), each marked seen or
        not by `reader`; at most `limit` authors' worth, oldest story first per author."""
        async with self._db.connection() as conn:
            rows = await conn.fetch(
                f"""
                WITH authors AS (
                    SELECT s.author_id,
                           bool_or(v.viewer_id IS NULL) AS unseen,
                           max(s.created_at) AS latest
                    FROM follows f
                    JOIN stories s ON s.author_id = f.followee_id AND {_LIVE}
                    LEFT JOIN story_views v ON v.story_id = s.id AND v.viewer_id = $1
                    WHERE f.follower_id = $1 AND {_NOT_BLOCKED}
                    GROUP BY s.author_id
                    ORDER BY unseen DESC, latest DESC, s.author_id
                    LIMIT $2
                )
                SELECT {_COLUMNS}, v.viewer_id IS NOT NULL AS seen
                FROM authors a
                JOIN stories s ON s.author_id = a.author_id AND {_LIVE}
                LEFT JOIN story_views v ON v.story_id = s.id AND v.viewer_id = $1
                ORDER BY a.unseen DESC, a.latest DESC, a.author_id, s.created_at, s.id
                """,
                reader,
                limit,
            )
        return from_rows(StoryRecord, rows)

    async def of_author(self, author_id: uuid.UUID) -> list[StoryRecord]:
        """The author's own live stories, oldest first."""
        async with self._db.connection() as conn:
            rows = await conn.fetch(
                f"""
                SELECT {_COLUMNS} FROM stories s
                WHERE s.author_id = $1 AND {_LIVE}
                ORDER BY s.created_at, s.id
                """,
                author_id,
            )
        return from_rows(StoryRecord, rows)

    async def record_view(self, story_id: uuid.UUID, viewer: uuid.UUID) -> bool:
        """Record a view once (the author's own views are not counted); True if this was
        the viewer's first, False otherwise, or if the story is no longer live."""
        async with self._db.connection() as conn:
            recorded = await conn.fetchval(
                f"""
                INSERT INTO story_views (story_id, viewer_id)
                SELECT s.id, $1 FROM stories s
                WHERE s.id = $2 AND s.author_id <> $1 AND {_LIVE}
                ON CONFLICT DO NOTHING
                RETURNING true
                """,
                viewer,
                story_id,
            )
        return bool(recorded)

    async def viewers(
        self, story_id: uuid.UUID, author: uuid.UUID, after: Bound | None, limit: int
    ) -> list[StoryView] | None:
        """Who viewed the author's live story, newest first, leaving out anyone a block
        separates from the author; None if it is not the author's live story."""
        after_at, after_id = bound_args(after)
        async with self._db.connection() as conn:
            live = await conn.fetchval(
                f"SELECT true FROM stories s WHERE s.id = $1 AND s.author_id = $2 AND {_LIVE}",
                story_id,
                author,
            )
            if not live:
                return None
            rows = await conn.fetch(
                """
                SELECT v.viewer_id, v.viewed_at FROM story_views v
                WHERE v.story_id = $1
                  AND ($3::timestamptz IS NULL OR (v.viewed_at, v.viewer_id) < ($3, $4))
                  AND NOT EXISTS (SELECT 1 FROM blocks b
                                  WHERE (b.blocker_id = $2 AND b.blocked_id = v.viewer_id)
                                     OR (b.blocker_id = v.viewer_id AND b.blocked_id = $2))
                ORDER BY v.viewed_at DESC, v.viewer_id DESC
                LIMIT $5
                """,
                story_id,
                author,
                after_at,
                after_id,
                limit,
            )
        return from_rows(StoryView, rows)

    async def view_counts(self, story_ids: list[uuid.UUID]) -> dict[uuid.UUID, int]:
        async with self._db.connection() as conn:
            rows = await conn.fetch(
                """
                SELECT story_id, count(*) AS n FROM story_views
                WHERE story_id = ANY($1) GROUP BY story_id
                """,
                story_ids,
            )
        return {row["story_id"]: row["n"] for row in rows}

    async def delete(self, story_id: uuid.UUID, author: uuid.UUID, event: Event) -> bool:
        """The author takes a live story down; False if it is not theirs or not live."""
        async with self._db.transaction() as conn:
            deleted = await conn.fetchval(
                f"""
                UPDATE stories s SET deleted_at = now()
                WHERE s.id = $1 AND s.author_id = $2 AND {_LIVE}
                RETURNING true
                """,
                story_id,
                author,
            )
            if deleted:
                await add_event(conn, event)
        return bool(deleted)

    async def ended(self, older_than_s: float, limit: int) -> list[tuple[uuid.UUID, uuid.UUID]]:
        """(story, media) of stories expired or taken down more than `older_than_s` ago:
        for the sweep, which removes both."""
        async with self._db.connection() as conn:
            rows = await conn.fetch(
                """
                SELECT id, media_id FROM stories
                WHERE least(expires_at, coalesce(deleted_at, expires_at))
                      < now() - make_interval(secs => $1)
                ORDER BY expires_at LIMIT $2
                """,
                older_than_s,
                limit,
            )
        return [(row["id"], row["media_id"]) for row in rows]

    async def forget(self, story_id: uuid.UUID) -> None:
        """A story gone for good, with its views (its media row is the caller's)."""
        async with self._db.connection() as conn:
            await conn.execute("DELETE FROM stories WHERE id = $1", story_id)
