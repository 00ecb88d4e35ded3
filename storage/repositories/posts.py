"""Posts, shares and comments: their records, and the statements that write and read them.

A write that changes a counter (a share, a comment) bumps the counter row in the same
transaction as the change and its outbox events, and returns the new rows for the caller
to hand to the CounterShards once committed. Likes are not here: the shards group-commit
them (`storage.repositories.counters.commit_likes`).
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime

import asyncpg

from storage.db import Database
from storage.errors import NotFound
from storage.events import Event
from storage.outbox.rows import add_event, add_events
from storage.repositories.counters import CounterRow, bump
from storage.repositories.graph import blocked_either_way
from storage.repositories.keysets import Bound, Keyed, bound_args
from storage.repositories.media import attach_media, hide_media
from storage.repositories.reports import hold
from storage.rows import columns, from_row, from_rows


@dataclass(frozen=True)
class PostRecord:
    id: uuid.UUID
    author_id: uuid.UUID
    text: str
    tags: tuple[str, ...]
    mentions: tuple[str, ...]
    shared_post_id: uuid.UUID | None
    created_at: datetime
    edited_at: datetime | None
    deleted: bool
    media_ids: tuple[uuid.UUID, ...] = ()
    held: bool = False  # by the blocklist, until a moderator publishes or removes it


@dataclass(frozen=True)
class CommentRecord:
    id: uuid.UUID
    post_id: uuid.UUID
    author_id: uuid.UUID
    text: str
    created_at: datetime


POST_COLUMNS = (
    "id, author_id, text, tags, mentions, shared_post_id, created_at, edited_at,"
    " deleted_at IS NOT NULL AS deleted, media_ids,"
    " moderation IS NOT DISTINCT FROM 'held' AS held"
)
COMMENT_COLUMNS = columns(CommentRecord)
_COMMENT_COLUMNS_OF_C = columns(CommentRecord, "c")

# The full-text document of a post: its tags ($2, weight A) before its text ($1, weight B).
SEARCH_VECTOR = (
    "setweight(to_tsvector('english', array_to_string($2::text[], ' ')), 'A')"
    " || setweight(to_tsvector('english', $1::text), 'B')"
)

PostEvents = Callable[[PostRecord, PostRecord | None], list[Event]]
"""A new post and the original it shares (None for a plain post) → the events to write."""
DeletionEvents = Callable[[PostRecord, uuid.UUID | None], list[Event]]
"""A deleted post and, for a share, its original's author → the events to write."""
CommentEvent = Callable[[CommentRecord, uuid.UUID], Event]
"""A comment and the commented post's author → the event to write."""


@dataclass(frozen=True)
class PostWrite:
    """A post created (or found by its idempotency key) and the counter rows it changed."""

    post: PostRecord
    counters: list[CounterRow]


@dataclass(frozen=True)
class CommentWrite:
    comment: CommentRecord
    counters: list[CounterRow]


async def live_post(
    conn: asyncpg.Connection, post_id: uuid.UUID, *, for_update: bool = False
) -> PostRecord:
    """The post unless deleted; raises `NotFound` otherwise."""
    lock = " FOR UPDATE" if for_update else ""
    row = await conn.fetchrow(
        f"SELECT {POST_COLUMNS} FROM posts WHERE id = $1 AND deleted_at IS NULL{lock}",
        post_id,
    )
    if row is None:
        raise NotFound("post not found")
    return from_row(PostRecord, row)


async def post_by_idempotency_key(
    conn: asyncpg.Connection, author_id: uuid.UUID, key: str
) -> PostRecord | None:
    row = await conn.fetchrow(
        f"SELECT {POST_COLUMNS} FROM posts WHERE author_id = $1 AND idempotency_key = $2",
        author_id,
        key,
    )
    return from_row(PostRecord, row) if row is not None else None


