"""The GraphQL schema. The spine ships `serverTime` and `ticks`; issues add the rest."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator
from datetime import UTC, datetime

import strawberry
from strawberry.extensions import MaskErrors

from gateway.errors import BAD_USER_INPUT, should_mask, user_error

MAX_TICKS = 1_000
MAX_TICK_INTERVAL_MS = 10_000


@strawberry.type
class Query:
    @strawberry.field(description="The server's clock, in UTC.")
    def server_time(self) -> datetime:
        return datetime.now(UTC)


@strawberry.type
class Subscription:
    @strawberry.subscription(description="Streams 1..count, one every intervalMs milliseconds.")
    async def ticks(self, count: int, interval_ms: int = 100) -> AsyncGenerator[int, None]:
        if not 1 <= count <= MAX_TICKS:
            raise user_error(f"count must be between 1 and {MAX_TICKS}", BAD_USER_INPUT)
        if not 0 <= interval_ms <= MAX_TICK_INTERVAL_MS:
            raise user_error(
                f"intervalMs must be between 0 and {MAX_TICK_INTERVAL_MS}", BAD_USER_INPUT
            )
        for n in range(1, count + 1):
            yield n
            if n < count:
                await asyncio.sleep(interval_ms / 1000)


schema = strawberry.Schema(
    query=Query,
    subscription=Subscription,
    extensions=[lambda: MaskErrors(should_mask_error=should_mask)],
)
