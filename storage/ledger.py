"""Apply-once for consumer effects that live in Redis rather than PostgreSQL.

`RedisLedger.apply_once` writes the effect and a ledger key in one MULTI/EXEC under WATCH:
either both land or neither, and an event id already in the ledger is skipped. Use it
inside `Consumer.apply`; the PostgreSQL ledger around it then only speeds up duplicates.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable

import redis.asyncio as aioredis
from redis.asyncio.client import Pipeline

from storage.errors import classify


class RedisLedger:
    def __init__(self, client: aioredis.Redis, *, ttl_s: int) -> None:
        # Keep ledger keys at least as long as events can be redelivered (outbox retention).
        self._client = client
        self._ttl_s = ttl_s

    def key(self, consumer: str, event_id: uuid.UUID) -> str:
        return f"nova:ledger:{consumer}:{event_id}"

    async def apply_once(
        self, consumer: str, event_id: uuid.UUID, effects: Callable[[Pipeline], None]
    ) -> bool:
        """Queue `effects` on a transaction with the ledger key; False if already applied."""
        key = self.key(consumer, event_id)

        async def transaction(pipe: Pipeline) -> bool:
            if await pipe.exists(key):
                return False
            pipe.multi()  # type: ignore[no-untyped-call]
            effects(pipe)
            pipe.set(key, b"1", ex=self._ttl_s)
            return True

        try:
            applied: bool = await self._client.transaction(
                transaction, key, value_from_callable=True
            )
        except Exception as exc:
            raise classify(exc, "redis") from exc
        return applied
