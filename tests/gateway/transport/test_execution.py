"""`AcyclicExecutionContext`: executing an operation leaves no cyclic garbage behind
(pure logic: the gateway's own schema, executed in process)."""

from __future__ import annotations

import gc
from collections.abc import Iterator

import pytest
import strawberry
from strawberry.schema.schema import StrawberryGraphQLCoreExecutionContext

from gateway.schema.root import schema as gateway_schema
from gateway.transport.execution import AcyclicExecutionContext


@strawberry.type
class Query:
    @strawberry.field
    async def greeting(self, name: str = "world") -> str:
        return f"hello {name}"


@pytest.fixture
def saved_garbage() -> Iterator[list[object]]:
    """What the collector finds unreachable while the test runs, kept for inspection."""
    gc.collect()
    gc.disable()
    gc.set_debug(gc.DEBUG_SAVEALL)
    try:
        yield gc.garbage
    finally:
        gc.set_debug(0)
        gc.garbage.clear()
        gc.enable()


def executors(garbage: list[object]) -> int:
    return sum(isinstance(o, StrawberryGraphQLCoreExecutionContext) for o in garbage)


async def run(schema: strawberry.Schema, query: str, times: int = 20) -> None:
    for _ in range(times):
        result = await schema.execute(query)
        assert result.errors is None, result.errors


async def test_strawberrys_own_context_leaves_each_execution_as_garbage(
    saved_garbage: list[object],
) -> None:
    """The cycle this module exists for: without it, every execution is cyclic garbage."""
    await run(strawberry.Schema(query=Query), "{ greeting }")
    gc.collect()
    assert executors(saved_garbage) == 20


async def test_an_acyclic_context_is_freed_by_reference_counting(
    saved_garbage: list[object],
) -> None:
    schema = strawberry.Schema(query=Query, execution_context_class=AcyclicExecutionContext)
    await run(schema, '{ greeting(name: "nova") }')
    gc.collect()
    assert executors(saved_garbage) == 0


async def test_the_gateway_schema_executes_without_cycles(saved_garbage: list[object]) -> None:
    await run(gateway_schema, "{ serverTime }")
    gc.collect()
    assert executors(saved_garbage) == 0
