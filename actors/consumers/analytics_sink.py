"""The analytics sink: client events from `analytics.events` into PostgreSQL, by COPY.

A batch of events is one `COPY analytics_events` inside the consumer ledger's transaction,
so the rows land exactly once whatever Kafka redelivers. Impressions carry the feature
vector the gateway served with the post (`gateway.services.analytics`), which is what training
reads: the model learns from exactly what it saw.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime
from typing import Any, ClassVar

from storage.db import Connection
from storage.errors import PoisonEvent
from storage.events import Event
from storage.kafka.consumer import BatchConsumer
from storage.repositories.analytics import copy_events
from storage.settings import StorageSettings

TOPIC = "analytics.events"
KINDS = frozenset({"IMPRESSION", "VIEW", "CLICK", "DWELL"})


def _optional_int(payload: dict[str, Any], name: str) -> int | None:
    value = payload.get(name)
    return None if value is None else int(value)


def row(event: Event) -> tuple[Any, ...]:
    """The analytics_events row of one event, in `COLUMNS` order; `PoisonEvent` if it is
    malformed."""
    payload = dict(event.payload)
    try:
        kind = str(payload["kind"])
        if kind not in KINDS:
            raise ValueError(f"unknown kind {kind!r}")
        features = payload.get("features")
        return (
            event.event_id,
            uuid.UUID(str(payload["user_id"])),
            uuid.UUID(str(payload["post_id"])),
            kind,
            payload.get("model_name"),
            payload.get("model_version"),
            _optional_int(payload, "position"),
            _optional_int(payload, "dwell_ms"),
            None if features is None else [float(x) for x in features],
            datetime.fromisoformat(str(payload["occurred_at"])),
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise PoisonEvent(f"analytics event {event.event_id} is malformed: {exc}") from exc


class AnalyticsSink(BatchConsumer[StorageSettings]):
    name: ClassVar[str] = "analytics-sink"
    topics: ClassVar[tuple[str, ...]] = (TOPIC,)

    async def apply_many(self, events: Sequence[Event], conn: Connection) -> None:
        rows = [row(event) for event in events if event.type == TOPIC]
        if rows:
            await copy_events(conn, rows)
