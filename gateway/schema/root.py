"""The GraphQL schema, composed from one module per domain (`identity`, `account`,
`social`, `chat`, `notifications`, `ranking`), plus the spine's `serverTime` and `ticks`.

Resolvers stay thin: they check who is asking, call a service and shape the answer. Errors
are Nova errors, mapped onto `extensions.code` in `gateway.errors`. The order of the bases
is the order of the fields in `schema.graphql`.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, Callable
from datetime import UTC, datetime

import strawberry
from strawberry.extensions import SchemaExtension

from gateway.errors import BAD_USER_INPUT, MaskUnexpectedErrors, user_error
from gateway.schema.account import AccountMutation, AccountQuery
from gateway.schema.chat import ChatMutation, ChatQuery, ChatSubscription
from gateway.schema.identity import IdentityMutation, IdentityQuery
from gateway.schema.notifications import (
    NotificationMutation,
    NotificationQuery,
    NotificationSubscription,
)
from gateway.schema.ranking import RankingMutation
from gateway.schema.social import SocialMutation, SocialQuery, SocialSubscription
from gateway.transport.execution import AcyclicExecutionContext

MAX_TICKS = 1_000
MAX_TICK_INTERVAL_MS = 10_000


@strawberry.type
class SpineQuery:
    @strawberry.field(description="The server's clock, in UTC.")
    def server_time(self) -> datetime:
        return datetime.now(UTC)


@strawberry.type
class Query(SocialQuery, ChatQuery, NotificationQuery, AccountQuery, SpineQuery, IdentityQuery):
    """Every query, by domain."""


@strawberry.type
class Mutation(
    SocialMutation,
    ChatMutation,
    RankingMutation,
    NotificationMutation,
    AccountMutation,
    IdentityMutation,
):
    """Every mutation, by domain."""


@strawberry.type
class Subscription(SocialSubscription, ChatSubscription, NotificationSubscription):
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


def build_schema(
    extensions: list[Callable[[], SchemaExtension]] | None = None,
) -> strawberry.Schema:
    """The schema; `extensions` run before error masking (document cache, limits)."""
    return strawberry.Schema(
        query=Query,
        mutation=Mutation,
        subscription=Subscription,
        extensions=[*(extensions or []), MaskUnexpectedErrors],
        execution_context_class=AcyclicExecutionContext,
    )


# The schema without per-replica extensions: for printing SDL and for tools.
schema = build_schema()
