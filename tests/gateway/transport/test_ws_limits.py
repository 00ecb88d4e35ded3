"""What one client may hold over WebSocket, through the Serve app (two gateway replicas):
sockets per IP and per account (counted across replicas), idle anonymous sockets, the
size of a frame, and operations per socket."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest
import websockets
from websockets.typing import Subprotocol

from deployments.settings import Settings
from gateway.transport.ws_caps import lease_key
from storage.db import Database
from tests.conftest import wait_until
from tests.support.chat import raw_socket, start, until_closed
from tests.support.social import make_members

pytestmark = pytest.mark.stack

WAIT_S = 30
NOTIFIED = "subscription { notificationAdded { id } }"


class Opened:
    """One socket as the client sees it: whether `connection_init` was acknowledged, the
    server's close frame if it closed instead, and which replica accepted it."""

    def __init__(self, ws: Any, reply: dict[str, Any] | None, close: Any) -> None:
        self.ws = ws
        self.acknowledged = reply is not None and reply.get("type") == "connection_ack"
        self.close = close
        self.replica = ws.response.headers.get("x-nova-replica")


async def open_socket(http_url: str, stack: contextlib.AsyncExitStack, token: str | None) -> Opened:
    url = http_url.replace("http://", "ws://") + "/graphql"
    ws = await stack.enter_async_context(
        websockets.connect(url, subprotocols=[Subprotocol("graphql-transport-ws")])
    )
    payload = {"authorization": f"Bearer {token}"} if token else {}
    try:
        await ws.send(json.dumps({"type": "connection_init", "payload": payload}))
        reply = json.loads(await asyncio.wait_for(ws.recv(), WAIT_S))
    except websockets.ConnectionClosed as closed:
        return Opened(ws, None, closed.rcvd)
    return Opened(ws, reply, None)


@contextlib.asynccontextmanager
async def sockets() -> AsyncIterator[contextlib.AsyncExitStack]:
    async with contextlib.AsyncExitStack() as stack:
        yield stack


async def no_leases(redis: Any, kind: str, subject: str) -> None:
    """Until no replica holds a socket lease for `subject` (sockets of earlier tests are
    released when their handlers end)."""

    async def none() -> bool:
        return bool(await redis.zcount(lease_key(kind, subject), time.time(), "+inf") == 0)

    await wait_until(none, timeout_s=WAIT_S, message=f"no {kind} leases for {subject}")


async def test_sockets_per_account_are_capped_across_replicas(
    http_url: str, db: Database, deployed: Settings
) -> None:
    (member,) = await make_members(db, deployed, 1, prefix="wscap")
    cap = deployed.ws_max_per_user
    async with sockets() as stack:
        opened = [await open_socket(http_url, stack, member.token) for _ in range(cap)]
        assert all(o.acknowledged for o in opened)
        assert len({o.replica for o in opened}) == 2, "the cap counts both replicas' sockets"
        refused = await open_socket(http_url, stack, member.token)
        assert not refused.acknowledged
        assert refused.close is not None
        assert (refused.close.code, refused.close.reason) == (
            1008,
            f"too many WebSockets for this account (at most {cap})",
        )
        # A socket closed frees its place.
        await opened[0].ws.close()

        async def admitted() -> bool:
            return (await open_socket(http_url, stack, member.token)).acknowledged

        await wait_until(admitted, timeout_s=WAIT_S, message="a place freed by a closed socket")


async def test_sockets_per_address_are_capped_across_replicas(
    http_url: str, deployed: Settings, redis: Any
) -> None:
    cap = deployed.ws_max_per_ip
    await no_leases(redis, "ip", "127.0.0.1")
    async with sockets() as stack:
        opened: list[Opened] = []
        for _ in range(0, cap, 20):
            opened += await asyncio.gather(
                *(open_socket(http_url, stack, None) for _ in range(min(20, cap - len(opened))))
            )
        assert len(opened) == cap
        assert all(o.acknowledged for o in opened)
        assert len({o.replica for o in opened}) == 2, "the cap counts both replicas' sockets"
        refused = await open_socket(http_url, stack, None)
        assert not refused.acknowledged
        assert refused.close is not None
        assert (refused.close.code, refused.close.reason) == (
            1008,
            f"too many WebSockets from this address (at most {cap})",
        )


async def test_an_idle_anonymous_socket_is_closed_and_a_signed_in_one_is_not(
    http_url: str, db: Database, deployed: Settings
) -> None:
    (member,) = await make_members(db, deployed, 1, prefix="wsidle")
    async with raw_socket(http_url) as anonymous, raw_socket(http_url, member.token) as signed_in:
        received, close = await until_closed(anonymous, deployed.ws_anonymous_idle_s + WAIT_S)
        assert received == []
        assert close is not None, "the idle anonymous socket stayed open"
        assert (close.code, close.reason) == (1000, "idle")
        await signed_in.send(json.dumps({"type": "ping"}))
        assert json.loads(await asyncio.wait_for(signed_in.recv(), WAIT_S)) == {"type": "pong"}


async def test_a_frame_over_the_request_size_limit_closes_the_socket(
    http_url: str, deployed: Settings
) -> None:
    limit = deployed.max_request_bytes
    query = "{ __typename }"  # the padding rides in a variable the query does not declare
    async with raw_socket(http_url) as ws:
        # Just under the limit, a frame is read and answered.
        under = "x" * (limit - 200)
        await start(ws, "under", query, pad=under)
        answer = json.loads(await asyncio.wait_for(ws.recv(), WAIT_S))
        assert answer["payload"] == {"data": {"__typename": "Query"}}
        await start(ws, "over", query, pad="x" * (8 * limit))
        received, close = await until_closed(ws)
    assert [m for m in received if m.get("id") == "over"] == []
    assert close is not None
    assert (close.code, close.reason) == (1009, f"a message is limited to {limit} bytes")


async def test_operations_past_the_per_socket_limit_get_a_coded_error(
    http_url: str, db: Database, deployed: Settings
) -> None:
    (member,) = await make_members(db, deployed, 1, prefix="wsops")
    async with raw_socket(http_url, member.token) as ws:
        for n in range(100):
            await start(ws, f"live-{n}", NOTIFIED)
        await start(ws, "one-too-many", NOTIFIED)
        # The hundred run on, silently (no notification comes); the next one is refused.
        message = json.loads(await asyncio.wait_for(ws.recv(), WAIT_S))
    assert (message["type"], message["id"]) == ("error", "one-too-many"), message
    (error,) = message["payload"]
    assert error["message"].startswith("Subscription limit reached")
    assert error["extensions"] == {"code": "QUERY_TOO_COMPLEX", "limit": "operations", "max": 100}
