"""Posts, shares and comments: writes with their outbox events, and the reads behind them.

Every write that changes a counter (a share, a comment) bumps the counter row in its own
transaction and then tells the owning CounterShard the new row. Likes go through the
shard itself (`actors.counter_client`), which group-commits them.
"""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass
from datetime import datetime

import asyncpg

from actors.counter_client import CounterClient
from gateway.errors import Forbidden
from gateway.services.caches import Invalidations, LocalCache
from gateway.services.pages import Page, page_of
from gateway.services.profiles import decode_cursor, encode_cursor, page_size
from storage.db import Database
from storage.errors import InvalidInput, NotFound
from storage.events import Event
from storage.outbox.rows import add_event, add_events
from storage.repositories.counters import CounterRow, bump
from storage.repositories.graph import blocked_either_way

MAX_POST_TEXT = 2_000
MAX_COMMENT_TEXT = 2_000
MAX_IDEMPOTENCY_KEY = 128
MODERATORS = frozenset({"moderator", "admin"})
POSTS_CHANNEL = "nova:posts:changed"

_TAG = re.compile(r"(?<![\w#])#(\w{1,64})")
_MENTION = re.compile(r"(?<![\w@])@([A-Za-z0-9_]{3,30})\b")

POST_COLUMNS = (
    "id, author_id, text, tags, mentions, shared_post_id, created_at, edited_at, deleted_at"
)


def extract_tags(text: str) -> list[str]:
    """`#Rust and #rust, #go` → `["rust", "go"]`: lowercased, first occurrence order."""
    return list(dict.fromkeys(tag.lower() for tag in _TAG.findall(text)))


def extract_mentions(text: str) -> list[str]:
    """`@Alice hi @bob` → `["alice", "bob"]` (usernames are case-insensitive)."""
    return list(dict.fromkeys(name.lower() for name in _MENTION.findall(text)))


def check_text(text: str, *, limit: int, what: str, allow_empty: bool = False) -> str:
    if not allow_empty and not text.strip():
        raise InvalidInput(f"{what} must not be empty")
    if len(text) > limit:
        raise InvalidInput(f"{what} must be at most {limit} characters")
    return text


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

    @classmethod
    def from_row(cls, row: asyncpg.Record) -> PostRecord:
        return cls(
            id=row["id"],
            author_id=row["author_id"],
            text=row["text"],
            tags=tuple(row["tags"]),
            mentions=tuple(row["mentions"]),
            shared_post_id=row["shared_post_id"],
            created_at=row["created_at"],
            edited_at=row["edited_at"],
            deleted=row["deleted_at"] is not None,
        )


@dataclass(frozen=True)
class CommentRecord:
    id: uuid.UUID
    post_id: uuid.UUID
    author_id: uuid.UUID
    text: str
    created_at: datetime

    @classmethod
    def from_row(cls, row: asyncpg.Record) -> CommentRecord:
        return cls(row["id"], row["post_id"], row["author_id"], row["text"], row["created_at"])


_SEARCH_VECTOR = (
    "setweight(to_tsvector('english', array_to_string($2::text[], ' ')), 'A')"
    " || setweight(to_tsvector('english', $1::text), 'B')"
)


