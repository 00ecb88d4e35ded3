"""ASGI middleware: every request and WebSocket runs under a W3C trace context.

With span export on (`storage.tracing.export_spans`), each HTTP request is also a server
span whose ids are the request's `traceparent`: the one its log lines carry and its
response echoes. GraphQL over HTTP names it after the operation (`note_graphql`).
"""

from __future__ import annotations

import time
from collections.abc import Sequence

from graphql import GraphQLError
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from gateway.errors import INTERNAL
from storage.tracing import (
    SERVER,
    SpanExport,
    current_span,
    new_traceparent,
    parse_traceparent,
    reset_current_span,
    reset_traceparent,
    set_current_span,
    set_traceparent,
    span_export,
    trace_id_of,
)

# Probes answer every few seconds per replica; their spans would drown the requests'.
UNTRACED_PATHS = frozenset({"/healthz", "/readyz"})


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
        export = span_export()
        if export is not None and scope["type"] == "http" and scope["path"] not in UNTRACED_PATHS:
            try:
                await self._traced(export, scope, receive, send, traceparent, incoming)
            finally:
                reset_traceparent(token)
            return

        async def send_with_trace(message: Message) -> None:
            if message["type"] == "http.response.start":
                message.setdefault("headers", [])
                message["headers"] = [*message["headers"], (b"traceparent", traceparent.encode())]
            await send(message)

        try:
            await self.app(scope, receive, send_with_trace)
        finally:
            reset_traceparent(token)

    async def _traced(
        self,
        export: SpanExport,
        scope: Scope,
        receive: Receive,
        send: Send,
        traceparent: str,
        incoming: str | None,
    ) -> None:
        """The request as a server span: its id is `traceparent`'s, its parent the caller's."""
        method, path = scope["method"], scope["path"]
        span = export.start(
            f"{method} {path}",
            SERVER,
            parent=incoming,
            own=traceparent,
            start_ns=time.time_ns(),
            attributes={"http.request.method": method, "url.path": path},
        )
        span_token = set_current_span(span)

        async def send_with_trace(message: Message) -> None:
            if message["type"] == "http.response.start":
                message.setdefault("headers", [])
                message["headers"] = [*message["headers"], (b"traceparent", traceparent.encode())]
                status = int(message["status"])
                span.set("http.response.status_code", status)
                if status >= 500:
                    span.fail(f"HTTP {status}")
            await send(message)

        try:
            await self.app(scope, receive, send_with_trace)
        except BaseException as exc:
            span.fail(type(exc).__name__)
            raise
        finally:
            reset_current_span(span_token)
            span.end()


def note_graphql(
    operation_type: str | None, operation_name: str | None, errors: Sequence[GraphQLError]
) -> None:
    """Name the request's span after its GraphQL operation, with its errors' codes; an
    unexpected error (masked for the client) fails the span."""
    span = current_span()
    if span is None:
        return
    if operation_type:
        span.rename(f"{operation_type} {operation_name}" if operation_name else operation_type)
        span.set("graphql.operation.type", operation_type)
    if operation_name:
        span.set("graphql.operation.name", operation_name)
    if errors:
        codes = sorted({str((e.extensions or {}).get("code", "GRAPHQL_ERROR")) for e in errors})
        span.set("graphql.errors.count", len(errors))
        span.set("graphql.errors.codes", codes)
        if INTERNAL in codes:
            span.fail("unexpected error")


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope.get("headers", ()):
        if key.lower() == name:
            return bytes(value).decode("latin-1")
    return None
