"""GraphQL execution: prepared documents executed directly, leaving no reference cycle.

`execute_prepared` runs a document the gateway has already parsed, validated and checked
(`gateway.transport.documents`) with graphql-core, as strawberry's `Schema.execute` would after
its parsing and validation, without its per-operation extension machinery: with a cached
document there is nothing left for it to do, and skipping it took the replica's CPU per
`me` from 1.00 to 0.77 ms. A failed operation is logged without its document or variables
(`gateway.errors.log_failed_operation`), and its errors masked as strawberry would
(`MaskUnexpectedErrors`). Subscriptions and WebSocket operations still go through
strawberry.

graphql-core 3.3's executor refers to itself: `Executor.__init__` stores
`GraphQLResolveInfoHelpers(gather=self.gather_async_work, track=self.track_async_work)`,
bound methods of its own. So every request's whole execution state (the executor, its
context, variables, collected fields, DataLoaders) is cyclic garbage that only the
collector frees: about 90 objects per `me`, which filled the gateway's young generation
every few dozen requests and made its collections (9-10 ms each on two busy cores) a part
of the latency tail. Once an operation's result is complete nothing uses the helpers, so
dropping them there lets reference counting free the rest at once.
"""

from __future__ import annotations

import asyncio
from collections.abc import Hashable
from typing import Any

from graphql import DocumentNode, ExecutionResult, GraphQLError, execute
from graphql.pyutils import is_awaitable
from strawberry import Schema
from strawberry.execution.is_awaitable import optimized_is_awaitable
from strawberry.schema.schema import StrawberryGraphQLCoreExecutionContext

from gateway.errors import MaskUnexpectedErrors, log_failed_operation
from gateway.transport.shared_events import STATS, sharing_key

_MASK = MaskUnexpectedErrors()


async def execute_prepared(
    schema: Schema,
    document: DocumentNode,
    *,
    context: Any,
    variables: dict[str, Any] | None,
    operation_name: str | None,
    operation_type: str,
) -> ExecutionResult:
    """Execute a valid `document` (one operation, selected by `operation_name`, of
    `operation_type`, for the log)."""
    try:
        result = execute(
            schema._schema,
            document,
            context_value=context,
            variable_values=variables,
            operation_name=operation_name,
            is_awaitable=optimized_is_awaitable,  # type: ignore[arg-type] # a TypeGuard in effect
            executor_class=AcyclicExecutionContext,
            operation_extensions=None,
        )
        if is_awaitable(result):
            result = await result
    except Exception as exc:  # as strawberry turns an exception outside resolvers
        result = ExecutionResult(data=None, errors=[GraphQLError(str(exc), original_error=exc)])
    assert isinstance(result, ExecutionResult)  # no @defer/@stream: incremental is off
    if result.errors:
        log_failed_operation(
            result.errors, operation_name=operation_name, operation_type=operation_type
        )
        result.errors = _MASK.mask(result.errors)
    return result


class AcyclicExecutionContext(StrawberryGraphQLCoreExecutionContext):
    """Strawberry's execution context, releasing its self-references when done, and
    executing a shared subscription event once per distinct operation
    (`gateway.transport.shared_events`)."""

    # Set on a per-event executor whose payload and selection can be shared.
    _event_key: Hashable | None = None

    def build_per_event_executor(self, payload: Any) -> Any:
        executor = super().build_per_event_executor(payload)
        if isinstance(executor, AcyclicExecutionContext) and isinstance(
            getattr(payload, "execution_memo", None), dict
        ):
            executor._event_key = self._sharing_key()
        return executor

    def _sharing_key(self) -> Hashable | None:
        """Computed once per subscription: every event of it asks the same thing."""
        if "_shared_as" not in self.__dict__:
            self._shared_as = sharing_key(
                self.schema,
                self.operation,
                self.fragment_definitions,
                self.variable_values.coerced,
            )
        return self._shared_as

    def execute_operation(self, *args: Any, **kwargs: Any) -> Any:
        key = self._event_key
        if key is None:
            return self._execute_own(*args, **kwargs)
        memo: dict[Hashable, Any] = self.root_value.execution_memo
        known = memo.get(key)
        if isinstance(known, ExecutionResult):
            STATS.reused += 1
            return known
        if known is not None:  # another subscriber is executing it: wait for its result
            return self._await_shared(known, args, kwargs)
        STATS.executed += 1
        result = self._execute_own(*args, **kwargs)
        if is_awaitable(result):
            sharing: asyncio.Future[ExecutionResult | None] = (
                asyncio.get_running_loop().create_future()
            )
            memo[key] = sharing
            return self._share_when_done(result, sharing, memo, key)
        if _can_share(result):
            memo[key] = result
        return result

    def _execute_own(self, *args: Any, **kwargs: Any) -> Any:
        result = super().execute_operation(*args, **kwargs)
        if is_awaitable(result):
            return self._release_after(result)
        self._release(result)
        return result

    async def _await_shared(
        self, sharing: asyncio.Future[ExecutionResult | None], args: Any, kwargs: Any
    ) -> Any:
        shared = await asyncio.shield(sharing)
        if shared is not None:
            STATS.reused += 1
            return shared
        STATS.executed += 1
        result = self._execute_own(*args, **kwargs)  # the first one failed: on our own
        return await result if is_awaitable(result) else result

    @staticmethod
    async def _share_when_done(
        pending: Any,
        sharing: asyncio.Future[ExecutionResult | None],
        memo: dict[Hashable, Any],
        key: Hashable,
    ) -> Any:
        result = None
        try:
            result = await pending
            return result
        finally:
            shared = result if _can_share(result) else None
            if shared is None:
                memo.pop(key, None)
            else:
                memo[key] = shared
            sharing.set_result(shared)

    async def _release_after(self, pending: Any) -> Any:
        result = await pending
        self._release(result)
        return result

    def _release(self, result: Any) -> None:
        # Only a complete result: incremental delivery (@defer, @stream) goes on using
        # the helpers after the first payload.
        if isinstance(result, ExecutionResult):
            self.__dict__.pop("async_helpers", None)


def _can_share(result: Any) -> bool:
    return isinstance(result, ExecutionResult) and not result.errors
