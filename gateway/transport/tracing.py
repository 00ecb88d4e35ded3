"""ASGI middleware: every request and WebSocket runs under a W3C trace context."""

from __future__ import annotations

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from storage.tracing import (
    new_traceparent,
    parse_traceparent,
    reset_traceparent,
    set_traceparent,
    trace_id_of,
)


class TraceMiddleware:
    """Continue the caller's `traceparent` (or start one) and echo it in the response."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        incoming = parse_traceparent(_header(scope, b"traceparent"))
        traceparent = new_traceparent(trace_id_of(incoming))
        token = set_traceparent(traceparent)

        async def send_with_trace(message: Message) -> None:
            if message["type"] == "http.response.start":
                message.setdefault("headers", [])
                message["headers"] = [*message["headers"], (b"traceparent", traceparent.encode())]
            await send(message)

        try:
            await self.app(scope, receive, send_with_trace)
        finally:
            reset_traceparent(token)


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope.get("headers", ()):
        if key.lower() == name:
            return bytes(value).decode("latin-1")
    return None
