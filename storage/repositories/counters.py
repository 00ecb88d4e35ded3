"""Counter rows in PostgreSQL: post likes, comments and shares; user followers and following.

A counter row changes only in the transaction that changes the rows it counts, and every
change bumps its `version`. Writers return the whole new row (`CounterRow`), so whoever
holds a copy in memory (a `CounterShard`) keeps the row with the highest version it has
seen: it can never drift, and a lost notification only delays an update.

The like path is group-committed: `commit_likes` applies a batch of likes and unlikes in
one transaction with a handful of statements, whatever the batch size.
"""

from __future__ import annotations

import uuid
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

import asyncpg

from storage.errors import NotFound
from storage.events import Event
from storage.outbox.rows import add_events

Kind = Literal["post", "user"]
FIELDS: dict[Kind, tuple[str, ...]] = {
    "post": ("likes", "comments", "shares"),
    "user": ("followers", "following"),
}
_TABLE: dict[Kind, tuple[str, str]] = {
    "post": ("post_counters", "post_id"),
    "user": ("user_counters", "user_id"),
}


@dataclass(frozen=True)
class CounterRow:
    """One entity's counters at one version; version 0 means no row yet (all zero)."""

    kind: Kind
    entity_id: uuid.UUID
    counts: Mapping[str, int]
    version: int

    @classmethod
    def empty(cls, kind: Kind, entity_id: uuid.UUID) -> CounterRow:
        return cls(kind, entity_id, dict.fromkeys(FIELDS[kind], 0), 0)

    @classmethod
    def from_record(cls, kind: Kind, record: asyncpg.Record) -> CounterRow:
        _, id_column = _TABLE[kind]
        return cls(
            kind,
            record[id_column],
            {name: int(record[name]) for name in FIELDS[kind]},
            int(record["version"]),
        )


async def load_rows(
    conn: asyncpg.Connection, kind: Kind, ids: Sequence[uuid.UUID]
) -> dict[uuid.UUID, CounterRow]:
    """The rows for `ids`, with an empty row for ids that have none yet."""
    table, id_column = _TABLE[kind]
    records = await conn.fetch(f"SELECT * FROM {table} WHERE {id_column} = ANY($1)", list(ids))
    rows = {record[id_column]: CounterRow.from_record(kind, record) for record in records}
    return {
        entity_id: rows.get(entity_id) or CounterRow.empty(kind, entity_id) for entity_id in ids
    }


async def bump(
    conn: asyncpg.Connection, kind: Kind, deltas: Mapping[uuid.UUID, Mapping[str, int]]
) -> list[CounterRow]:
    """Add `deltas` to counter rows inside the caller's transaction; return the new rows.

    Rows are locked in id order, so two transactions bumping the same rows cannot
    deadlock. A row that does not exist yet is created at version 1.
    """
    if not deltas:
        return []
    table, id_column = _TABLE[kind]
    fields = FIELDS[kind]
    ids = sorted(deltas)
    columns = ", ".join(fields)
    updates = ", ".join(f"{name} = {table}.{name} + EXCLUDED.{name}" for name in fields)
    arrays = ", ".join(f"${i + 2}::bigint[]" for i in range(len(fields)))
    records = await conn.fetch(
        f"""
        INSERT INTO {table} ({id_column}, {columns}, version)
        SELECT *, 1 FROM unnest($1::uuid[], {arrays}) ORDER BY 1
        ON CONFLICT ({id_column}) DO UPDATE SET {updates}, version = {table}.version + 1
        RETURNING *
        """,
        ids,
        *([deltas[i].get(name, 0) for i in ids] for name in fields),
    )
    return [CounterRow.from_record(kind, record) for record in records]


@dataclass(frozen=True)
class LikeOp:
    """Like (`liked=True`) or unlike a post; `author_id` goes into the event for consumers."""

    post_id: uuid.UUID
    user_id: uuid.UUID
    liked: bool
    author_id: uuid.UUID


@dataclass(frozen=True)
class LikeOutcome:
    changed: bool  # False when the like already existed (or the unlike had nothing to undo)


async def commit_likes(
    conn: asyncpg.Connection, ops: Sequence[LikeOp]
) -> tuple[list[LikeOutcome], list[CounterRow]]:
    """Apply likes and unlikes (at most one op per post and user) in the caller's
    transaction: rows, counters and one outbox event per effective change.
    """
    pairs = [(op.post_id, op.user_id) for op in ops]
    if len(set(pairs)) != len(pairs):
        raise ValueError("commit_likes takes at most one op per (post, user)")
    adds = [op for op in ops if op.liked]
    removes = [op for op in ops if not op.liked]
    changed: set[tuple[uuid.UUID, uuid.UUID]] = set()
    if adds:
        try:
            records = await conn.fetch(
                """
                INSERT INTO likes (post_id, user_id)
                SELECT * FROM unnest($1::uuid[], $2::uuid[]) ORDER BY 1, 2
                ON CONFLICT DO NOTHING
                RETURNING post_id, user_id
                """,
                [op.post_id for op in adds],
                [op.user_id for op in adds],
            )
        except asyncpg.ForeignKeyViolationError as exc:
            raise NotFound(f"post or user no longer exists: {exc.detail}") from exc
        changed.update((r["post_id"], r["user_id"]) for r in records)
    if removes:
        records = await conn.fetch(
            """
            DELETE FROM likes USING unnest($1::uuid[], $2::uuid[]) AS gone(post_id, user_id)
            WHERE likes.post_id = gone.post_id AND likes.user_id = gone.user_id
            RETURNING likes.post_id, likes.user_id
            """,
            [op.post_id for op in removes],
            [op.user_id for op in removes],
        )
        changed.update((r["post_id"], r["user_id"]) for r in records)
    effective = [op for op in ops if (op.post_id, op.user_id) in changed]
    net: Counter[uuid.UUID] = Counter()
    for op in effective:
        net[op.post_id] += 1 if op.liked else -1
    rows = await bump(conn, "post", {post: {"likes": n} for post, n in net.items() if n})
    await add_events(conn, [_like_event(op) for op in effective])
    return [LikeOutcome((op.post_id, op.user_id) in changed) for op in ops], rows


def _like_event(op: LikeOp) -> Event:
    return Event(
        "social.like.created" if op.liked else "social.like.deleted",
        str(op.post_id),
        {"post_id": str(op.post_id), "user_id": str(op.user_id), "author_id": str(op.author_id)},
    )


@dataclass(frozen=True)
class PostOwner:
    """What a counter shard needs to know about a post to accept likes for it."""

    post_id: uuid.UUID
    author_id: uuid.UUID
    deleted: bool


async def load_post_owners(
    conn: asyncpg.Connection, ids: Iterable[uuid.UUID]
) -> dict[uuid.UUID, PostOwner]:
    records = await conn.fetch(
        "SELECT id, author_id, deleted_at IS NOT NULL AS deleted FROM posts WHERE id = ANY($1)",
        list(ids),
    )
    return {r["id"]: PostOwner(r["id"], r["author_id"], r["deleted"]) for r in records}
