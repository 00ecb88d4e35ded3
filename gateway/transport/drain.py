"""A stopping gateway replica closes its WebSockets at once, with 1012 (Service Restart).

Serve stops a replica (a redeploy, a scale-down) by waiting for its ongoing
requests, and every open WebSocket is one that never ends by itself: left alone, each
client would hang until `graceful_shutdown_timeout_s` and then lose the connection without
a close frame (1006). Instead, when Serve starts stopping the replica
(`deployments.serve_patches.before_graceful_shutdown`), every socket gets a close frame
with code 1012 and the connection's GraphQL handler is stopped, which ends its
subscriptions. Clients reconnect at once, through the proxy, to a replica that stays; chat
resumes where it left off with `afterSeq`. A socket that arrives while draining is
accepted and closed with 1012 at once.

`WebSocketDrain` sits between the ASGI server and strawberry: it holds each socket's handler
task, which the drain cancels after the close frame, and drops whatever strawberry sends
after that frame. The same channel closes one socket for other reasons (its token revoked,
idle: `DrainingSocket.close`), and refuses a frame larger than the request body limit: the
socket is closed with 1009 (Message Too Big) before the frame is parsed.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, MutableMapping
from contextvars import ContextVar
from typing import Any

log = logging.getLogger(__name__)

SERVICE_RESTART = 1012  # RFC 6455 §7.4 (IANA registry): the server is restarting
RESTART_REASON = "server restarting: reconnect"
MESSAGE_TOO_BIG = 1009  # RFC 6455 §7.4.1

Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]


async def _nothing() -> None:
    return None


class DrainingSocket:
    """One WebSocket's channel to the client, which the drain (or the gateway) can close."""

    def __init__(
        self,
        send: Send,
        accept_headers: list[tuple[bytes, bytes]],
        receive: Receive | None = None,
        max_message_bytes: int | None = None,
    ) -> None:
        self._send = send
        self._receive = receive
        self._accept_headers = accept_headers
        self._max_message_bytes = max_message_bytes
        self._handler = asyncio.current_task()
        self.closed = False
        self.drained = False  # the handler was cancelled by `close`
        self.serving = True  # the handler has not returned yet
        self.restart_on_accept = False  # closed with 1012 as soon as it is accepted

    def send(self, message: Message) -> Awaitable[None]:
        """Pass a message to the client; nothing after the close frame. Not a coroutine of
        its own: a frame's send is the server's, with no extra frame per message."""
        if self.closed:
            return _nothing()
        kind = message["type"]
        if kind == "websocket.close":
            self.closed = True
        elif kind == "websocket.accept":
            if self._accept_headers:
                headers = [*message.get("headers", []), *self._accept_headers]
                message = {**message, "headers": headers}
            if self.restart_on_accept:
                return self._accept_and_restart(message)
        return self._send(message)

    async def _accept_and_restart(self, accept: Message) -> None:
        await self._send(accept)
        await self.drain(2.0)

    async def receive(self) -> Message:
        """The client's next message. A frame over `max_message_bytes` closes the socket
        with 1009 and reads as the client's disconnect, so it is never parsed."""
        assert self._receive is not None
        message = await self._receive()
        limit = self._max_message_bytes
        if limit is not None and message["type"] == "websocket.receive" and _over(message, limit):
            await self._send_close(MESSAGE_TOO_BIG, f"a message is limited to {limit} bytes", 2.0)
            return {"type": "websocket.disconnect", "code": MESSAGE_TOO_BIG}
        return message

    async def close(self, code: int, reason: str, timeout_s: float = 2.0) -> None:
        """Send the close frame (unless one went already), then stop the socket's handler.

        The handler is cancelled rather than fed a disconnect: an idle socket's handler
        waits in `receive`, and only cancelling interrupts that wait without a task per
        message to race it against the close. `WebSocketDrain.serve` absorbs the
        cancellation, so the request ends as a normal close.
        """
        try:
            await self._send_close(code, reason, timeout_s)
        finally:
            # A handler that already returned has left the socket: its task is Serve's
            # again, and must not be cancelled.
            if self.serving and not self.drained and self._handler is not None:
                self.drained = True
                self._handler.cancel()

    async def drain(self, timeout_s: float) -> None:
        await self.close(SERVICE_RESTART, RESTART_REASON, timeout_s)

    async def _send_close(self, code: int, reason: str, timeout_s: float) -> None:
        if self.closed:
            return
        self.closed = True
        close = {"type": "websocket.close", "code": code, "reason": reason}
        try:
            await asyncio.wait_for(self._send(close), timeout_s)
        except Exception as exc:  # the client may be gone already; the handler still stops
            log.debug("close frame not sent: %s", exc)


def _over(message: Message, limit: int) -> bool:
    """Whether a received frame holds more than `limit` bytes (text counts as UTF-8)."""
    data = message.get("bytes")
    if data is not None:
        return len(data) > limit
    text = message.get("text") or ""
    if len(text) > limit:
        return True
    return len(text) * 4 > limit and len(text.encode()) > limit


# The socket the current task serves (set by `WebSocketDrain.serve` around the handler).
CURRENT_SOCKET: ContextVar[DrainingSocket | None] = ContextVar("nova_websocket", default=None)


class WebSocketDrain:
    """The replica's open WebSockets, and closing them all when it stops."""

    def __init__(self) -> None:
        self._open: set[DrainingSocket] = set()
        self.draining = False

    def __len__(self) -> int:
        return len(self._open)

    async def serve(
        self,
        app: Callable[[Receive, Send], Awaitable[None]],
        receive: Receive,
        send: Send,
        *,
        accept_headers: list[tuple[bytes, bytes]] | None = None,
        max_message_bytes: int | None = None,
    ) -> None:
        """Run `app` on one WebSocket, on a channel the drain can close;
        `accept_headers` are added to the handshake's response, and a frame over
        `max_message_bytes` closes the socket with 1009."""
        socket = DrainingSocket(send, accept_headers or [], receive, max_message_bytes)
        # A socket that arrives while draining (the proxy routes here until it has reloaded
        # without this replica, a second or two) is accepted and closed with 1012 at once:
        # refused before the handshake, the client would see 403 (forbidden, or a bare 1006
        # in a browser), not the code that says "reconnect".
        socket.restart_on_accept = self.draining
        self._open.add(socket)
        current = CURRENT_SOCKET.set(socket)
        try:
            await app(socket.receive, socket.send)
        except asyncio.CancelledError:
            handler = asyncio.current_task()
            # Only the drain's own cancellation ends quietly; any other propagates.
            if not socket.drained or handler is None or handler.uncancel() > 0:
                raise
        finally:
            CURRENT_SOCKET.reset(current)
            socket.serving = False
            self._open.discard(socket)

    async def drain(self, timeout_s: float = 2.0) -> int:
        """Close the open sockets with 1012, and every later one as soon as it is
        accepted; how many were open."""
        self.draining = True
        sockets = list(self._open)
        if sockets:
            await asyncio.gather(*(s.drain(timeout_s) for s in sockets))
            log.info(
                "closed %d WebSockets with %d: this replica is stopping",
                len(sockets),
                SERVICE_RESTART,
            )
        return len(sockets)
