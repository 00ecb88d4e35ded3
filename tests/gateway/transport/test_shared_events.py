"""Shared subscription events (pure logic, in process): which selections may be shared,
and that a shared event is executed once per distinct operation, never across viewers
for a field that depends on who is looking."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import AsyncGenerator, Hashable
from typing import Any

import pytest
import strawberry
from graphql import FragmentDefinitionNode, OperationDefinitionNode, parse

from gateway.schema.root import schema as gateway_schema
from gateway.transport.execution import AcyclicExecutionContext
from gateway.transport.shared_events import STATS, sharing_key


def key_of(document: str, **variables: Any) -> Hashable | None:
    parsed = parse(document)
    operation = next(d for d in parsed.definitions if isinstance(d, OperationDefinitionNode))
    fragments = {
        d.name.value: d for d in parsed.definitions if isinstance(d, FragmentDefinitionNode)
    }
    return sharing_key(gateway_schema._schema, operation, fragments, variables)


@pytest.mark.parametrize(
    "document",
    [
        'subscription { messageAdded(roomId: "r") { seq text createdAt } }',
        'subscription { messageAdded(roomId: "r") { __typename id sender { id username } } }',
        'subscription { messageAdded(roomId: "r") { ...M } } fragment M on Message { seq }',
        'subscription { messageAdded(roomId: "r") { ... on Message { seq } } }',
        'subscription($x: Boolean!) { messageAdded(roomId: "r") { seq text @include(if: $x) } }',
        'subscription { last: messageAdded(roomId: "r") { n: seq } }',
    ],
)
def test_public_selections_of_a_message_are_shared(document: str) -> None:
    assert key_of(document, x=True) is not None


@pytest.mark.parametrize(
    "document",
    [
        'subscription { messageAdded(roomId: "r") { seq sender { emailVerified } } }',
        'subscription { messageAdded(roomId: "r") { sender { viewerFollows } } }',
        'subscription { messageAdded(roomId: "r") { ...M } } fragment M on Message { sender { roles } }',  # noqa: E501
        'subscription { messageAdded(roomId: "r") { ... on Message { sender { email } } } }',
        "subscription { feedUpdated { postId } }",
        "subscription { notificationAdded { id } }",
    ],
)
def test_a_selection_that_depends_on_the_viewer_is_not_shared(document: str) -> None:
    assert key_of(document) is None


def test_different_variables_or_documents_are_different_keys() -> None:
    document = 'subscription($x: Boolean!) { messageAdded(roomId: "r") { seq @skip(if: $x) } }'
    assert key_of(document, x=True) == key_of(document, x=True)
    assert key_of(document, x=True) != key_of(document, x=False)
    assert key_of('subscription { messageAdded(roomId: "r") { seq } }') != key_of(
        'subscription { messageAdded(roomId: "r") { seq text } }'
    )


# A toy schema with the gateway's type names, so `SHARED_FIELDS` applies to it.
calls: Counter[str] = Counter()
failing = {"executions": 0}  # how many executions of `text` fail next


@strawberry.type
class User:
    id: strawberry.ID

    @strawberry.field
    def email(self, info: strawberry.Info) -> str | None:
        calls["email"] += 1
        viewer: str = info.context["viewer"]
        return f"{viewer}@example.com" if viewer == self.id else None


@strawberry.type
class Message:
    seq: int
    execution_memo: strawberry.Private[dict[Hashable, Any] | None] = None

    @strawberry.field
    async def text(self) -> str:
        calls["text"] += 1
        await asyncio.sleep(0.01)  # the other subscribers arrive while this one runs
        if failing["executions"] > 0:
            failing["executions"] -= 1
            raise RuntimeError("the first execution fails")
        return f"message {self.seq}"

    @strawberry.field
    def sender(self) -> User:
        return User(id=strawberry.ID("u0"))


@strawberry.type
class Query:
    ping: str = "pong"


def subscription_type(queues: dict[str, asyncio.Queue[Message]]) -> type:
    @strawberry.type
    class Subscription:
        @strawberry.subscription
        async def message_added(
            self, info: strawberry.Info, room_id: str
        ) -> AsyncGenerator[Message, None]:
            queue = queues[info.context["viewer"]]
            while True:
                yield await queue.get()

    return Subscription


async def deliver(document: str, viewers: list[str], payload: Message) -> list[Any]:
    """Subscribe every viewer, hand them all the same payload object, return each result."""
    queues: dict[str, asyncio.Queue[Message]] = {v: asyncio.Queue() for v in viewers}
    schema = strawberry.Schema(
        query=Query,
        subscription=subscription_type(queues),
        execution_context_class=AcyclicExecutionContext,
    )
    streams = [await schema.subscribe(document, context_value={"viewer": v}) for v in viewers]
    firsts = [asyncio.ensure_future(stream.__anext__()) for stream in streams]  # type: ignore[union-attr]
    await asyncio.sleep(0)
    for queue in queues.values():
        queue.put_nowait(payload)
    results = await asyncio.wait_for(asyncio.gather(*firsts), 10)
    for stream in streams:
        await stream.aclose()  # type: ignore[union-attr]
    return results


@pytest.fixture(autouse=True)
def fresh_calls() -> None:
    calls.clear()
    failing["executions"] = 0


VIEWERS = ["u0", "u1", "u2", "u3", "u4"]


async def test_a_shared_event_is_executed_once_for_all_its_subscribers() -> None:
    document = 'subscription { messageAdded(roomId: "r") { seq text sender { id } } }'
    executed, reused = STATS.executed, STATS.reused
    results = await deliver(document, VIEWERS, Message(seq=7, execution_memo={}))
    assert calls["text"] == 1
    assert (STATS.executed - executed, STATS.reused - reused) == (1, len(VIEWERS) - 1)
    expected = {"messageAdded": {"seq": 7, "text": "message 7", "sender": {"id": "u0"}}}
    assert [r.data for r in results] == [expected] * len(VIEWERS)


async def test_an_event_without_a_memo_is_executed_per_subscriber() -> None:
    document = 'subscription { messageAdded(roomId: "r") { seq text } }'
    await deliver(document, VIEWERS, Message(seq=7))
    assert calls["text"] == len(VIEWERS)


async def test_a_field_that_depends_on_the_viewer_is_answered_per_viewer() -> None:
    document = 'subscription { messageAdded(roomId: "r") { text sender { email } } }'
    results = await deliver(document, VIEWERS, Message(seq=7, execution_memo={}))
    assert calls["text"] == calls["email"] == len(VIEWERS)
    emails = [r.data["messageAdded"]["sender"]["email"] for r in results]
    assert emails == ["u0@example.com", None, None, None, None]


async def test_a_result_with_errors_is_not_shared() -> None:
    failing["executions"] = 1
    document = 'subscription { messageAdded(roomId: "r") { seq text } }'
    results = await deliver(document, VIEWERS, Message(seq=7, execution_memo={}))
    assert sum(1 for r in results if r.errors) == 1
    assert [r.data for r in results if not r.errors] == [
        {"messageAdded": {"seq": 7, "text": "message 7"}}
    ] * (len(VIEWERS) - 1)
    assert calls["text"] == 1 + (len(VIEWERS) - 1)  # the failed one, then one of its own each
