"""The gateway's ASGI application: `/graphql` (HTTP and WebSocket), JWKS, health endpoints,
and the web client (`gateway.web`): its pages, its assets, GraphiQL for browsers."""

from __future__ import annotations

import contextlib
import json
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route, WebSocketRoute
from starlette.types import ASGIApp, Message, Receive, Scope, Send
from strawberry.asgi import GraphQL
from strawberry.exceptions import ConnectionRejectionError
from strawberry.subscriptions import GRAPHQL_TRANSPORT_WS_PROTOCOL

from gateway.errors import INTERNAL
from gateway.runtime import GatewayRuntime
from gateway.schema.context import Context
from gateway.schema.root import build_schema
from gateway.schema.root import schema as plain_schema
from gateway.transport.admission import InFlightLimit
from gateway.transport.documents import DocumentCache, prepared_documents
from gateway.transport.export_http import ExportRoutes
from gateway.transport.http import GraphQLHTTP, client_info
from gateway.transport.media_http import MediaRoutes
from gateway.transport.tracing import TraceMiddleware
from gateway.transport.unsubscribe_http import UnsubscribeRoutes
from gateway.transport.ws_caps import SocketLeases
from gateway.transport.ws_handler import NovaWebSocketHandler, WebSocketPolicy
from gateway.transport.ws_operations import WebSocketOperationGuard
from gateway.web import DIST_DIR, Dist, WebSite, wants_graphiql
from storage.errors import NovaError
from storage.media_store import upload_origins
from storage.unsubscribe_tokens import UnsubscribeTokens

__all__ = ["GatewayRuntime", "create_app"]

log = logging.getLogger(__name__)

_GRAPHQL_HTTP = frozenset({("/graphql", "GET"), ("/graphql", "POST")})


class GraphQLWebSocket(GraphQL[Context, None]):
    """graphql-transport-ws on `/graphql`; the access token comes in `connection_init`.
    Queries and mutations may come this way too, held to HTTP's limits
    (`gateway.transport.ws_operations`). Each socket is held to the caps, the idle rule,
    its token's revocation and a context per operation (`gateway.transport.ws_handler`),
    and its frames to the request body limit (`gateway.transport.drain`)."""

    graphql_transport_ws_handler_class = NovaWebSocketHandler

    def __init__(self, runtime: GatewayRuntime, schema: Any, policy: WebSocketPolicy) -> None:
        # The handler counts operations per socket itself, with a coded error.
        super().__init__(
            schema,
            subscription_protocols=[GRAPHQL_TRANSPORT_WS_PROTOCOL],
            max_subscriptions_per_connection=None,
        )
        self._runtime = runtime
        self.policy = policy

    async def get_context(self, request: Any, response: Any) -> Context:
        client = client_info(request, self._runtime.settings)
        return Context(runtime=self._runtime, client=client, request=request, response=response)

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "websocket":
            await super().__call__(scope, receive, send)
            return
        # Through the drain: a stopping replica closes the socket with 1012 at once.
        await self._runtime.websockets.serve(
            lambda receive, send: super(GraphQLWebSocket, self).__call__(scope, receive, send),
            receive,
            send,
            accept_headers=[(b"x-nova-replica", self._runtime.replica_id.encode())],
            max_message_bytes=self._runtime.settings.max_request_bytes,
        )

    async def on_ws_connect(self, context: Context) -> dict[str, object] | None:
        params = context.connection_params or {}
        raw = params.get("authorization") or params.get("Authorization")
        if raw is not None and not isinstance(raw, str):
            raise ConnectionRejectionError({"message": "authorization must be a string"})
        if isinstance(raw, str) and raw and not raw.lower().startswith("bearer "):
            raw = f"Bearer {raw}"
        try:
            context.claims = await self._runtime.authenticate(raw)
        except NovaError as exc:
            # Closes with 4403; the client refreshes its token and reconnects.
            raise ConnectionRejectionError({"message": str(exc)}) from exc
        return None


