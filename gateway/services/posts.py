"""Posts, shares and comments: writes with their outbox events, and the reads behind them.

Every write that changes a counter (a share, a comment) bumps the counter row in its own
transaction and then tells the owning CounterShard the new row. Likes go through the
shard itself (`actors.counter_client`), which group-commits them.
"""

from __future__ import annotations

import re
import uuid

from actors.counter_client import CounterClient
from gateway.errors import Forbidden
from gateway.services.blocklist import Blocklist
from gateway.services.caches import Invalidations, LocalCache
from gateway.services.pages import Page, page_of
from gateway.services.profiles import decode_cursor, encode_cursor, page_size
from storage.db import Database
from storage.errors import InvalidInput
from storage.events import Event
from storage.repositories.counters import CounterRow
from storage.repositories.media import MediaRepository
from storage.repositories.posts import CommentRecord, PostRecord, PostStore

MAX_POST_TEXT = 2_000
MAX_COMMENT_TEXT = 2_000
MAX_IDEMPOTENCY_KEY = 128
MODERATORS = frozenset({"moderator", "admin"})
POSTS_CHANNEL = "nova:posts:changed"

_TAG = re.compile(r"(?<![\w#])#(\w{1,64})")
_MENTION = re.compile(r"(?<![\w@])@([A-Za-z0-9_]{3,30})\b")


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
        blocklist: Blocklist | None = None,
    ) -> None:
        self._store = PostStore(db)
        self._blocklist = blocklist or Blocklist()
        self._media = MediaRepository(db)
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
        media_ids: list[uuid.UUID] | None = None,
    ) -> PostRecord:
        media_ids = media_ids or []
        check_text(
            text,
            limit=MAX_POST_TEXT,
            what="text",
            allow_empty=shared_post_id is not None or bool(media_ids),
        )
        if idempotency_key is not None and not 1 <= len(idempotency_key) <= MAX_IDEMPOTENCY_KEY:
            raise InvalidInput(f"idempotencyKey must be 1-{MAX_IDEMPOTENCY_KEY} characters")
        if media_ids:
            await self._media.check_selection(author_id, media_ids)
        written = await self._store.create(
            author_id,
            text,
            tags=extract_tags(text),
            mentions=extract_mentions(text),
            idempotency_key=idempotency_key,
            shared_post_id=shared_post_id,
            events=_created_events,
            media_ids=media_ids,
            held_for=self._blocklist.match(text),
        )
        if written is None:
            raise Forbidden("you cannot share this post")
        await self._counters.observe(written.counters)
        return written.post

    async def update(self, post_id: uuid.UUID, editor_id: uuid.UUID, text: str) -> PostRecord:
        check_text(text, limit=MAX_POST_TEXT, what="text")
        post = await self._store.update(
            post_id,
            editor_id,
            text,
            tags=extract_tags(text),
            mentions=extract_mentions(text),
            event=lambda post: post_event("content.post.updated", post),
        )
        if post is None:
            raise Forbidden("only the author can edit a post")
        await self._invalidations.changed(self.cache, [post_id])
        return post

    async def delete(self, post_id: uuid.UUID, actor_id: uuid.UUID, roles: frozenset[str]) -> bool:
        rows = await self._store.delete(
            post_id, actor_id, any_author=bool(roles & MODERATORS), events=_deleted_events
        )
        if rows is None:
            raise Forbidden("only the author or a moderator can delete a post")
        await self._invalidations.changed(self.cache, [post_id])
        await self._counters.forget_post(post_id)
        await self._counters.observe(rows)
        return True

    async def forget(self, post_ids: list[uuid.UUID]) -> None:
        """Posts hidden or shown again by moderation: every replica drops its copy, and
        their counter shards reload them."""
        if not post_ids:
            return
        await self._invalidations.changed(self.cache, post_ids)
        for post_id in post_ids:
            await self._counters.forget_post(post_id)

    async def held(self, post_id: uuid.UUID, author_id: uuid.UUID) -> PostRecord | None:
        """The author's own post while the blocklist holds it for review."""
        return await self._store.held(post_id, author_id)

    async def observe_counters(self, rows: list[CounterRow]) -> None:
        """Counter rows changed by another service's transaction (moderation)."""
        await self._counters.observe(rows)

    async def fetch_many(self, ids: list[uuid.UUID]) -> list[PostRecord | None]:
        """Posts by id in the order asked; None for unknown or deleted ones."""
        found = await self.cache.load_many(ids, self._store.live)
        return [found.get(post_id) for post_id in ids]

    async def by_author(self, author_id: uuid.UUID, first: int | None, after: str | None) -> Page:
        limit = page_size(first)
        since = decode_cursor(after) if after else None
        rows = await self._store.by_author(author_id, since, limit + 1)
        return page_of(rows, limit)

    async def viewer_likes(self, viewer_id: uuid.UUID, post_ids: list[uuid.UUID]) -> set[uuid.UUID]:
        return await self._store.liked(viewer_id, post_ids)

    async def like(self, post_id: uuid.UUID, user_id: uuid.UUID, liked: bool) -> CounterRow:
        """Through the post's CounterShard; the caller has checked that the post is live
        and not hidden by a block (the shard refuses deleted posts itself)."""
        result = await self._counters.like(post_id, user_id, liked)
        return result.row

    # -- comments ----------------------------------------------------------------------

    async def comment(self, post_id: uuid.UUID, author_id: uuid.UUID, text: str) -> CommentRecord:
        check_text(text, limit=MAX_COMMENT_TEXT, what="text")
        written = await self._store.add_comment(
            post_id,
            author_id,
            text,
            event=lambda comment, post_author: _comment_event(
                "social.comment.created", comment, post_author
            ),
            held_for=self._blocklist.match(text),
        )
        if written is None:
            raise Forbidden("you cannot comment on this post")
        await self._counters.observe(written.counters)
        return written.comment

    async def delete_comment(
        self, comment_id: uuid.UUID, actor_id: uuid.UUID, roles: frozenset[str]
    ) -> bool:
        rows = await self._store.delete_comment(
            comment_id,
            actor_id,
            any_author=bool(roles & MODERATORS),
            event=lambda comment, post_author: _comment_event(
                "social.comment.deleted", comment, post_author
            ),
        )
        if rows is None:
            raise Forbidden("only the comment's author, the post's author or a moderator")
        await self._counters.observe(rows)
        return True

    async def comments(
        self, post_id: uuid.UUID, first: int | None, after: str | None
    ) -> tuple[list[tuple[str, CommentRecord]], bool]:
        """Oldest first, as a conversation reads."""
        limit = page_size(first)
        since = decode_cursor(after) if after else None
        rows = await self._store.comments(post_id, since, limit + 1)
        items = [(encode_cursor(row.created_at, row.id), row) for row in rows[:limit]]
        return items, len(rows) > limit


def _created_events(post: PostRecord, original: PostRecord | None) -> list[Event]:
    """A post's creation, and for a share the share of the original it counts on."""
    events = [post_event("content.post.created", post)]
    if original is not None:
        events.append(_share_event("social.share.created", post, original.author_id))
    return events


def _deleted_events(post: PostRecord, original_author: uuid.UUID | None) -> list[Event]:
    """A post's deletion, and for a share (`original_author` set) the share's."""
    events = [post_event("content.post.deleted", post)]
    if post.shared_post_id is not None:
        assert original_author is not None
        events.append(_share_event("social.share.deleted", post, original_author))
    return events


def post_event(kind: str, post: PostRecord) -> Event:
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
