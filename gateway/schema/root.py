"""The GraphQL schema, composed from one module per domain (`identity`, `account`,
`social`, `chat`, `notifications`, `media`, `stories`, `ranking`, `exports`), plus the spine's
`serverTime` and `ticks`.

Resolvers stay thin: they check who is asking, call a service and shape the answer. Errors
are Nova errors, mapped onto `extensions.code` in `gateway.errors`; a failed operation is
logged by its name and type, never with its document or variables
(`gateway.errors.log_failed_operation`). The order of the bases is the order of the fields
in `schema.graphql`.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, Callable
from datetime import UTC, datetime

import strawberry
from graphql import GraphQLError
from strawberry.extensions import SchemaExtension
from strawberry.types import ExecutionContext

from gateway.errors import BAD_USER_INPUT, MaskUnexpectedErrors, log_failed_operation, user_error
from gateway.schema.account import AccountMutation, AccountQuery
from gateway.schema.chat import ChatMutation, ChatQuery, ChatSubscription
from gateway.schema.exports import ExportMutation, ExportQuery
from gateway.schema.identity import IdentityMutation, IdentityQuery
from gateway.schema.media import MediaMutation, MediaQuery, MediaSubscription
from gateway.schema.moderation import ModerationMutation, ModerationQuery
from gateway.schema.notification_preferences import (
    NotificationPreferencesMutation,
    NotificationPreferencesQuery,
)
from gateway.schema.notifications import (
    NotificationMutation,
    NotificationQuery,
    NotificationSubscription,
)
from gateway.schema.ranking import RankingMutation
from gateway.schema.social import SocialMutation, SocialQuery, SocialSubscription
from gateway.schema.stories import StoryMutation, StoryQuery
from gateway.schema.types import NovaInfo
from gateway.transport.execution import AcyclicExecutionContext

MAX_TICKS = 1_000
# A floor on the interval, and every tick after the first charged as a query: one request
# cannot become a thousand messages at once.
MIN_TICK_INTERVAL_MS = 10
MAX_TICK_INTERVAL_MS = 10_000


@strawberry.type
class SpineQuery:
    @strawberry.field(description="The server's clock, in UTC.")
    def server_time(self) -> datetime:
        return datetime.now(UTC)


@strawberry.type
class Query(
    SocialQuery,
    ChatQuery,
    NotificationQuery,
    NotificationPreferencesQuery,
    MediaQuery,
    StoryQuery,
    ModerationQuery,
    ExportQuery,
    AccountQuery,
    SpineQuery,
    IdentityQuery,
):
    """Every query, by domain."""


@strawberry.type
class Mutation(
    SocialMutation,
    ChatMutation,
    RankingMutation,
    NotificationMutation,
    NotificationPreferencesMutation,
    MediaMutation,
    StoryMutation,
    ModerationMutation,
    ExportMutation,
    AccountMutation,
    IdentityMutation,
):
    """Every mutation, by domain."""


@strawberry.type
class Subscription(
    SocialSubscription, ChatSubscription, NotificationSubscription, MediaSubscription
):
    @strawberry.subscription(description="Streams 1..count, one every intervalMs milliseconds.")
    async def ticks(
        self, info: NovaInfo, count: int, interval_ms: int = 100
    ) -> AsyncGenerator[int, None]:
        """The subscription itself was charged as a query; so is every further tick, to
        the caller's IP and user budgets. A spent budget ends the stream RATE_LIMITED."""
        if not 1 <= count <= MAX_TICKS:
            raise user_error(f"count must be between 1 and {MAX_TICKS}", BAD_USER_INPUT)
        if not MIN_TICK_INTERVAL_MS <= interval_ms <= MAX_TICK_INTERVAL_MS:
            raise user_error(
                f"intervalMs must be between {MIN_TICK_INTERVAL_MS} and {MAX_TICK_INTERVAL_MS}",
                BAD_USER_INPUT,
            )
        context = info.context
        for n in range(1, count + 1):
            if n > 1:
                await context.runtime.admit(context.client.ip, context.claims, mutation=False)
            yield n
            if n < count:
                await asyncio.sleep(interval_ms / 1000)


class NovaSchema(strawberry.Schema):
    """Strawberry's schema, logging a failed operation without its document: strawberry's
    own log line is the error printed with the lines of the document around it."""

    def process_errors(
        self, errors: list[GraphQLError], execution_context: ExecutionContext | None = None
    ) -> None:
        name, kind = None, None
        if execution_context is not None:
            name = execution_context.operation_name
            try:
                kind = execution_context.operation_type.value
            except RuntimeError:  # no operation to tell: it did not parse, or none matched
                kind = None
        log_failed_operation(errors, operation_name=name, operation_type=kind)


def build_schema(
    extensions: list[Callable[[], SchemaExtension]] | None = None,
) -> NovaSchema:
    """The schema; `extensions` run before error masking (document cache, limits)."""
    return NovaSchema(
        query=Query,
        mutation=Mutation,
        subscription=Subscription,
        extensions=[*(extensions or []), MaskUnexpectedErrors],
        execution_context_class=AcyclicExecutionContext,
    )


# The schema without per-replica extensions: for printing SDL and for tools.
schema = build_schema()
