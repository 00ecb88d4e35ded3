"""Operations sent over a WebSocket get the checks an HTTP request gets.

graphql-transport-ws carries queries and mutations as well as subscriptions, and a client
that already holds a socket (every chat client does) sends through it: no new request
through Serve's HTTP proxy per message (on a 2-core node, four sockets sent 164
`sendMessage` calls a second where HTTP managed about 25). The HTTP endpoint authenticates and
charges rate limits per request (`gateway.transport.http`); a socket authenticates once, at
`connection_init`. Without this extension every later operation on it would run without
a rate limit, and after its access token expired or was revoked (logout, password reset).

So, per operation on a socket, before it executes:

* the access token the socket was opened with must not have expired, nor been revoked;
  otherwise the operation fails with UNAUTHENTICATED, and the client reconnects with a
  fresh token (subscriptions already running keep running past the token's expiry; a
  revocation ends them at once: `gateway.transport.ws_handler`);
* the same budgets as HTTP are charged: per IP, and per user when signed in; mutations
  from the mutation budgets, queries and new subscriptions from the query budgets. A
  spent budget fails the operation with RATE_LIMITED and `retryAfter`.

Parsing, validation and the query limits already apply to both paths
(`gateway.transport.documents`).
"""

from __future__ import annotations

from collections.abc import AsyncIterator

from starlette.websockets import WebSocket
from strawberry.extensions import SchemaExtension
from strawberry.types.graphql import OperationType

from gateway.errors import Unauthenticated
from gateway.schema.context import Context


class WebSocketOperationGuard(SchemaExtension):
    async def on_execute(self) -> AsyncIterator[None]:  # type: ignore[override]
        context = self.execution_context.context
        if isinstance(context, Context) and isinstance(context.request, WebSocket):
            await _admit(context, self.execution_context.operation_type)
        yield


async def _admit(context: Context, operation: OperationType) -> None:
    runtime = context.runtime
    claims = context.claims
    if claims is not None and not claims.live(runtime.settings.jwt_leeway_s):
        raise Unauthenticated("the access token has expired: reconnect with a fresh one")
    await runtime.admit(context.client.ip, claims, mutation=operation is OperationType.MUTATION)
