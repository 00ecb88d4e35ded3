"""The event envelope and its decoding; malformed input is a poison event."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime

import pytest

from storage.errors import PoisonEvent
from storage.events import Event, header


def test_envelope_round_trips() -> None:
    event = Event(
        type="content.post.created",
        aggregate_id="u1",
        payload={"post_id": "p1"},
        traceparent="00-" + "a" * 32 + "-" + "b" * 16 + "-01",
        occurred_at=datetime(2026, 11, 22, 10, 0, tzinfo=UTC),
        schema_version=2,
    )
    decoded = Event.decode(event.encode())
    assert decoded == event
    assert set(json.loads(event.encode())) == {
        "event_id",
        "type",
        "aggregate_id",
        "occurred_at",
        "schema_version",
        "traceparent",
        "payload",
    }


@pytest.mark.parametrize(
    "raw",
    [
        None,
        b"not json",
        b"[1, 2]",
        b"\xff\xfe",
        json.dumps({"type": "t", "aggregate_id": "a"}).encode(),
        json.dumps(
            {
                "event_id": "nope",
                "type": "t",
                "aggregate_id": "a",
                "occurred_at": "2026-01-01T00:00:00+00:00",
                "payload": {},
            }
        ).encode(),
        json.dumps(
            {
                "event_id": str(uuid.uuid4()),
                "type": "t",
                "aggregate_id": "a",
                "occurred_at": "2026-01-01T00:00:00+00:00",
                "payload": [1],
            }
        ).encode(),
    ],
)
def test_malformed_messages_are_poison(raw: bytes | None) -> None:
    with pytest.raises(PoisonEvent):
        Event.decode(raw)


def test_header_reads_the_named_header() -> None:
    headers = [("type", b"x"), ("event_id", b"123")]
    assert header(headers, "event_id") == "123"
    assert header(headers, "missing") is None
    assert header(None, "type") is None
