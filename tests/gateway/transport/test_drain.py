"""`WebSocketDrain`: a stopping replica's sockets get a 1012 close frame at once, their
handlers stop, and nothing is sent after the close (pure logic), and the same through Serve
when a redeploy replaces the gateway's replicas."""

from __future__ import annotations

import asyncio
import contextlib
import json
from typing import Any

import pytest
import websockets

from deployments.settings import Settings
from gateway.transport.drain import (
    CURRENT_SOCKET,
    MESSAGE_TOO_BIG,
    SERVICE_RESTART,
    Message,
    WebSocketDrain,
)
from tests.support.graphql import post


class Client:
    """The ASGI server's side of one WebSocket: what the client sent, what it received."""

    def __init__(self) -> None:
        self.inbox: asyncio.Queue[Message] = asyncio.Queue()
        self.received: list[Message] = []
        self._arrived = asyncio.Condition()
        self.inbox.put_nowait({"type": "websocket.connect"})

    async def receive(self) -> Message:
        return await self.inbox.get()

    async def send(self, message: Message) -> None:
        async with self._arrived:
            self.received.append(message)
            self._arrived.notify_all()

    async def has_received(self, count: int) -> None:
        async with self._arrived:
            await asyncio.wait_for(self._arrived.wait_for(lambda: len(self.received) >= count), 1)


async def echo(receive: Any, send: Any) -> None:
    """A handler like strawberry's: accept, answer each text, stop at a disconnect; then,
    stopped or not, one last send on the way out (as its clean-up may)."""
    await receive()
    await send({"type": "websocket.accept"})
    try:
        while (message := await receive())["type"] != "websocket.disconnect":
            await send({"type": "websocket.send", "text": f"echo {message['text']}"})
    finally:
        await send({"type": "websocket.send", "text": "too late"})


async def test_draining_closes_open_sockets_with_1012_and_ends_their_handlers() -> None:
    drain, client = WebSocketDrain(), Client()
    served = asyncio.create_task(
        drain.serve(echo, client.receive, client.send, accept_headers=[(b"x-nova-replica", b"r1")])
    )
    client.inbox.put_nowait({"type": "websocket.receive", "text": "hi"})
    await client.has_received(2)
    assert len(drain) == 1

    assert await drain.drain() == 1
    await asyncio.wait_for(served, 1)
    accept, answer, close = client.received
    assert accept == {"type": "websocket.accept", "headers": [(b"x-nova-replica", b"r1")]}
    assert answer["text"] == "echo hi"
    assert close["type"] == "websocket.close"
    assert close["code"] == SERVICE_RESTART
    assert len(drain) == 0


async def test_a_socket_arriving_while_draining_is_accepted_and_closed_with_1012() -> None:
    """Not refused before the handshake: a client would read that as 403, not "reconnect"."""
    drain, client = WebSocketDrain(), Client()
    assert await drain.drain() == 0
    await asyncio.wait_for(
        drain.serve(echo, client.receive, client.send, accept_headers=[(b"x-nova-replica", b"r")]),
        1,
    )
    accept, close = client.received  # and nothing the handler sent after the close
    assert accept == {"type": "websocket.accept", "headers": [(b"x-nova-replica", b"r")]}
    assert (close["type"], close["code"]) == ("websocket.close", SERVICE_RESTART)
    assert len(drain) == 0


async def test_a_socket_that_closed_itself_gets_no_second_close() -> None:
    async def closes(receive: Any, send: Any) -> None:
        await receive()
        await send({"type": "websocket.accept"})
        await send({"type": "websocket.close", "code": 4400})
        await receive()  # the server's disconnect, which this client never sends

    drain, client = WebSocketDrain(), Client()
    served = asyncio.create_task(drain.serve(closes, client.receive, client.send))
    await client.has_received(2)
    await drain.drain()
    await asyncio.wait_for(served, 1)
    assert [m["type"] for m in client.received] == ["websocket.accept", "websocket.close"]
    assert client.received[1]["code"] == 4400


async def test_a_handler_that_returns_while_its_close_is_sent_is_not_cancelled() -> None:
    release, finish = asyncio.Event(), asyncio.Event()

    async def slow_send(message: Message) -> None:
        if message["type"] == "websocket.close":
            await release.wait()

    async def handler(receive: Any, send: Any) -> None:
        await send({"type": "websocket.accept"})
        await finish.wait()

    drain = WebSocketDrain()

    async def request() -> str:
        """Serve's task: the socket, then work of its own after it."""
        await drain.serve(handler, Client().receive, slow_send)
        await asyncio.sleep(0.05)
        return "finished"

    task = asyncio.create_task(request())
    await asyncio.sleep(0.01)
    draining = asyncio.create_task(drain.drain())
    await asyncio.sleep(0.01)  # the close frame is on its way
    finish.set()  # and the handler returns by itself meanwhile
    await asyncio.sleep(0.01)
    release.set()
    await draining
    assert await asyncio.wait_for(task, 1) == "finished"


