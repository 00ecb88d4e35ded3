"""Chat as a client drives it: rooms, sends, and subscriptions over graphql-transport-ws
with a real GraphQL client."""

from __future__ import annotations

import asyncio
import contextlib
import json
import uuid
from collections.abc import AsyncIterator
from typing import Any

import websockets
from gql import Client, gql
from gql.transport.websockets import WebsocketsTransport
from websockets.typing import Subprotocol

from tests.support.social import Member, call

CREATE = """
mutation($ids: [ID!]!, $name: String) {
  createRoom(input: {memberIds: $ids, name: $name}) { id kind name members { id } }
}
"""
SEND = """
mutation($room: ID!, $text: String!, $cmid: String!) {
  sendMessage(input: {roomId: $room, text: $text, clientMessageId: $cmid}) {
    id roomId seq text clientMessageId createdAt sender { id }
  }
}
"""
HISTORY = """
query($room: ID!, $last: Int, $before: String) {
  messages(roomId: $room, last: $last, before: $before) {
    edges { cursor node { seq text } } pageInfo { hasPreviousPage startCursor }
  }
}
"""
ADDED = "subscription($room: ID!, $after: Int) { messageAdded(roomId: $room, afterSeq: $after) { seq text sender { id } } }"  # noqa: E501


async def room_of(http_url: str, creator: Member, *others: Member, name: str | None = None) -> str:
    reply = await call(http_url, creator, CREATE, ids=[o.id for o in others], name=name)
    room_id: str = reply.ok()["createRoom"]["id"]
    return room_id


async def send(http_url: str, member: Member, room: str, text: str, cmid: str | None = None) -> Any:
    return await call(http_url, member, SEND, room=room, text=text, cmid=cmid or uuid.uuid4().hex)


def operation(document: str, **variables: Any) -> Any:
    """A gql request with its variables set on it (gql 4's way)."""
    request = gql(document)
    request.variable_values = variables
    return request


@contextlib.asynccontextmanager
async def subscribed(http_url: str, member: Member) -> AsyncIterator[Any]:
    """A real GraphQL client over graphql-transport-ws, signed in as `member`."""
    transport = WebsocketsTransport(
        url=http_url.replace("http://", "ws://") + "/graphql",
        subprotocols=[WebsocketsTransport.GRAPHQLWS_SUBPROTOCOL],
        init_payload={"authorization": f"Bearer {member.token}"},
    )
    async with Client(transport=transport) as session:
        yield session


@contextlib.asynccontextmanager
async def raw_socket(http_url: str, token: str | None = None) -> AsyncIterator[Any]:
    """A graphql-transport-ws connection as the wire shows it (the server's close frame
    included), acknowledged; signed in with `token`, anonymous without."""
    url = http_url.replace("http://", "ws://") + "/graphql"
    async with websockets.connect(url, subprotocols=[Subprotocol("graphql-transport-ws")]) as ws:
        payload = {"authorization": f"Bearer {token}"} if token else {}
        await ws.send(json.dumps({"type": "connection_init", "payload": payload}))
        ack = json.loads(await asyncio.wait_for(ws.recv(), 30))
        assert ack["type"] == "connection_ack", ack
        yield ws


async def start(ws: Any, op_id: str, query: str, **variables: Any) -> None:
    """Send a `subscribe` message (any operation) on a raw socket."""
    payload = {"query": query, "variables": variables}
    await ws.send(json.dumps({"id": op_id, "type": "subscribe", "payload": payload}))


async def until_closed(ws: Any, timeout_s: float = 30) -> tuple[list[Any], Any]:
    """Every message received until the server closes the socket, and its close frame
    (None if the socket stayed open for `timeout_s`)."""
    received: list[Any] = []
    try:
        async with asyncio.timeout(timeout_s):
            while True:
                received.append(json.loads(await ws.recv()))
    except websockets.ConnectionClosed as closed:
        return received, closed.rcvd
    except TimeoutError:
        return received, None


async def collect(
    session: Any, room: str, count: int, after: int | None = None, into: list[int] | None = None
) -> list[int]:
    """The seqs of the first `count` messages the subscription delivers (appended to `into`
    as they arrive, for a caller that waits on them)."""
    seqs: list[int] = [] if into is None else into
    stream = session.subscribe(operation(ADDED, room=room, after=after))
    async for result in stream:
        seqs.append(result["messageAdded"]["seq"])
        if len(seqs) == count:
            break
    return seqs
