"""CounterShard: the in-memory owner of post and user counters, with group-committed likes.

A shard holds the counter rows of the keys routed to it (see `actors.directory`). A key is
activated from PostgreSQL on first use, kept while it is read, and evicted when idle.

Likes are the hot path. Concurrent likes queue up while a commit is in flight; the next
commit takes them all (up to `max_batch`) and writes their `likes` rows, the counter rows
and the outbox events in one transaction, then answers every caller. A hot post thus costs
one row update per commit instead of one per like, and each caller is answered only once
its like is durable.

Other writers (comments, shares, follows) change counter rows in their own transactions and
send the new rows here (`observe`); a row replaces the copy in memory only if its version is
higher, so order of arrival does not matter, and a lost notice is corrected by the periodic
refresh of keys in use. This class is plain Python: `actors.remote` wraps it in a Ray actor.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field

from storage.db import Database
from storage.errors import NotFound, NovaError
from storage.repositories.counters import (
    CounterRow,
    Kind,
    LikeOp,
    PostOwner,
    commit_likes,
    load_post_owners,
    load_rows,
)

log = logging.getLogger(__name__)

Key = tuple[Kind, uuid.UUID]


@dataclass
class _Entry:
    row: CounterRow
    loaded_at: float
    used_at: float


@dataclass(frozen=True)
class LikeResult:
    changed: bool
    row: CounterRow


@dataclass
class ShardStats:
    commits: int = 0
    likes_committed: int = 0
    largest_batch: int = 0
    activations: int = 0
    evictions: int = 0
    refreshes: int = 0
    failed_commits: int = 0


@dataclass
class _Pending:
    post_id: uuid.UUID
    user_id: uuid.UUID
    liked: bool
    future: asyncio.Future[LikeResult] = field(repr=False)


class CounterShard:
    def __init__(
        self,
        db: Database,
        *,
        max_batch: int = 1_000,
        idle_ttl_s: float = 300.0,
        refresh_s: float = 30.0,
        clock: Callable[[], float] = time.monotonic,
        on_commit: Callable[[int], None] | None = None,
    ) -> None:
        self._db = db
        self._max_batch = max_batch
        self._idle_ttl_s = idle_ttl_s
        self._refresh_s = refresh_s
        self._clock = clock
        self._on_commit = on_commit
        self._entries: dict[Key, _Entry] = {}
        self._owners: dict[uuid.UUID, PostOwner] = {}
        self._queue: deque[_Pending] = deque()
        self._flusher: asyncio.Task[None] | None = None
        self.stats = ShardStats()

    # -- reads -------------------------------------------------------------------------

    async def counts(self, kind: Kind, ids: Sequence[uuid.UUID]) -> dict[uuid.UUID, CounterRow]:
        """Counter rows for `ids`, activating missing ones with one query."""
        now = self._clock()
        missing = [i for i in dict.fromkeys(ids) if (kind, i) not in self._entries]
        if missing:
            async with self._db.connection() as conn:
                loaded = await load_rows(conn, kind, missing)
            self.stats.activations += len(loaded)
            self.observe(loaded.values(), activate=True)
        result = {}
        for entity_id in ids:
            entry = self._entries[(kind, entity_id)]
            entry.used_at = now
            result[entity_id] = entry.row
        return result

    @property
    def queue_depth(self) -> int:
        return len(self._queue)

    @property
    def active_keys(self) -> int:
        return len(self._entries)

    # -- writes ------------------------------------------------------------------------

    async def like(self, post_id: uuid.UUID, user_id: uuid.UUID, liked: bool) -> LikeResult:
        """Like or unlike; returns once durable, with the post's counters after it.

        Queued before any await, so one user's ops on a post apply in the order called.
        """
        future: asyncio.Future[LikeResult] = asyncio.get_running_loop().create_future()
        self._queue.append(_Pending(post_id, user_id, liked, future))
        if self._flusher is None or self._flusher.done():
            self._flusher = asyncio.create_task(self._flush())
        return await future

    def observe(self, rows: Iterable[CounterRow], *, activate: bool = False) -> None:
        """Take newer rows written elsewhere; only active keys are kept unless `activate`."""
        now = self._clock()
        for row in rows:
            key = (row.kind, row.entity_id)
            entry = self._entries.get(key)
            if entry is None:
                if activate:
                    self._entries[key] = _Entry(row, now, now)
            elif row.version > entry.row.version:
                entry.row = row
                entry.loaded_at = now

    def forget_post(self, post_id: uuid.UUID) -> None:
        """A post was deleted: the next like re-reads it and is refused."""
        self._owners.pop(post_id, None)

    async def _owners_of(self, post_ids: set[uuid.UUID]) -> dict[uuid.UUID, PostOwner]:
        """Authors of the posts in a batch; one query for those not known yet."""
        unknown = [p for p in post_ids if p not in self._owners]
        if unknown:
            async with self._db.connection() as conn:
                self._owners.update(await load_post_owners(conn, unknown))
        return {p: self._owners[p] for p in post_ids if p in self._owners}

    async def _flush(self) -> None:
        # One commit at a time; whatever queues up meanwhile goes into the next one.
        while self._queue:
            batch = self._take_batch()
            if batch:
                await self._commit(batch)

    def _take_batch(self) -> list[_Pending]:
        """Up to `max_batch` live callers, at most one per (post, user); a second op on a
        pair waits for the next commit, so each pair's ops apply in arrival order."""
        batch: list[_Pending] = []
        deferred: list[_Pending] = []
        seen: set[tuple[uuid.UUID, uuid.UUID]] = set()
        while self._queue and len(batch) < self._max_batch:
            pending = self._queue.popleft()
            if pending.future.done():  # the caller gave up
                continue
            pair = (pending.post_id, pending.user_id)
            if pair in seen:
                deferred.append(pending)
            else:
                seen.add(pair)
                batch.append(pending)
        self._queue.extendleft(reversed(deferred))
        return batch

    async def _commit(self, batch: list[_Pending]) -> None:
        try:
            owners = await self._owners_of({p.post_id for p in batch})
        except NovaError as exc:
            for pending in batch:
                _settle(pending.future, exc)
            return
        live = []
        for pending in batch:
            owner = owners.get(pending.post_id)
            if owner is None or owner.deleted:
                _settle(pending.future, NotFound("post not found"))
            else:
                live.append(pending)
        if live:
            await self._write(live, owners)

    async def _write(self, batch: list[_Pending], owners: dict[uuid.UUID, PostOwner]) -> None:
        ops = [LikeOp(p.post_id, p.user_id, p.liked, owners[p.post_id].author_id) for p in batch]
        try:
            async with self._db.transaction() as conn:
                outcomes, rows = await commit_likes(conn, ops)
        except NovaError as exc:
            self.stats.failed_commits += 1
            if len(batch) > 1 and not exc.retriable:
                # One bad op (a post deleted meanwhile) must not fail its batch-mates.
                for pending in batch:
                    await self._write([pending], owners)
                return
            for pending in batch:
                _settle(pending.future, exc)
            return
        except Exception as exc:
            log.exception("like commit failed")
            for pending in batch:
                _settle(pending.future, exc)
            return
        self.stats.commits += 1
        self.stats.likes_committed += len(batch)
        self.stats.largest_batch = max(self.stats.largest_batch, len(batch))
        if self._on_commit is not None:
            self._on_commit(len(batch))
        self.observe(rows)
        current = await self.counts("post", list({p.post_id for p in batch}))
        for pending, outcome in zip(batch, outcomes, strict=True):
            if not pending.future.done():
                pending.future.set_result(LikeResult(outcome.changed, current[pending.post_id]))

    # -- upkeep ------------------------------------------------------------------------

    async def maintain(self) -> None:
        """Evict idle keys; re-read keys in use whose copy is older than `refresh_s`."""
        now = self._clock()
        idle = [k for k, e in self._entries.items() if now - e.used_at > self._idle_ttl_s]
        for key in idle:
            del self._entries[key]
            if key[0] == "post":
                self._owners.pop(key[1], None)
        self.stats.evictions += len(idle)
        stale: dict[Kind, list[uuid.UUID]] = {}
        for (kind, entity_id), entry in self._entries.items():
            if now - entry.loaded_at > self._refresh_s:
                stale.setdefault(kind, []).append(entity_id)
        for kind, ids in stale.items():
            async with self._db.connection() as conn:
                rows = await load_rows(conn, kind, ids)
            self.stats.refreshes += len(rows)
            for row in rows.values():
                refreshed = self._entries.get((kind, row.entity_id))
                if refreshed is not None:
                    refreshed.loaded_at = now
            self.observe(rows.values())


def _settle(future: asyncio.Future[LikeResult], exc: BaseException) -> None:
    if not future.done():
        future.set_exception(exc)
