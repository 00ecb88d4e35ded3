"""Dead letters: list them, and replay them to the consumer that failed once fixed."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from storage.db import Database
from storage.errors import InvalidInput
from storage.events import HEADER_REPLAY_FOR, Event
from storage.outbox.rows import add_event


@dataclass(frozen=True)
class DeadLetter:
    id: int
    consumer: str
    topic: str
    partition: int
    offset: int
    event_id: str | None
    error: str
    attempts: int
    failed_at: datetime
    replayed_at: datetime | None

    def to_dict(self) -> dict[str, Any]:
        data = self.__dict__.copy()
        data["failed_at"] = self.failed_at.isoformat()
        data["replayed_at"] = self.replayed_at.isoformat() if self.replayed_at else None
        return data


async def list_dead_letters(
    db: Database, *, consumer: str | None = None, include_replayed: bool = False, limit: int = 100
) -> list[DeadLetter]:
    async with db.connection() as conn:
        rows = await conn.fetch(
            """
            SELECT id, consumer, topic, partition, kafka_offset, event_id, error, attempts,
                   failed_at, replayed_at
            FROM dead_letters
            WHERE ($1::text IS NULL OR consumer = $1) AND ($2 OR replayed_at IS NULL)
            ORDER BY id DESC LIMIT $3
            """,
            consumer,
            include_replayed,
            limit,
        )
    return [
        DeadLetter(
            id=r["id"],
            consumer=r["consumer"],
            topic=r["topic"],
            partition=r["partition"],
            offset=r["kafka_offset"],
            event_id=str(r["event_id"]) if r["event_id"] else None,
            error=r["error"],
            attempts=r["attempts"],
            failed_at=r["failed_at"],
            replayed_at=r["replayed_at"],
        )
        for r in rows
    ]


async def replay(
    db: Database, *, ids: list[int] | None = None, consumer: str | None = None
) -> list[int]:
    """Send pending dead letters back through the outbox to their consumer; return their ids.

    The event keeps its id and goes to its original topic with a `nova-replay-for` header,
    so only the consumer that failed applies it; the others skip it. Undecodable messages
    have no event to replay and are refused.
    """
    if ids is None and consumer is None:
        raise InvalidInput("name dead letters to replay: ids, a consumer, or both")
    replayed: list[int] = []
    async with db.transaction() as conn:
        rows = await conn.fetch(
            """
            UPDATE dead_letters SET replayed_at = now()
            WHERE replayed_at IS NULL AND event IS NOT NULL
              AND ($1::bigint[] IS NULL OR id = ANY($1))
              AND ($2::text IS NULL OR consumer = $2)
            RETURNING id, consumer, topic, event
            """,
            ids,
            consumer,
        )
        for row in sorted(rows, key=lambda r: r["id"]):
            await add_event(
                conn,
                Event.from_dict(row["event"]),
                topic=row["topic"],
                headers={HEADER_REPLAY_FOR: row["consumer"]},
            )
            replayed.append(row["id"])
    return replayed
