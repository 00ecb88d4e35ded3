"""graphql-transport-ws as Nova serves it: strawberry's handler, held to what one client
and one token may have open.

Per socket, on top of the protocol:

* **Caps.** A socket takes a lease for its client IP when it opens, and one for its
  account when `connection_init` signs it in (`gateway.transport.ws_caps`: counted across
  replicas). Past `NOVA_WS_MAX_PER_IP` or `NOVA_WS_MAX_PER_USER` it is closed with 1008
  (Policy Violation), before `connection_ack` for an account.
* **Idle anonymous sockets.** A socket that is not signed in and has had no operation
  running for `NOVA_WS_ANONYMOUS_IDLE_S` is closed with 1000, reason "idle". Signed-in
  sockets stay however quiet (they wait for pushes).
* **Revocation.** A signed-in socket watches its token (`Revocations.watch`): when the
  token or its session is revoked on any replica (logout, a password change or reset,
  `revokeSession`), every operation running on it ends at once with an `error` message
  coded `UNAUTHENTICATED`; each new one is refused the same way
  (`gateway.transport.ws_operations`), and the socket gives back its place under the
  account's cap and counts as anonymous from then on (closed once idle).
* **Operations per socket.** At most `MAX_OPERATIONS` at once; the next is refused with
  an `error` message coded `QUERY_TOO_COMPLEX` (`limit: "operations"`).
* **A context per operation.** Every operation gets its own `Context` (and so its own
  DataLoaders) sharing the connection's client and token: an operation never sees what
  an earlier one on the same socket loaded (a post deleted since, a block made since).

Frames larger than `NOVA_MAX_REQUEST_BYTES` are refused below strawberry, by the channel
(`gateway.transport.drain`).
"""

from __future__ import annotations

import asyncio
import contextlib
from contextlib import suppress
from dataclasses import dataclass
from typing import Any

from graphql import GraphQLError
from strawberry.exceptions import ConnectionRejectionError
from strawberry.subscriptions.protocols.graphql_transport_ws.handlers import (
    BaseGraphQLTransportWSHandler,
    Operation,
    _OperationStreamClosed,
)
from strawberry.subscriptions.protocols.graphql_transport_ws.types import (
    CompleteMessage,
    ConnectionInitMessage,
    SubscribeMessage,
)
from strawberry.types.unset import UnsetType
from strawberry.utils.aio import aclosing

from gateway.auth.revocation import Revocations
from gateway.errors import UNAUTHENTICATED
from gateway.limits.query_limits import QUERY_TOO_COMPLEX
from gateway.schema.context import Context
from gateway.settings import GatewaySettings
from gateway.transport.drain import CURRENT_SOCKET
from gateway.transport.ws_caps import Lease, SocketLeases

MAX_OPERATIONS = 100  # operations one socket may have running at once
POLICY_VIOLATION = 1008  # RFC 6455: a cap on sockets
IDLE = 1000  # a normal closure: nothing was going on


@dataclass
class WebSocketPolicy:
    """What every socket of a replica is held to, and the replica's leases."""

    settings: GatewaySettings
    revocations: Revocations
    leases: SocketLeases

    async def close(self) -> None:
        await self.leases.close()


