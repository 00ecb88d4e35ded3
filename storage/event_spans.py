"""Spans for events: one when a relay publishes an event, one when a consumer applies it.

Both are children of the event's `traceparent` (the request or consumer that wrote it;
an event written outside any trace has no spans),
so a trace shows a request, the events it committed, when each reached the broker and
when each consumer group applied it, under the trace id every one of their log lines
carries. Called only while span export is on (`storage.tracing.span_export`).
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from typing import Any

from storage.events import Event
from storage.tracing import CONSUMER, PRODUCER, SpanExport

KAFKA = "kafka"


def record_publishes(
    export: SpanExport,
    rows: Sequence[Mapping[str, Any]],
    acks: Sequence[Any],
    sent_ns: int,
) -> None:
    """A producer span per published outbox row, from the batch's first send to its acks;
    `acks` are the producer's record metadata, one per row."""
    acked_ns = time.time_ns()
    for row, ack in zip(rows, acks, strict=True):
        if not row["traceparent"]:
            continue  # written outside any trace (no log line carries an id to join)
        topic = row["topic"]
        span = export.start(
            f"send {topic}",
            PRODUCER,
            parent=row["traceparent"],
            start_ns=sent_ns,
            attributes={
                "messaging.system": KAFKA,
                "messaging.operation.type": "send",
                "messaging.destination.name": topic,
                "messaging.destination.partition.id": str(ack.partition),
                "messaging.kafka.offset": int(ack.offset),
                "messaging.message.id": str(row["event_id"]),
                "nova.event.type": row["type"],
                # From the event's commit to the broker's ack: the outbox's share of its delay.
                "nova.outbox.wait_s": max(0.0, acked_ns / 1e9 - row["occurred_at"].timestamp()),
            },
        )
        span.end(acked_ns)


def record_applied(
    export: SpanExport,
    group: str,
    events: Sequence[Event],
    started_ns: int,
    *,
    failure: str | None = None,
) -> None:
    """A consumer span per event `group` applied in one transaction (or dead-lettered,
    with `failure`), from the transaction's start to its commit."""
    ended_ns = time.time_ns()
    for event in events:
        if not event.traceparent:
            continue
        span = export.start(
            f"process {event.type}",
            CONSUMER,
            parent=event.traceparent,
            start_ns=started_ns,
            attributes={
                "messaging.system": KAFKA,
                "messaging.operation.type": "process",
                "messaging.consumer.group.name": group,
                "messaging.message.id": str(event.event_id),
                "nova.event.type": event.type,
                "nova.event.age_s": max(0.0, ended_ns / 1e9 - event.occurred_at.timestamp()),
            },
        )
        if len(events) > 1:
            span.set("messaging.batch.message_count", len(events))
        if failure is not None:
            span.fail(failure)
        span.end(ended_ns)