class Posts:
    """Post, share and comment writes, and post reads through this replica's post cache
    (a post changes only when edited or deleted, and both drop it everywhere)."""

    def __init__(
        self,
        db: Database,
        counters: CounterClient,
        invalidations: Invalidations,
        *,
        cache_size: int,
        cache_ttl_s: float,
    ) -> None:
        self._db = db
        self._counters = counters
        self._invalidations = invalidations
        self.cache: LocalCache[uuid.UUID, PostRecord] = invalidations.cache(
            POSTS_CHANNEL, uuid.UUID, max_entries=cache_size, ttl_s=cache_ttl_s
        )

    # -- posts -------------------------------------------------------------------------

    async def create(
        self,
        author_id: uuid.UUID,
        text: str,
        idempotency_key: str | None = None,
        *,
        shared_post_id: uuid.UUID | None = None,
    ) -> PostRecord:
        check_text(text, limit=MAX_POST_TEXT, what="text", allow_empty=shared_post_id is not None)
        if idempotency_key is not None and not 1 <= len(idempotency_key) <= MAX_IDEMPOTENCY_KEY:
            raise InvalidInput(f"idempotencyKey must be 1-{MAX_IDEMPOTENCY_KEY} characters")
        tags, mentions = extract_tags(text), extract_mentions(text)
        rows: list[CounterRow] = []
        async with self._db.transaction() as conn:
            if idempotency_key is not None:
                existing = await self._by_idempotency_key(conn, author_id, idempotency_key)
                if existing is not None:
                    return existing
            original = None
            if shared_post_id is not None:
                original = await self._live_post(conn, shared_post_id)
                if await blocked_either_way(conn, author_id, original.author_id):
                    raise Forbidden("you cannot share this post")
            row = await conn.fetchrow(
                f"""
                INSERT INTO posts (id, author_id, text, tags, mentions, shared_post_id,
                                   idempotency_key, search)
                VALUES ($3, $4, $1, $2, $5, $6, $7, {_SEARCH_VECTOR})
                ON CONFLICT (author_id, idempotency_key) WHERE idempotency_key IS NOT NULL
                DO NOTHING
                RETURNING {POST_COLUMNS}
                """,
                text,
                tags,
                uuid.uuid4(),
                author_id,
                mentions,
                shared_post_id,
                idempotency_key,
            )
            if row is None:  # a concurrent retry with the same key won
                existing = await self._by_idempotency_key(conn, author_id, idempotency_key or "")
                assert existing is not None
                return existing
            post = PostRecord.from_row(row)
            events = [_post_event("content.post.created", post)]
            if original is not None:
                rows = await bump(conn, "post", {original.id: {"shares": 1}})
                events.append(_share_event("social.share.created", post, original.author_id))
            await add_events(conn, events)
        await self._counters.observe(rows)
        return post

    async def update(self, post_id: uuid.UUID, editor_id: uuid.UUID, text: str) -> PostRecord:
        check_text(text, limit=MAX_POST_TEXT, what="text")
        async with self._db.transaction() as conn:
            current = await self._live_post(conn, post_id, for_update=True)
            if current.author_id != editor_id:
                raise Forbidden("only the author can edit a post")
            row = await conn.fetchrow(
                f"""
                UPDATE posts SET text = $1, tags = $2, mentions = $4, search = {_SEARCH_VECTOR},
                                 edited_at = clock_timestamp()
                WHERE id = $3 RETURNING {POST_COLUMNS}
                """,
                text,
                extract_tags(text),
                post_id,
                extract_mentions(text),
            )
            post = PostRecord.from_row(row)
            await add_event(conn, _post_event("content.post.updated", post))
        await self._invalidations.changed(self.cache, [post_id])
        return post

    async def delete(self, post_id: uuid.UUID, actor_id: uuid.UUID, roles: frozenset[str]) -> bool:
        async with self._db.transaction() as conn:
            current = await self._live_post(conn, post_id, for_update=True)
            if current.author_id != actor_id and not roles & MODERATORS:
                raise Forbidden("only the author or a moderator can delete a post")
            await conn.execute(
                "UPDATE posts SET deleted_at = clock_timestamp(), deleted_by = $2 WHERE id = $1",
                post_id,
                actor_id,
            )
            events = [_post_event("content.post.deleted", current)]
            rows: list[CounterRow] = []
            if current.shared_post_id is not None:  # a share: the original counts one fewer
                original = current.shared_post_id
                original_author = await conn.fetchval(
                    "SELECT author_id FROM posts WHERE id = $1", original
                )
                rows = await bump(conn, "post", {original: {"shares": -1}})
                events.append(_share_event("social.share.deleted", current, original_author))
            await add_events(conn, events)
        await self._invalidations.changed(self.cache, [post_id])
        await self._counters.forget_post(post_id)
        await self._counters.observe(rows)
        return True

    async def fetch_many(self, ids: list[uuid.UUID]) -> list[PostRecord | None]:
        """Posts by id in the order asked; None for unknown or deleted ones."""
        found = await self.cache.load_many(ids, self._fetch_live)
        return [found.get(post_id) for post_id in ids]

    async def _fetch_live(self, ids: list[uuid.UUID]) -> dict[uuid.UUID, PostRecord]:
        async with self._db.connection() as conn:
            rows = await conn.fetch(
                f"SELECT {POST_COLUMNS} FROM posts WHERE id = ANY($1) AND deleted_at IS NULL",
                ids,
            )
        return {row["id"]: PostRecord.from_row(row) for row in rows}

    async def by_author(self, author_id: uuid.UUID, first: int | None, after: str | None) -> Page:
        limit = page_size(first)
        since = decode_cursor(after) if after else None
        async with self._db.connection() as conn:
            rows = await conn.fetch(
                """
                SELECT id, created_at FROM posts
                WHERE author_id = $1 AND deleted_at IS NULL
                  AND ($2::timestamptz IS NULL OR (created_at, id) < ($2, $3::uuid))
                ORDER BY created_at DESC, id DESC LIMIT $4
                """,
                author_id,
                since[0] if since else None,
                since[1] if since else None,
                limit + 1,
            )
        return page_of(rows, limit, "id")

    async def viewer_likes(self, viewer_id: uuid.UUID, post_ids: list[uuid.UUID]) -> set[uuid.UUID]:
        async with self._db.connection() as conn:
            rows = await conn.fetch(
                "SELECT post_id FROM likes WHERE user_id = $1 AND post_id = ANY($2)",
                viewer_id,
                post_ids,
            )
        return {row["post_id"] for row in rows}

    async def like(self, post_id: uuid.UUID, user_id: uuid.UUID, liked: bool) -> CounterRow:
        """Through the post's CounterShard; the caller has checked that the post is live
        and not hidden by a block (the shard refuses deleted posts itself)."""
        result = await self._counters.like(post_id, user_id, liked)
        return result.row

    # -- comments ----------------------------------------------------------------------

    async def comment(self, post_id: uuid.UUID, author_id: uuid.UUID, text: str) -> CommentRecord:
        check_text(text, limit=MAX_COMMENT_TEXT, what="text")
        async with self._db.transaction() as conn:
            post = await self._live_post(conn, post_id)
            if await blocked_either_way(conn, author_id, post.author_id):
                raise Forbidden("you cannot comment on this post")
            row = await conn.fetchrow(
                """
                INSERT INTO comments (id, post_id, author_id, text) VALUES ($1, $2, $3, $4)
                RETURNING id, post_id, author_id, text, created_at
                """,
                uuid.uuid4(),
                post_id,
                author_id,
                text,
            )
            comment = CommentRecord.from_row(row)
            rows = await bump(conn, "post", {post_id: {"comments": 1}})
            await add_event(conn, _comment_event("social.comment.created", comment, post.author_id))
        await self._counters.observe(rows)
        return comment

    async def delete_comment(
        self, comment_id: uuid.UUID, actor_id: uuid.UUID, roles: frozenset[str]
    ) -> bool:
        async with self._db.transaction() as conn:
            row = await conn.fetchrow(
                """
                SELECT c.id, c.post_id, c.author_id, c.text, c.created_at,
                       p.author_id AS post_author_id
                FROM comments c JOIN posts p ON p.id = c.post_id
                WHERE c.id = $1 AND c.deleted_at IS NULL FOR UPDATE OF c
                """,
                comment_id,
            )
            if row is None:
                raise NotFound("comment not found")
            if actor_id not in (row["author_id"], row["post_author_id"]) and not (
                roles & MODERATORS
            ):
                raise Forbidden("only the comment's author, the post's author or a moderator")
            await conn.execute(
                "UPDATE comments SET deleted_at = clock_timestamp() WHERE id = $1", comment_id
            )
            comment = CommentRecord.from_row(row)
            rows = await bump(conn, "post", {comment.post_id: {"comments": -1}})
            await add_event(
                conn,
                _comment_event("social.comment.deleted", comment, row["post_author_id"]),
            )
        await self._counters.observe(rows)
        return True

    async def comments(
        self, post_id: uuid.UUID, first: int | None, after: str | None
    ) -> tuple[list[tuple[str, CommentRecord]], bool]:
        """Oldest first, as a conversation reads."""
        limit = page_size(first)
        since = decode_cursor(after) if after else None
        async with self._db.connection() as conn:
            rows = await conn.fetch(
                """
                SELECT id, post_id, author_id, text, created_at FROM comments
                WHERE post_id = $1 AND deleted_at IS NULL
                  AND ($2::timestamptz IS NULL OR (created_at, id) > ($2, $3::uuid))
                ORDER BY created_at, id LIMIT $4
                """,
                post_id,
                since[0] if since else None,
                since[1] if since else None,
                limit + 1,
            )
        items = [
            (encode_cursor(row["created_at"], row["id"]), CommentRecord.from_row(row))
            for row in rows[:limit]
        ]
        return items, len(rows) > limit

    # -- helpers -----------------------------------------------------------------------

    async def _live_post(
        self, conn: asyncpg.Connection, post_id: uuid.UUID, *, for_update: bool = False
    ) -> PostRecord:
        lock = " FOR UPDATE" if for_update else ""
        row = await conn.fetchrow(
            f"SELECT {POST_COLUMNS} FROM posts WHERE id = $1 AND deleted_at IS NULL{lock}",
            post_id,
        )
        if row is None:
            raise NotFound("post not found")
        return PostRecord.from_row(row)

    async def _by_idempotency_key(
        self, conn: asyncpg.Connection, author_id: uuid.UUID, key: str
    ) -> PostRecord | None:
        row = await conn.fetchrow(
            f"SELECT {POST_COLUMNS} FROM posts WHERE author_id = $1 AND idempotency_key = $2",
            author_id,
            key,
        )
        return PostRecord.from_row(row) if row is not None else None


def _post_event(kind: str, post: PostRecord) -> Event:
    return Event(
        kind,
        str(post.author_id),
        {
            "post_id": str(post.id),
            "author_id": str(post.author_id),
            "created_at": post.created_at.isoformat(),
            "tags": list(post.tags),
            "mentions": list(post.mentions),
            "shared_post_id": str(post.shared_post_id) if post.shared_post_id else None,
            "text_length": len(post.text),
        },
    )


def _share_event(kind: str, share: PostRecord, original_author: uuid.UUID) -> Event:
    """`social.share.created` or `.deleted`, keyed by the original post it counts on."""
    assert share.shared_post_id is not None
    return Event(
        kind,
        str(share.shared_post_id),
        {
            "post_id": str(share.shared_post_id),
            "share_id": str(share.id),
            "user_id": str(share.author_id),
            "author_id": str(original_author),
        },
    )


def _comment_event(kind: str, comment: CommentRecord, post_author: uuid.UUID) -> Event:
    return Event(
        kind,
        str(comment.post_id),
        {
            "comment_id": str(comment.id),
            "post_id": str(comment.post_id),
            "user_id": str(comment.author_id),
            "author_id": str(post_author),
        },
    )
