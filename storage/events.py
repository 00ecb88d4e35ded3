"""The one event envelope every topic carries, and its Kafka encoding."""

from __future__ import annotations

import json
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from storage.errors import PoisonEvent

# Kafka header names. `nova-epoch` tells consumers which broker log generation a message
# belongs to; `nova-replay-for` restricts a DLQ replay to the consumer that failed.
HEADER_EVENT_ID = "event_id"
HEADER_TYPE = "type"
HEADER_TRACEPARENT = "traceparent"
HEADER_EPOCH = "nova-epoch"
HEADER_REPLAY_FOR = "nova-replay-for"


@dataclass(frozen=True)
class Event:
    """The envelope: `event_id`, `type`, `aggregate_id`, `occurred_at`, `schema_version`,
    `traceparent`, `payload`."""

    type: str
    aggregate_id: str
    payload: Mapping[str, Any]
    event_id: uuid.UUID = field(default_factory=uuid.uuid4)
    occurred_at: datetime = field(default_factory=lambda: datetime.now(UTC))
    schema_version: int = 1
    traceparent: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "event_id": str(self.event_id),
            "type": self.type,
            "aggregate_id": self.aggregate_id,
            "occurred_at": self.occurred_at.isoformat(),
            "schema_version": self.schema_version,
            "traceparent": self.traceparent,
            "payload": dict(self.payload),
        }

    def encode(self) -> bytes:
        return json.dumps(self.to_dict(), separators=(",", ":")).encode()

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Event:
        try:
            occurred_at = datetime.fromisoformat(data["occurred_at"])
            payload = data["payload"]
            if not isinstance(payload, dict):
                raise TypeError("payload is not an object")
            return cls(
                event_id=uuid.UUID(str(data["event_id"])),
                type=str(data["type"]),
                aggregate_id=str(data["aggregate_id"]),
                occurred_at=occurred_at,
                schema_version=int(data.get("schema_version", 1)),
                traceparent=data.get("traceparent"),
                payload=payload,
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise PoisonEvent(f"malformed envelope: {type(exc).__name__}: {exc}") from exc

    @classmethod
    def decode(cls, raw: bytes | None) -> Event:
        if raw is None:
            raise PoisonEvent("message has no value")
        try:
            data = json.loads(raw)
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise PoisonEvent(f"value is not JSON: {exc}") from exc
        if not isinstance(data, dict):
            raise PoisonEvent("value is not a JSON object")
        return cls.from_dict(data)


def header(headers: Any, name: str) -> str | None:
    """Read one header from aiokafka's sequence of `(name, bytes)` pairs."""
    for key, value in headers or ():
        if key == name and value is not None:
            return bytes(value).decode("utf-8", "replace")
    return None


def payload_id(payload: Mapping[str, Any], name: str) -> uuid.UUID:
    """`payload[name]` as a UUID; an event without a valid one is poison (dead-lettered)."""
    try:
        return uuid.UUID(str(payload[name]))
    except (KeyError, ValueError) as exc:
        raise PoisonEvent(f"payload lacks a valid {name}") from exc