async def test_a_frame_over_the_limit_closes_with_1009_and_reads_as_a_disconnect() -> None:
    """The frame is never handed to the handler: it gets the client's disconnect instead,
    after the close frame went out (and nothing it sends after that leaves)."""
    seen: list[Message] = []

    async def handler(receive: Any, send: Any) -> None:
        await receive()
        await send({"type": "websocket.accept"})
        while (message := await receive())["type"] != "websocket.disconnect":
            seen.append(message)
        seen.append(message)
        await send({"type": "websocket.send", "text": "too late"})

    drain, client = WebSocketDrain(), Client()
    served = asyncio.create_task(
        drain.serve(handler, client.receive, client.send, max_message_bytes=8)
    )
    client.inbox.put_nowait({"type": "websocket.receive", "text": "12345678"})
    client.inbox.put_nowait({"type": "websocket.receive", "text": "é" * 5})  # 10 bytes
    await asyncio.wait_for(served, 1)
    assert seen == [
        {"type": "websocket.receive", "text": "12345678"},
        {"type": "websocket.disconnect", "code": MESSAGE_TOO_BIG},
    ]
    accept, close = client.received
    assert accept["type"] == "websocket.accept"
    assert (close["type"], close["code"]) == ("websocket.close", MESSAGE_TOO_BIG)


async def test_one_socket_closed_with_its_own_code_ends_its_handler_quietly() -> None:
    drain, client = WebSocketDrain(), Client()
    opened: list[Any] = []

    async def handler(receive: Any, send: Any) -> None:
        opened.append(CURRENT_SOCKET.get())
        await echo(receive, send)

    served = asyncio.create_task(drain.serve(handler, client.receive, client.send))
    await client.has_received(1)
    (socket,) = opened
    await socket.close(4403, "access token was revoked")
    await asyncio.wait_for(served, 1)
    assert [m["type"] for m in client.received] == ["websocket.accept", "websocket.close"]
    assert (client.received[1]["code"], client.received[1]["reason"]) == (
        4403,
        "access token was revoked",
    )
    assert len(drain) == 0


# -- through Serve: a redeploy replaces every gateway replica -------------------------------

TICKS = {"query": "subscription { ticks(count: 600, intervalMs: 1000) }"}


async def open_subscription(url: str, stack: contextlib.AsyncExitStack) -> Any:
    """A socket with a long-running subscription that has delivered its first event."""
    ws = await stack.enter_async_context(
        websockets.connect(url, subprotocols=["graphql-transport-ws"])  # type: ignore[list-item]
    )
    await ws.send(json.dumps({"type": "connection_init", "payload": {}}))
    assert json.loads(await asyncio.wait_for(ws.recv(), 30))["type"] == "connection_ack"
    await ws.send(json.dumps({"id": "t", "type": "subscribe", "payload": TICKS}))
    assert json.loads(await asyncio.wait_for(ws.recv(), 30))["type"] == "next"
    return ws


async def closed_code(ws: Any, within_s: float) -> int | None:
    """The close code the server sent within `within_s` (1006 without a close frame), or
    None if the socket is still open."""
    try:
        async with asyncio.timeout(within_s):
            while True:
                await ws.recv()
    except TimeoutError:
        return None
    except websockets.ConnectionClosed as closed:
        return closed.rcvd.code if closed.rcvd is not None else 1006


async def replicas_answering(http_url: str, attempts: int = 40) -> set[str]:
    seen: set[str] = set()
    for _ in range(attempts):
        reply = await post(http_url, "{ serverTime }")
        reply.ok()
        seen.add(reply.headers["x-nova-replica"])
    return seen


@pytest.mark.stack
async def test_replicas_replaced_by_a_redeploy_close_their_websockets_with_1012(
    deployed: Settings, http_url: str
) -> None:
    from ray import serve

    from deployments.app import APP_NAME, build_app

    url = http_url.replace("http://", "ws://") + "/graphql"
    sockets: list[Any] = []
    async with contextlib.AsyncExitStack() as stack:
        for _ in range(16):  # until both replicas hold two sockets
            sockets.append(await open_subscription(url, stack))
            held = [ws.response.headers["x-nova-replica"] for ws in sockets]
            if len(set(held)) == 2 and min(held.count(r) for r in set(held)) >= 2:
                break
        old = set(held)
        assert len(old) == 2, held

        # Serve starts the new replicas, then stops the old ones. Without the drain it holds
        # their sockets for graceful_shutdown_timeout_s (10 s), then drops them unclosed.
        redeploy = asyncio.create_task(
            asyncio.to_thread(serve.run, build_app(deployed), name=APP_NAME, route_prefix="/")
        )
        codes = await asyncio.gather(*(closed_code(ws, 60) for ws in sockets))
        await redeploy
        assert codes == [1012] * len(sockets)

        reconnected = await open_subscription(url, stack)
        assert reconnected.response.headers["x-nova-replica"] not in old
    assert len(await replicas_answering(http_url)) == 2