class PostStore:
    def __init__(self, db: Database) -> None:
        self._db = db

    # -- posts -------------------------------------------------------------------------

    async def create(
        self,
        author_id: uuid.UUID,
        text: str,
        *,
        tags: Sequence[str],
        mentions: Sequence[str],
        idempotency_key: str | None,
        shared_post_id: uuid.UUID | None,
        events: PostEvents,
        media_ids: Sequence[uuid.UUID] = (),
        held_for: str | None = None,
    ) -> PostWrite | None:
        """Insert a post (a share when `shared_post_id` is set) with its events; the post
        already written under `idempotency_key` if there is one. None: the author and the
        shared post's author are blocked either way (nothing written). A shared post that
        is gone raises `NotFound`. With `held_for` (the blocklist entry it matched), the
        post is held: hidden, without events, and reported for review."""
        async with self._db.transaction() as conn:
            if idempotency_key is not None:
                existing = await post_by_idempotency_key(conn, author_id, idempotency_key)
                if existing is not None:
                    return PostWrite(existing, [])
            original = None
            if shared_post_id is not None:
                original = await live_post(conn, shared_post_id)
                if await blocked_either_way(conn, author_id, original.author_id):
                    return None
            if media_ids:
                await attach_media(conn, author_id, media_ids, "post")
            row = await conn.fetchrow(
                f"""
                INSERT INTO posts (id, author_id, text, tags, mentions, shared_post_id,
                                   idempotency_key, search, media_ids, deleted_at, moderation)
                VALUES ($3, $4, $1, $2, $5, $6, $7, {SEARCH_VECTOR}, $8,
                        CASE WHEN $9::text IS NULL THEN NULL ELSE clock_timestamp() END,
                        CASE WHEN $9::text IS NULL THEN NULL ELSE 'held' END)
                ON CONFLICT (author_id, idempotency_key) WHERE idempotency_key IS NOT NULL
                DO NOTHING
                RETURNING {POST_COLUMNS}
                """,
                text,
                list(tags),
                uuid.uuid4(),
                author_id,
                list(mentions),
                shared_post_id,
                idempotency_key,
                list(media_ids),
                held_for,
            )
            if row is None:  # a concurrent retry with the same key won
                existing = await post_by_idempotency_key(conn, author_id, idempotency_key or "")
                assert existing is not None
                return PostWrite(existing, [])
            post = from_row(PostRecord, row)
            if held_for is not None:
                await hold(conn, "POST", post.id, held_for)
                return PostWrite(post, [])
            rows: list[CounterRow] = []
            if original is not None:
                rows = await bump(conn, "post", {original.id: {"shares": 1}})
            await add_events(conn, events(post, original))
        return PostWrite(post, rows)

    async def update(
        self,
        post_id: uuid.UUID,
        editor_id: uuid.UUID,
        text: str,
        *,
        tags: Sequence[str],
        mentions: Sequence[str],
        event: Callable[[PostRecord], Event],
    ) -> PostRecord | None:
        """Replace a live post's text (its row locked meanwhile) and write its event.
        None: `editor_id` is not the author (nothing written); a deleted post raises
        `NotFound`."""
        async with self._db.transaction() as conn:
            current = await live_post(conn, post_id, for_update=True)
            if current.author_id != editor_id:
                return None
            row = await conn.fetchrow(
                f"""
                UPDATE posts SET text = $1, tags = $2, mentions = $4, search = {SEARCH_VECTOR},
                                 edited_at = clock_timestamp()
                WHERE id = $3 RETURNING {POST_COLUMNS}
                """,
                text,
                list(tags),
                post_id,
                list(mentions),
            )
            post = from_row(PostRecord, row)
            await add_event(conn, event(post))
        return post

    async def delete(
        self,
        post_id: uuid.UUID,
        actor_id: uuid.UUID,
        *,
        any_author: bool,
        events: DeletionEvents,
    ) -> list[CounterRow] | None:
        """Mark a live post deleted by `actor_id`, who must be its author unless
        `any_author`; a share's original counts one share fewer. Returns the counter rows
        changed; None when the actor may not (nothing written). A deleted post raises
        `NotFound`."""
        async with self._db.transaction() as conn:
            current = await live_post(conn, post_id, for_update=True)
            if current.author_id != actor_id and not any_author:
                return None
            await conn.execute(
                "UPDATE posts SET deleted_at = clock_timestamp(), deleted_by = $2 WHERE id = $1",
                post_id,
                actor_id,
            )
            if current.media_ids:
                await hide_media(conn, current.media_ids)
            rows: list[CounterRow] = []
            original_author: uuid.UUID | None = None
            if current.shared_post_id is not None:  # a share: the original counts one fewer
                original = current.shared_post_id
                original_author = await conn.fetchval(
                    "SELECT author_id FROM posts WHERE id = $1", original
                )
                rows = await bump(conn, "post", {original: {"shares": -1}})
            await add_events(conn, events(current, original_author))
        return rows

    async def live(self, ids: Sequence[uuid.UUID]) -> dict[uuid.UUID, PostRecord]:
        """The posts of `ids` that exist and are not deleted, by id."""
        async with self._db.connection() as conn:
            rows = await conn.fetch(
                f"SELECT {POST_COLUMNS} FROM posts WHERE id = ANY($1) AND deleted_at IS NULL",
                list(ids),
            )
        return {post.id: post for post in from_rows(PostRecord, rows)}

    async def held(self, post_id: uuid.UUID, author_id: uuid.UUID) -> PostRecord | None:
        async with self._db.connection() as conn:
            row = await conn.fetchrow(
                f"SELECT {POST_COLUMNS} FROM posts"
                " WHERE id = $1 AND author_id = $2 AND moderation = 'held'",
                post_id,
                author_id,
            )
        return from_row(PostRecord, row) if row is not None else None

    async def by_author(self, author_id: uuid.UUID, after: Bound | None, limit: int) -> list[Keyed]:
        """An author's live posts, newest first, older than `after`."""
        created_at, post_id = bound_args(after)
        async with self._db.connection() as conn:
            rows = await conn.fetch(
                """
                SELECT id, created_at FROM posts
                WHERE author_id = $1 AND deleted_at IS NULL
                  AND ($2::timestamptz IS NULL OR (created_at, id) < ($2, $3::uuid))
                ORDER BY created_at DESC, id DESC LIMIT $4
                """,
                author_id,
                created_at,
                post_id,
                limit,
            )
        return from_rows(Keyed, rows)

    async def liked(self, user_id: uuid.UUID, post_ids: Sequence[uuid.UUID]) -> set[uuid.UUID]:
        """Which of `post_ids` the user likes."""
        async with self._db.connection() as conn:
            rows = await conn.fetch(
                "SELECT post_id FROM likes WHERE user_id = $1 AND post_id = ANY($2)",
                user_id,
                list(post_ids),
            )
        return {row["post_id"] for row in rows}

    # -- comments ----------------------------------------------------------------------

    async def add_comment(
        self,
        post_id: uuid.UUID,
        author_id: uuid.UUID,
        text: str,
        *,
        event: CommentEvent,
        held_for: str | None = None,
    ) -> CommentWrite | None:
        """Comment on a live post, counting it and writing its event. None: the commenter
        and the post's author are blocked either way (nothing written); a deleted post
        raises `NotFound`. With `held_for`, the comment is held for review (hidden, not
        counted, no event)."""
        async with self._db.transaction() as conn:
            post = await live_post(conn, post_id)
            if await blocked_either_way(conn, author_id, post.author_id):
                return None
            row = await conn.fetchrow(
                f"""
                INSERT INTO comments (id, post_id, author_id, text, deleted_at, moderation)
                VALUES ($1, $2, $3, $4,
                        CASE WHEN $5::text IS NULL THEN NULL ELSE clock_timestamp() END,
                        CASE WHEN $5::text IS NULL THEN NULL ELSE 'held' END)
                RETURNING {COMMENT_COLUMNS}
                """,
                uuid.uuid4(),
                post_id,
                author_id,
                text,
                held_for,
            )
            comment = from_row(CommentRecord, row)
            if held_for is not None:
                await hold(conn, "COMMENT", comment.id, held_for)
                return CommentWrite(comment, [])
            rows = await bump(conn, "post", {post_id: {"comments": 1}})
            await add_event(conn, event(comment, post.author_id))
        return CommentWrite(comment, rows)

    async def delete_comment(
        self,
        comment_id: uuid.UUID,
        actor_id: uuid.UUID,
        *,
        any_author: bool,
        event: CommentEvent,
    ) -> list[CounterRow] | None:
        """Mark a comment deleted by `actor_id`, who must have written it or the post
        unless `any_author`. Returns the counter rows changed; None when the actor may not
        (nothing written). A deleted or unknown comment raises `NotFound`."""
        async with self._db.transaction() as conn:
            row = await conn.fetchrow(
                f"""
                SELECT {_COMMENT_COLUMNS_OF_C}, p.author_id AS post_author_id
                FROM comments c JOIN posts p ON p.id = c.post_id
                WHERE c.id = $1 AND c.deleted_at IS NULL FOR UPDATE OF c
                """,
                comment_id,
            )
            if row is None:
                raise NotFound("comment not found")
            post_author: uuid.UUID = row["post_author_id"]
            if actor_id not in (row["author_id"], post_author) and not any_author:
                return None
            await conn.execute(
                "UPDATE comments SET deleted_at = clock_timestamp() WHERE id = $1", comment_id
            )
            comment = from_row(CommentRecord, row)
            rows = await bump(conn, "post", {comment.post_id: {"comments": -1}})
            await add_event(conn, event(comment, post_author))
        return rows

    async def comments(
        self, post_id: uuid.UUID, after: Bound | None, limit: int
    ) -> list[CommentRecord]:
        """A post's live comments, oldest first (as a conversation reads), after `after`."""
        created_at, comment_id = bound_args(after)
        async with self._db.connection() as conn:
            rows = await conn.fetch(
                f"""
                SELECT {COMMENT_COLUMNS} FROM comments
                WHERE post_id = $1 AND deleted_at IS NULL
                  AND ($2::timestamptz IS NULL OR (created_at, id) > ($2, $3::uuid))
                ORDER BY created_at, id LIMIT $4
                """,
                post_id,
                created_at,
                comment_id,
                limit,
            )
        return from_rows(CommentRecord, rows)