class NovaWebSocketHandler(BaseGraphQLTransportWSHandler[Context, None]):
    """One socket. `view.policy` is the replica's `WebSocketPolicy`."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.policy: WebSocketPolicy = self.view.policy  # type: ignore[attr-defined]
        self._socket = CURRENT_SOCKET.get()
        self._address: Lease | None = None
        self._account: Lease | None = None
        self._unwatch: Any = None
        self._revoked = False
        self._background: set[asyncio.Task[None]] = set()
        self._last_active = asyncio.get_running_loop().time()

    async def handle(self) -> None:
        cap = self.policy.settings.ws_max_per_ip
        lease = await self.policy.leases.take("ip", self.context.client.ip or "unknown", cap)
        if lease is None:
            reason = f"too many WebSockets from this address (at most {cap})"
            await self.websocket.close(code=POLICY_VIOLATION, reason=reason)
            return
        self._address = lease
        self._start(self._close_when_idle())
        try:
            await super().handle()
        finally:
            for task in list(self._background):
                task.cancel()
            if self._unwatch is not None:
                self._unwatch()
            for held in (self._account, self._address):
                if held is not None:
                    await self.policy.leases.release(held)

    async def handle_connection_init(self, message: ConnectionInitMessage) -> None:
        """Strawberry's, with the account's cap and the revocation watch between the
        token's check and `connection_ack`."""
        if self.connection_timed_out:
            return
        if self.connection_init_timeout_task:
            self.connection_init_timeout_task.cancel()
        payload = message.get("payload", {})
        if not isinstance(payload, dict):
            await self.websocket.close(code=4400, reason="Invalid connection init payload")
            return
        if self.connection_init_received:
            await self.websocket.close(code=4429, reason="Too many initialisation requests")
            return
        self.connection_init_received = True
        self.context.connection_params = payload
        try:
            ack_payload = await self.view.on_ws_connect(self.context)
        except ConnectionRejectionError:
            await self.websocket.close(code=4403, reason="Forbidden")
            return
        claims = self.context.claims
        if claims is not None:
            cap = self.policy.settings.ws_max_per_user
            lease = await self.policy.leases.take("user", str(claims.user_id), cap)
            if lease is None:
                reason = f"too many WebSockets for this account (at most {cap})"
                await self.websocket.close(code=POLICY_VIOLATION, reason=reason)
                return
            self._account = lease
            self._unwatch = self.policy.revocations.watch(claims, self._on_revoked)
        if isinstance(ack_payload, UnsetType):
            await self.send_message({"type": "connection_ack"})
        else:
            await self.send_message({"type": "connection_ack", "payload": ack_payload})
        self.connection_acknowledged = True

    async def handle_subscribe(self, message: SubscribeMessage) -> None:
        self._last_active = asyncio.get_running_loop().time()
        if (
            self.connection_acknowledged
            and message["id"] not in self.operations
            and len(self.operations) >= MAX_OPERATIONS
        ):
            error = GraphQLError(
                f"Subscription limit reached: at most {MAX_OPERATIONS} operations at once "
                "on one socket",
                extensions={
                    "code": QUERY_TOO_COMPLEX,
                    "limit": "operations",
                    "max": MAX_OPERATIONS,
                },
            )
            await self.send_message(
                {"id": message["id"], "type": "error", "payload": [error.formatted]}
            )
            return
        await super().handle_subscribe(message)

    async def run_operation(self, operation: Operation[Context, None]) -> None:
        """Strawberry's, with a context of the operation's own."""
        try:
            result_source = await self.schema.stream(
                operation.query,
                variable_values=operation.variables,
                context_value=self.context.for_operation(),
                root_value=self.root_value,
                operation_name=operation.operation_name,
            )
            async with aclosing(result_source):
                await self._send_result_stream(operation, result_source)
            await operation.send_operation_message(
                CompleteMessage(id=operation.id, type="complete")
            )
        except _OperationStreamClosed:
            return
        except Exception as error:
            await self.handle_task_exception(error)
            with suppress(Exception):
                await operation.send_operation_message({"id": operation.id, "type": "complete"})
            self.operations.pop(operation.id, None)
            raise
        finally:
            self._last_active = asyncio.get_running_loop().time()

    def _start(self, work: Any) -> None:
        task = asyncio.get_running_loop().create_task(work)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    def _on_revoked(self) -> None:
        """The socket's token was revoked (called by the revocation mirror)."""
        if not self._revoked:
            self._revoked = True
            self._start(self._end_revoked())

    async def _end_revoked(self) -> None:
        """End every running operation with UNAUTHENTICATED, give back the account's
        place, and treat the socket as anonymous from now on."""
        error = GraphQLError(
            "access token was revoked: reconnect with a fresh one",
            extensions={"code": UNAUTHENTICATED},
        )
        for operation in list(self.operations.values()):
            if operation.task is not None:
                operation.task.cancel()
            with suppress(Exception):
                await operation.send_operation_message(
                    {"id": operation.id, "type": "error", "payload": [error.formatted]}
                )
        if self._account is not None:
            account, self._account = self._account, None
            await self.policy.leases.release(account)
        self._last_active = asyncio.get_running_loop().time()
        self._start(self._close_when_idle())

    def _signed_in(self) -> bool:
        return self.context.claims is not None and not self._revoked

    async def _close_when_idle(self) -> None:
        """Close the socket once it has been anonymous (or its token revoked) and without
        an operation for `ws_anonymous_idle_s`; return as soon as it is signed in."""
        loop = asyncio.get_running_loop()
        idle_s = self.policy.settings.ws_anonymous_idle_s
        while not self._signed_in():
            await asyncio.sleep(max(0.0, self._last_active + idle_s - loop.time()))
            if self._signed_in():
                return
            if self.operations:
                self._last_active = loop.time()
            elif loop.time() - self._last_active >= idle_s:
                await self._close(IDLE, "idle")
                return

    async def _close(self, code: int, reason: str) -> None:
        """Close the socket and stop its handler (its operations end with it)."""
        if self._socket is not None:
            await self._socket.close(code, reason)
        else:
            with contextlib.suppress(Exception):
                await self.websocket.close(code=code, reason=reason)
