"""What resolvers see as `info.context`: one per HTTP request or WebSocket operation."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

from strawberry.dataloader import DataLoader

from gateway.auth.identity import ClientInfo
from gateway.auth.tokens import AccessClaims
from gateway.errors import Unauthenticated
from gateway.runtime import GatewayRuntime
from gateway.schema.loaders import Loaders
from storage.repositories.users import UserRecord


@dataclass
class Context:
    """What resolvers see as `info.context`, one per request or WebSocket operation.

    A WebSocket connection has one of its own, which `connection_init` signs in; each
    operation on the socket runs with `for_operation()`, so its DataLoaders (posts,
    counts, blocks, rooms) start empty and never serve what an earlier operation loaded."""

    runtime: GatewayRuntime
    client: ClientInfo
    claims: AccessClaims | None = None
    request: Any = None
    response: Any = None
    # graphql-transport-ws puts the connection_init payload here.
    connection_params: dict[str, Any] | None = None
    _user_loader: DataLoader[uuid.UUID, UserRecord | None] | None = None
    _loaders: Loaders | None = None

    @property
    def users(self) -> DataLoader[uuid.UUID, UserRecord | None]:
        if self._user_loader is None:
            self._user_loader = self.runtime.users.loader()
        return self._user_loader

    def for_operation(self) -> Context:
        """A context for one operation on this connection: its client, token and socket,
        with DataLoaders of its own."""
        return Context(
            runtime=self.runtime,
            client=self.client,
            claims=self.claims,
            request=self.request,
            response=self.response,
            connection_params=self.connection_params,
        )

    def reset_loaders(self) -> None:
        """Forget what this context's DataLoaders cached (a subscription, per event)."""
        self._loaders = None
        self._user_loader = None

    @property
    def loaders(self) -> Loaders:
        if self._loaders is None:
            self._loaders = Loaders(self.runtime, self.viewer_id)
        return self._loaders

    @property
    def viewer_id(self) -> uuid.UUID | None:
        return self.claims.user_id if self.claims else None

    def require_user(self) -> AccessClaims:
        if self.claims is None:
            raise Unauthenticated("sign in first (Authorization: Bearer <access token>)")
        return self.claims

    def has_role(self, role: str) -> bool:
        return self.claims is not None and role in self.claims.roles
