"""Queries and mutations over graphql-transport-ws, held to what HTTP requests are held to:
rate limits, token expiry and revocation, checked per operation on an open socket."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest
import websockets
from gql import Client
from gql.transport.exceptions import TransportQueryError
from gql.transport.websockets import WebsocketsTransport

from deployments.settings import Settings
from gateway.limits.rate_limits import RateLimiter, budgets
from storage.db import Database
from storage.redis_client import make_redis
from tests.conftest import wait_until
from tests.support.chat import operation, room_of, subscribed
from tests.support.graphql import post, register
from tests.support.social import BLOCK, POST, call, create_post, make_members

pytestmark = pytest.mark.stack

ME = "query { me { id username } }"
SEND = """
mutation($room: ID!, $text: String!, $cmid: String!) {
  sendMessage(input: {roomId: $room, text: $text, clientMessageId: $cmid}) { seq text }
}
"""
HISTORY = "query($room: ID!) { messages(roomId: $room, last: 10) { edges { node { text } } } }"
# Refused by its resolver (no events), after the budget is charged: a cheap mutation to count.
NO_EVENTS = "mutation { trackEvents(events: []) }"
LOGOUT = "mutation($token: String!) { logout(refreshToken: $token) }"


@contextlib.asynccontextmanager
async def socket(http_url: str, token: str) -> AsyncIterator[Any]:
    """A raw graphql-transport-ws connection, acknowledged, for pipelined operations."""
    url = http_url.replace("http://", "ws://") + "/graphql"
    async with websockets.connect(url, subprotocols=["graphql-transport-ws"]) as ws:  # type: ignore[list-item]
        init = {"type": "connection_init", "payload": {"authorization": f"Bearer {token}"}}
        await ws.send(json.dumps(init))
        ack = json.loads(await asyncio.wait_for(ws.recv(), 30))
        assert ack["type"] == "connection_ack"
        yield ws


async def results(ws: Any, ids: set[str], timeout_s: float = 60) -> dict[str, dict[str, Any]]:
    """The `next` payload of each operation id in `ids` (each single-result here)."""
    payloads: dict[str, dict[str, Any]] = {}
    async with asyncio.timeout(timeout_s):
        while len(payloads) < len(ids):
            message = json.loads(await ws.recv())
            if message["type"] == "next" and message["id"] in ids:
                payloads[message["id"]] = message["payload"]
            elif message["type"] == "error":
                payloads[message["id"]] = {"errors": message["payload"]}
    return payloads


async def send(ws: Any, prefix: str, *queries: str) -> set[str]:
    """Subscribe `queries` on the socket at once; their operation ids."""
    ids = []
    for n, query in enumerate(queries):
        ids.append(f"{prefix}-{n}")
        await ws.send(json.dumps({"id": ids[-1], "type": "subscribe", "payload": {"query": query}}))
    return set(ids)


def codes(payload: dict[str, Any]) -> list[str]:
    return [e.get("extensions", {}).get("code") for e in payload.get("errors") or []]


async def test_queries_and_mutations_run_over_the_socket(
    http_url: str, db: Database, deployed: Settings
) -> None:
    alice, bob = await make_members(db, deployed, 2, prefix="wsop")
    room = await room_of(http_url, alice, bob)
    async with subscribed(http_url, alice) as session:
        me = await session.execute(operation(ME))
        assert me["me"]["id"] == alice.id
        sent = await session.execute(operation(SEND, room=room, text="over the socket", cmid="c1"))
        assert sent["sendMessage"]["text"] == "over the socket"
        again = await session.execute(operation(SEND, room=room, text="over the socket", cmid="c1"))
        assert again["sendMessage"]["seq"] == sent["sendMessage"]["seq"]  # idempotent as ever
    history = (await call(http_url, bob, HISTORY, room=room)).ok()["messages"]["edges"]
    assert [e["node"]["text"] for e in history] == ["over the socket"]


async def test_a_socket_spends_the_same_mutation_budget_as_http(
    http_url: str, db: Database, deployed: Settings
) -> None:
    """Each mutation on the socket is charged to the user's mutation bucket, the one HTTP
    mutations draw on. The bucket is put deep in debt (the limiter's own hash: `tokens`,
    `at` in Redis microseconds), 100 s of refill away from a token, so what is refused does
    not depend on how fast this machine runs. It is put there before the user's first
    mutation: a replica that has already heard of the bucket would admit one more at once
    and learn of the debt from that charge (`gateway/limits/local_buckets.py`)."""
    admitted, indebted = await make_members(db, deployed, 2, prefix="wsrl")
    budget = budgets(deployed).user_mutations
    redis = make_redis(deployed)
    try:
        async with socket(http_url, admitted.token) as ws:
            before = await results(ws, await send(ws, "before", NO_EVENTS))
        seconds, micros = await redis.time()
        debt = budget.burst + budget.rate_per_s * 100
        key = RateLimiter(redis).key(budget, indebted.id)
        await redis.hset(key, mapping={"tokens": -debt, "at": seconds * 1_000_000 + micros})
        await redis.expire(key, 300)
        async with socket(http_url, indebted.token) as ws:
            after = await results(ws, await send(ws, "after", NO_EVENTS, NO_EVENTS, ME))
    finally:
        await redis.aclose()
    assert codes(before["before-0"]) == ["BAD_USER_INPUT"]  # admitted, then refused by trackEvents
    assert codes(after["after-0"]) == codes(after["after-1"]) == ["RATE_LIMITED"]
    assert all(
        after[i]["errors"][0]["extensions"]["retryAfter"] > 0 for i in ("after-0", "after-1")
    )
    # A query spends the query bucket, which is untouched.
    assert after["after-2"]["data"]["me"]["id"] == indebted.id


async def test_a_revoked_token_stops_new_operations_on_an_open_socket(http_url: str) -> None:
    account = await register(http_url, prefix="wsrv")
    transport = WebsocketsTransport(
        url=http_url.replace("http://", "ws://") + "/graphql",
        subprotocols=[WebsocketsTransport.GRAPHQLWS_SUBPROTOCOL],
        init_payload={"authorization": f"Bearer {account.access_token}"},
    )
    async with Client(transport=transport) as session:
        assert (await session.execute(operation(ME)))["me"]["id"] == account.id
        logout = await post(
            http_url, LOGOUT, {"token": account.refresh_token}, token=account.access_token
        )
        assert logout.ok()["logout"] is True
        with pytest.raises(TransportQueryError) as refused:
            await session.execute(operation(ME))
    assert refused.value.errors is not None
    assert refused.value.errors[0]["extensions"]["code"] == "UNAUTHENTICATED"


async def test_an_expired_token_stops_new_operations_on_an_open_socket(
    http_url: str, db: Database, deployed: Settings
) -> None:
    ttl_s = 3
    (member,) = await make_members(db, deployed.replace(access_token_ttl_s=ttl_s), 1, prefix="wsex")
    issued = time.time()
    async with socket(http_url, member.token) as ws:
        first = {"id": "1", "type": "subscribe", "payload": {"query": ME}}
        await ws.send(json.dumps(first))
        assert (await results(ws, {"1"}))["1"]["data"]["me"]["id"] == member.id
        # Expired past the clock-skew leeway every token gets, over HTTP as here.
        await asyncio.sleep(max(0.0, issued + ttl_s + deployed.jwt_leeway_s + 1 - time.time()))
        await ws.send(json.dumps({**first, "id": "2"}))
        assert codes((await results(ws, {"2"}))["2"]) == ["UNAUTHENTICATED"]


async def test_bad_input_over_the_socket_is_refused_and_changes_nothing(
    http_url: str, db: Database, deployed: Settings
) -> None:
    alice, bob = await make_members(db, deployed, 2, prefix="wsbad")
    room = await room_of(http_url, alice, bob)
    async with socket(http_url, alice.token) as ws:
        empty = {"room": room, "text": "", "cmid": uuid.uuid4().hex}
        await ws.send(
            json.dumps(
                {"id": "1", "type": "subscribe", "payload": {"query": SEND, "variables": empty}}
            )
        )
        payload = (await results(ws, {"1"}))["1"]
    assert payload.get("data") is None
    assert codes(payload) == ["BAD_USER_INPUT"]
    assert (await call(http_url, bob, HISTORY, room=room)).ok()["messages"]["edges"] == []


POST_TEXT = "query($id: ID!) { post(id: $id) { id text } }"
LIKE_POST = "mutation($id: ID!) { likePost(postId: $id) { id likeCount } }"
DELETE_POST = "mutation($id: ID!) { deletePost(id: $id) }"


async def test_each_operation_on_a_socket_sees_the_blocks_and_deletions_made_before_it(
    http_url: str, db: Database, deployed: Settings
) -> None:
    """An open socket is no snapshot: a post deleted, or its author's block, since the
    socket's last operation shows in its next one (DataLoaders live for one operation)."""
    reader, author = await make_members(db, deployed, 2, prefix="wsfresh")
    deleted = await create_post(http_url, author, "deleted while the socket is open")
    blocked = await create_post(http_url, author, "hidden by a block while the socket is open")
    asked = 0

    async def ask(ws: Any, document: str, post_id: str) -> dict[str, Any]:
        nonlocal asked
        asked += 1
        ids = await send_with(ws, f"q{asked}", document, {"id": post_id})
        return (await results(ws, ids))[f"q{asked}"]

    async with socket(http_url, reader.token) as ws:
        for each in (deleted, blocked):
            assert (await ask(ws, POST_TEXT, each["id"]))["data"]["post"]["text"] == each["text"]
        assert (await call(http_url, author, DELETE_POST, id=deleted["id"])).ok()

        async def gone(post_id: str) -> bool:
            return (await ask(ws, POST_TEXT, post_id))["data"]["post"] is None

        await wait_until(
            lambda: gone(deleted["id"]),
            timeout_s=10,
            message="the socket to stop serving a deleted post",
        )
        assert (await call(http_url, author, BLOCK, id=reader.id)).ok()
        await wait_until(
            lambda: gone(blocked["id"]),
            timeout_s=10,
            message="the socket to hide a post across a new block",
        )
        assert codes(await ask(ws, LIKE_POST, blocked["id"])) == ["NOT_FOUND"]
    # The refused like changed nothing.
    assert (await call(http_url, author, POST, id=blocked["id"])).ok()["post"]["likeCount"] == 0


async def send_with(ws: Any, op_id: str, query: str, variables: dict[str, Any]) -> set[str]:
    payload = {"query": query, "variables": variables}
    await ws.send(json.dumps({"id": op_id, "type": "subscribe", "payload": payload}))
    return {op_id}
