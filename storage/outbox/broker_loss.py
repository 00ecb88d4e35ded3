"""How the relay notices that the broker lost its log, and what it does then.

The relay records, per partition, a floor under the end offset (the lowest offset of its
latest acknowledged batch + 1). An acknowledgement or an end offset below it, or a recorded
topic gone missing, means the broker lost its log. The relay then bumps the broker epoch
(carried in every message's `nova-epoch` header) and re-drives the retained events that
some consumer group has not applied yet; consumers read the new log from its start and
drop what they already applied (`storage.kafka.offset_gaps.Continuity`).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import asyncpg

from storage.db import Database
from storage.errors import NovaError
from storage.outbox.rows import RELAY_LOCK_CLASS, SLOTS, redrive

Partition = tuple[str, int]
# Per partition, the lowest and highest offset of one batch's acknowledgements.
Acks = dict[Partition, tuple[int, int]]


class BrokerReset(NovaError):
    """The broker has lost messages it had acknowledged."""

    retriable = True


class BrokerFloors:
    """One relay's floors under each partition's end offset, in the current epoch.

    Kept in memory per batch and saved (`persist`) once per broker check, so relays do not
    contend on these rows in their publish transactions.
    """

    def __init__(self) -> None:
        self.epoch: int | None = None
        self.offsets: dict[Partition, int] = {}
        self._dirty = False

    @staticmethod
    def check_acks(acks: Acks, floors: dict[Partition, int]) -> None:
        """Raise `BrokerReset` if an acknowledgement lies below a floor known before the
        batch was sent (a batch acked earlier was appended earlier; batches in flight
        together are acked in any order and prove nothing about each other)."""
        for partition, (offset, _) in acks.items():
            seen = floors.get(partition)
            if seen is not None and offset < seen:
                raise BrokerReset(
                    f"{partition[0]}[{partition[1]}] acknowledged offset {offset}, "
                    f"below the floor {seen} set by earlier acknowledgements"
                )

    def raise_to(self, acks: Acks) -> None:
        # The lowest acked offset + 1 bounds the end offset from below whatever the broker
        # reports as "end": Kafka the last offset + 1, tansu the last batch's first + 1.
        for partition, (low, _) in acks.items():
            self.offsets[partition] = max(self.offsets.get(partition, 0), low + 1)
        self._dirty = True

    async def persist(self, conn: asyncpg.Connection) -> None:
        """Save these floors, unless the epoch moved on (they would be stale)."""
        if not self._dirty or not self.offsets:
            return
        async with conn.transaction():
            # FOR SHARE waits for a reset in progress and then sees its new epoch.
            epoch = await conn.fetchval("SELECT epoch FROM broker_state FOR SHARE")
            if epoch != self.epoch:
                return
            ordered = sorted(self.offsets.items())  # one lock order for every relay
            await conn.execute(
                """
                INSERT INTO broker_offsets (topic, partition, min_end_offset)
                SELECT * FROM unnest($1::text[], $2::int[], $3::bigint[])
                ON CONFLICT (topic, partition) DO UPDATE
                    SET min_end_offset = GREATEST(broker_offsets.min_end_offset,
                                                  EXCLUDED.min_end_offset)
                """,
                [p[0] for p, _ in ordered],
                [p[1] for p, _ in ordered],
                [floor for _, floor in ordered],
            )
        self._dirty = False

    async def load(self, conn: asyncpg.Connection, epoch: int) -> None:
        """Adopt `epoch` and the floors every relay recorded in it (the highest of all)."""
        rows = await conn.fetch("SELECT topic, partition, min_end_offset FROM broker_offsets")
        recorded = {(r["topic"], r["partition"]): r["min_end_offset"] for r in rows}
        if epoch == self.epoch:
            for partition, floor in self.offsets.items():
                recorded[partition] = max(recorded.get(partition, 0), floor)
        self.offsets = recorded
        self.epoch = epoch


async def current_epoch(conn: asyncpg.Connection) -> int:
    epoch: int = await conn.fetchval("SELECT epoch FROM broker_state")
    return epoch


async def start_new_epoch(
    conn: asyncpg.Connection,
    observed: int | None,
    reason: str,
    *,
    unapplied_within_s: int | None = None,
) -> tuple[int, int | None]:
    """In the caller's transaction, once whichever relay sees the loss first: take every
    slot's lock, and unless the epoch already moved past `observed`, bump it, forget the
    floors and re-drive the retained events (with `unapplied_within_s`, only those some
    live consumer group has not applied: `rows.redrive`). Returns the epoch now current
    and how many events were re-driven (None when another relay had already handled it)."""
    for slot in range(SLOTS):
        await conn.execute("SELECT pg_advisory_xact_lock($1, $2)", RELAY_LOCK_CLASS, slot)
    epoch: int = await conn.fetchval("SELECT epoch FROM broker_state FOR UPDATE")
    if observed is not None and epoch != observed:
        return epoch, None
    await conn.execute(
        "UPDATE broker_state SET epoch = epoch + 1, reset_at = now(), reset_reason = $1",
        reason[:500],
    )
    await conn.execute("DELETE FROM broker_offsets")
    redriven = await redrive(conn, since=None, unapplied_within_s=unapplied_within_s)
    return epoch + 1, redriven


async def broker_state(db: Database) -> dict[str, Any]:
    """The epoch and the last reset, for `nova status`."""
    row = await db.fetchrow("SELECT epoch, reset_at, reset_reason FROM broker_state")
    reset_at: datetime | None = row["reset_at"]
    return {"broker_epoch": row["epoch"], "last_broker_reset": reset_at}
