"""The consumer groups reading Nova's topics, kept in PostgreSQL (`consumer_groups`).

A group's members announce it (its topics, and that it is alive) when they join and every
`ANNOUNCE_EVERY_S` after. After a broker loss the relays use it to re-send only what some
live group has not applied (`storage.outbox.rows.redrive`); the ledger already says what
each group applied, and this says which groups there are to ask.
"""

from __future__ import annotations

from collections.abc import Sequence

from storage.db import Database

ANNOUNCE_EVERY_S = 300.0


async def announce_group(db: Database, name: str, topics: Sequence[str]) -> None:
    """Record that group `name` reads `topics` and is alive now."""
    async with db.connection() as conn:
        await conn.execute(
            """
            INSERT INTO consumer_groups (name, topics, seen_at) VALUES ($1, $2, now())
            ON CONFLICT (name) DO UPDATE SET topics = EXCLUDED.topics, seen_at = now()
            """,
            name,
            list(topics),
        )
