"""The home feed: a slice of the viewer's timeline merged with followed celebrities' posts,
and the live `feedUpdated` stream.

Reads: the viewer's TimelineShard returns the page from memory; authors above the fan-out
threshold are not in timelines, so their posts older than the cursor are read from
PostgreSQL (one indexed query) and merged. Cursors are `(created_at, post_id)` keysets:
paging while new posts arrive yields no duplicates and no gaps.

Live updates: timeline shards publish each new entry's post id on `nova:feed:<user>`.
Each gateway replica holds one Redis subscription (`FeedHub`) and hands messages to the
WebSocket subscribers of that user on this replica, so every replica sees every update.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections import defaultdict
from collections.abc import AsyncIterator
from datetime import datetime

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from actors.timeline_client import TimelineClient
from actors.timeline_shard import FEED_CHANNEL
from gateway.profiles import decode_cursor, encode_cursor, page_size
from storage.config import Settings
from storage.db import Database
from storage.tasks import Backoff
from storage.timelines import Entry, celebrity_posts, pull_page, touch

log = logging.getLogger(__name__)

_NIL = uuid.UUID(int=0)
_TOUCH_EVERY_S = 3_600.0
SUBSCRIBER_QUEUE = 1_000


class Feed:
    def __init__(self, db: Database, timelines: TimelineClient, settings: Settings) -> None:
        self._db = db
        self._timelines = timelines
        self._settings = settings
        self._touched: dict[uuid.UUID, float] = {}

    async def page(
        self, viewer: uuid.UUID, first: int | None, after: str | None, *, pull: bool = False
    ) -> tuple[list[tuple[str, uuid.UUID]], bool]:
        limit = page_size(first)
        before = decode_cursor(after) if after else None
        if pull:
            async with self._db.connection() as conn:
                pulled = await pull_page(conn, viewer, before=before, limit=limit + 1)
            items = [(encode_cursor(e.created_at, e.post_id), e.post_id) for e in pulled]
            return items[:limit], len(pulled) > limit
        # The smallest author id sorts before every real entry at the same instant and post.
        marker = Entry(before[0], before[1], _NIL) if before else None
        timeline, celebrities = await asyncio.gather(
            self._timelines.page(viewer, marker, limit + 1),
            self._celebrities(viewer, before, limit + 1),
        )
        merged = {e.post_id: e for e in (*timeline, *celebrities)}
        ordered = sorted(merged.values(), key=lambda e: (e.created_at, e.post_id), reverse=True)
        await self._touch(viewer)
        items = [(encode_cursor(e.created_at, e.post_id), e.post_id) for e in ordered[:limit]]
        return items, len(ordered) > limit

    async def _celebrities(
        self, viewer: uuid.UUID, before: tuple[datetime, uuid.UUID] | None, limit: int
    ) -> list[Entry]:
        async with self._db.connection() as conn:
            return await celebrity_posts(
                conn,
                viewer,
                max_followers=self._settings.fanout_max_followers,
                before=before,
                limit=limit,
            )

    async def _touch(self, viewer: uuid.UUID) -> None:
        """Mark the viewer active (fan-out skips inactive users), at most hourly."""
        now = time.monotonic()
        if now - self._touched.get(viewer, -_TOUCH_EVERY_S) < _TOUCH_EVERY_S:
            return
        self._touched[viewer] = now
        if len(self._touched) > 100_000:
            self._touched.clear()
        async with self._db.connection() as conn:
            await touch(conn, viewer)


class FeedHub:
    """One Redis subscription per replica, fanned out to local WebSocket subscribers."""

    def __init__(self, redis: aioredis.Redis) -> None:
        self._redis = redis
        self._queues: dict[str, set[asyncio.Queue[str]]] = defaultdict(set)
        self._pubsub = redis.pubsub(ignore_subscribe_messages=True)
        self._reader: asyncio.Task[None] | None = None
        self.dropped = 0

    @contextlib.asynccontextmanager
    async def listen(self, user_id: uuid.UUID) -> AsyncIterator[asyncio.Queue[str]]:
        """A queue of post ids that land in `user_id`'s timeline while the block runs."""
        channel = FEED_CHANNEL.format(user_id)
        queue: asyncio.Queue[str] = asyncio.Queue(SUBSCRIBER_QUEUE)
        first = not self._queues[channel]
        self._queues[channel].add(queue)
        try:
            if first:
                await self._pubsub.subscribe(channel)
            if self._reader is None or self._reader.done():
                self._reader = asyncio.create_task(self._read(), name="feed-hub")
            yield queue
        finally:
            self._queues[channel].discard(queue)
            if not self._queues[channel]:
                del self._queues[channel]
                with contextlib.suppress(RedisError, OSError):
                    await self._pubsub.unsubscribe(channel)

    async def _read(self) -> None:
        backoff = Backoff(cap_ms=2_000)
        while self._queues:
            try:
                message = await self._pubsub.get_message(timeout=1.0)
                backoff.reset()
            except (RedisError, OSError) as exc:
                log.warning("feed hub: Redis subscription lost (%s); resubscribing", exc)
                await backoff.sleep()
                with contextlib.suppress(RedisError, OSError):
                    await self._pubsub.subscribe(*self._queues)
                continue
            if message is None or message.get("type") != "message":
                continue
            channel = message["channel"].decode()
            for queue in list(self._queues.get(channel, ())):
                try:
                    queue.put_nowait(message["data"].decode())
                except asyncio.QueueFull:
                    self.dropped += 1  # a stalled subscriber must not hold up the others

    async def close(self) -> None:
        if self._reader is not None:
            self._reader.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._reader
        with contextlib.suppress(RedisError, OSError):
            await self._pubsub.aclose()  # type: ignore[no-untyped-call]