def create_app(runtime: GatewayRuntime) -> ASGIApp:
    documents = DocumentCache(
        plain_schema._schema,
        runtime.query_limits,
        runtime.settings.query_document_cache_size,
    )
    runtime.documents = documents
    schema = build_schema([prepared_documents(documents), WebSocketOperationGuard])
    http = GraphQLHTTP(runtime, schema)
    runtime.socket_leases = SocketLeases(runtime.redis, replica=runtime.replica_id)
    policy = WebSocketPolicy(runtime.settings, runtime.revocations, runtime.socket_leases)
    websocket = GraphQLWebSocket(runtime, schema, policy)
    admission = InFlightLimit(
        GraphQLEndpoint(http.handle),
        runtime.settings.gateway_max_in_flight,
        on_shed=runtime.metrics.shed,
    )
    runtime.admission = admission
    site = WebSite(Dist(DIST_DIR), upload_origins=upload_origins(runtime.settings.media_store))
    unsubscribe_tokens = UnsubscribeTokens(runtime.settings.secret_key)
    graphiql = GraphQLEndpoint(site.graphiql_page) if runtime.settings.graphiql else None

    async def jwks(_: Request) -> JSONResponse:
        await runtime.keys.refresh_if_stale()
        return JSONResponse(runtime.keys.jwks(), headers={"Cache-Control": "public, max-age=60"})

    async def healthz(_: Request) -> JSONResponse:
        return JSONResponse({"status": "ok"})

    async def readyz(_: Request) -> JSONResponse:
        checks = await runtime.readiness.check()
        failing = sorted(name for name, result in checks.items() if result != "ok")
        if failing:
            return JSONResponse(
                {"status": "unavailable", "failing": failing, "checks": checks},
                status_code=503,
                headers={"Retry-After": "1"},
            )
        return JSONResponse({"status": "ready", "checks": checks})

    @contextlib.asynccontextmanager
    async def lifespan(_: Starlette) -> AsyncIterator[None]:
        runtime.start_metrics()
        yield
        await policy.close()
        await runtime.close()

    app = Starlette(
        routes=[
            # Exact paths: a mount would answer `/graphql` with a redirect. GET and POST
            # come through `GraphQLFirst`; this route still answers HEAD (which Starlette
            # adds for GET) and gives other methods their 405.
            Route("/graphql", admission, methods=["GET", "POST"]),
            WebSocketRoute("/graphql", websocket),
            Route("/.well-known/jwks.json", jwks),
            Route("/healthz", healthz),
            Route("/readyz", readyz),
            *MediaRoutes(runtime.media).routes(),
            *ExportRoutes(runtime.exports).routes(),
            *UnsubscribeRoutes(runtime.notifications, unsubscribe_tokens).routes(),
            # The web client's routes; they end with a route matching its own paths.
            *site.routes(),
        ],
        lifespan=lifespan,
    )
    app.add_middleware(TraceMiddleware)
    return GraphQLFirst(
        TraceMiddleware(admission),
        app,
        graphiql=TraceMiddleware(graphiql) if graphiql is not None else None,
    )


class GraphQLEndpoint:
    """`handle(request) → response` as an ASGI app, as Starlette's `request_response`
    without its exception handlers (there are none here; `GraphQLFirst` answers what
    escapes)."""

    def __init__(self, handle: Callable[[Request], Awaitable[Response]]) -> None:
        self._handle = handle

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        response = await self._handle(Request(scope, receive, send))
        await response(scope, receive, send)


class GraphQLFirst:
    """GraphQL over HTTP straight to its endpoint; everything else through Starlette.

    Nearly every request is a `POST /graphql`. Starlette's error and exception
    middleware, its router and the route's wrappers cost about 5% of a busy replica's
    time for that one route, so it skips them. An exception escaping the endpoint (a
    bug: the endpoint answers every expected failure itself) is logged and answered with
    a coded 500, as Starlette's error middleware would, in JSON.

    `graphiql`, when given, answers a browser's `GET /graphql` (`gateway.web.wants_graphiql`).
    """

    def __init__(self, graphql: ASGIApp, app: ASGIApp, *, graphiql: ASGIApp | None = None) -> None:
        self._graphql = graphql
        self._app = app
        self._graphiql = graphiql

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or (scope["path"], scope["method"]) not in _GRAPHQL_HTTP:
            await self._app(scope, receive, send)
            return
        if (
            self._graphiql is not None
            and scope["method"] == "GET"
            and wants_graphiql(Request(scope))
        ):
            await self._graphiql(scope, receive, send)
            return
        started = False

        async def tracking_send(message: Message) -> None:
            nonlocal started
            started = True
            await send(message)

        try:
            await self._graphql(scope, receive, tracking_send)
        except Exception:
            log.exception("unexpected error answering %s /graphql", scope["method"])
            if started:
                raise
            await _internal_error(send)


async def _internal_error(send: Send) -> None:
    body = json.dumps(
        {"errors": [{"message": "Unexpected error.", "extensions": {"code": INTERNAL}}]},
        separators=(",", ":"),
    ).encode()
    await send(
        {
            "type": "http.response.start",
            "status": 500,
            "headers": [
                (b"content-type", b"application/json; charset=utf-8"),
                (b"content-length", str(len(body)).encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})
