"""What resolvers see as `info.context`: one per HTTP request or WebSocket connection."""

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
    """What resolvers see as `info.context`, one per request or WebSocket connection."""

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

    def reset_loaders(self) -> None:
        """Forget what this context's DataLoaders cached (long-lived WebSocket contexts)."""
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
