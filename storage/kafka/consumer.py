"""The contract a topic handler implements: apply an event inside the ledger's transaction.

A consumer subclasses `Consumer` and implements `apply(event, conn)`.
`storage.kafka.runner.ConsumerRunner` calls it inside a PostgreSQL transaction that first
records `(consumer, event_id)` in the `processed_events` ledger; a redelivered event finds
its id there and is skipped. Offsets are committed to Kafka only after the transaction
commits, so a crash in between costs a redelivery, never a loss.

Effects outside PostgreSQL (Redis, say) use `storage.kafka.ledger.RedisLedger` inside
`apply_many`: the Redis effects and their own ledger keys are written atomically, so a
redelivery after a failed PostgreSQL commit finds the Redis ledger keys and does not apply
twice. Nova's handlers live in `actors.consumers`.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import ClassVar, Generic, TypeVar

from storage.db import Connection
from storage.events import Event
from storage.settings import StorageSettings
from storage.tracing import reset_traceparent, set_traceparent

S = TypeVar("S", bound=StorageSettings)


class Consumer(ABC, Generic[S]):
    """One consumer group, built with the settings it runs with. `name` is the group id
    and the ledger's key; keep it stable."""

    name: ClassVar[str]
    topics: ClassVar[tuple[str, ...]]

    def __init__(self, settings: S) -> None:
        self.settings = settings

    async def start(self) -> None:
        """Open what `apply` needs (clients, caches). Called once before consuming."""

    async def stop(self) -> None:
        """Release what `start` opened."""

    @abstractmethod
    async def apply(self, event: Event, conn: Connection) -> None:
        """Apply `event` inside the ledger's transaction. Raise to retry or dead-letter."""

    async def apply_many(self, events: Sequence[Event], conn: Connection) -> None:
        """Apply a batch in order inside the ledger's transaction. Override to write a
        batch at once (COPY, say); the default calls `apply` per event, under its trace."""
        for event in events:
            token = set_traceparent(event.traceparent)
            try:
                await self.apply(event, conn)
            finally:
                reset_traceparent(token)

    async def after_commit(self, events: Sequence[Event]) -> None:
        """Called once `events` are durably applied, before their offsets are committed:
        the place for effects that must follow a committed change (pushing to live
        subscribers, say). A crash here means redelivery, which the ledger absorbs, so
        these effects must tolerate running again; errors are logged, not retried."""


class BatchConsumer(Consumer[S]):
    """A consumer that applies a fetched batch at once (COPY, one Redis transaction, one
    multi-row insert); a single event, as the one-at-a-time retry sends, is a batch of one."""

    async def apply(self, event: Event, conn: Connection) -> None:
        await self.apply_many([event], conn)

    @abstractmethod
    async def apply_many(self, events: Sequence[Event], conn: Connection) -> None:
        """Apply a batch in order inside the ledger's transaction."""
