"""GraphQL execution that leaves no reference cycle behind.

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

from typing import Any

from graphql import ExecutionResult
from graphql.pyutils import is_awaitable
from strawberry.schema.schema import StrawberryGraphQLCoreExecutionContext


class AcyclicExecutionContext(StrawberryGraphQLCoreExecutionContext):
    """Strawberry's execution context, releasing its self-references when done."""

    def execute_operation(self, *args: Any, **kwargs: Any) -> Any:
        result = super().execute_operation(*args, **kwargs)
        if is_awaitable(result):
            return self._release_after(result)
        self._release(result)
        return result

    async def _release_after(self, pending: Any) -> Any:
        result = await pending
        self._release(result)
        return result

    def _release(self, result: Any) -> None:
        # Only a complete result: incremental delivery (@defer, @stream) goes on using
        # the helpers after the first payload.
        if isinstance(result, ExecutionResult):
            self.__dict__.pop("async_helpers", None)
