"""Dead letters: written when an event cannot be applied, listed, and replayed to the
consumer that failed once it is fixed.

A dead letter is a row in `dead_letters` plus a message on `dlq.all`, written together
through the outbox. A consumer writes one only after `consumer_poison_attempts` failures
that were not an outage (`storage.kafka.runner`), and keeps trying to write it through an
outage: the consumer never moves past an event it has not recorded somewhere.
"""

from __future__ import annotations

import asyncio
import base64
import logging
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from aiokafka import ConsumerRecord, TopicPartition

from storage.db import Database
from storage.errors import InvalidInput, classify
from storage.events import HEADER_REPLAY_FOR, Event
from storage.kafka.topics import DLQ_TOPIC
from storage.outbox.rows import add_event
from storage.tasks import Backoff

log = logging.getLogger(__name__)


class DeadLetterWriter:
    """Writes one consumer's dead letters, retrying through outages."""

    def __init__(self, db: Database, consumer: str, *, max_backoff_ms: int) -> None:
        self._db = db
        self._consumer = consumer
        self._max_backoff_ms = max_backoff_ms

    async def write(
        self,
        tp: TopicPartition,
        record: ConsumerRecord,
        event: Event | None,
        exc: BaseException,
        *,
        attempts: int,
    ) -> None:
        """Dead-letter `record` (`event` is None when it could not be decoded)."""
        error = f"{type(exc).__name__}: {exc}"[:2000]
        log.error(
            "consumer %s: dead-lettering %s[%d]@%d: %s",
            self._consumer,
            tp.topic,
            tp.partition,
            record.offset,
            error,
        )
        backoff = Backoff(cap_ms=self._max_backoff_ms)
        while True:
            try:
                await self._insert(tp, record, event, error, attempts)
                return
            except asyncio.CancelledError:
                raise
            except Exception as write_exc:
                if not classify(write_exc).retriable:
                    raise
                await backoff.sleep()

    async def _insert(
        self,
        tp: TopicPartition,
        record: ConsumerRecord,
        event: Event | None,
        error: str,
        attempts: int,
    ) -> None:
        key = record.key.decode("utf-8", "replace") if record.key else None
        async with self._db.transaction() as conn:
            dead_letter_id = await conn.fetchval(
                """
                INSERT INTO dead_letters (consumer, topic, partition, kafka_offset, event_id,
                                          event, raw_value, error, attempts)
                VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)
                ON CONFLICT (consumer, event_id)
                    WHERE replayed_at IS NULL AND event_id IS NOT NULL DO NOTHING
                RETURNING id
                """,
                self._consumer,
                tp.topic,
                tp.partition,
                record.offset,
                event.event_id if event else None,
                event.to_dict() if event else None,
                None if event else record.value,
                error,
                attempts,
            )
            if dead_letter_id is None:
                return  # already dead-lettered and not yet replayed
            payload: dict[str, Any] = {
                "dead_letter_id": dead_letter_id,
                "consumer": self._consumer,
                "original_topic": tp.topic,
                "original_partition": tp.partition,
                "original_offset": record.offset,
                "error": error,
                "event": event.to_dict() if event else None,
                "raw_value_b64": None
                if event or record.value is None
                else base64.b64encode(record.value).decode(),
            }
            await add_event(
                conn,
                Event(
                    type="dlq.event",
                    aggregate_id=key or (event.aggregate_id if event else "unknown"),
                    payload=payload,
                ),
                topic=DLQ_TOPIC,
            )


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


async def pending_count(db: Database) -> int:
    """Dead letters not replayed yet, for `nova status`."""
    count: int = await db.fetchval("SELECT count(*) FROM dead_letters WHERE replayed_at IS NULL")
    return count


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
