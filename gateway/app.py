"""The gateway's ASGI application: `/graphql` (HTTP and WebSocket), `/healthz`, `/readyz`."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import redis.asyncio as aioredis
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route, WebSocketRoute
from strawberry.asgi import GraphQL
from strawberry.subscriptions import GRAPHQL_TRANSPORT_WS_PROTOCOL

from gateway.health import KafkaProbe, Readiness
from gateway.schema import schema
from gateway.tracing import TraceMiddleware
from storage.config import Settings
from storage.db import Database
from storage.redis_client import make_redis


@dataclass
class GatewayRuntime:
    """Per-replica resources shared by every request."""

    settings: Settings
    db: Database
    redis: aioredis.Redis
    kafka_probe: KafkaProbe
    closed: bool = False

    @classmethod
    async def start(cls, settings: Settings) -> GatewayRuntime:
        db = await Database.connect(settings, application_name="nova-gateway")
        return cls(settings, db, make_redis(settings), KafkaProbe(settings))

    @property
    def readiness(self) -> Readiness:
        return Readiness(self.db, self.redis, self.kafka_probe, self.settings.readiness_timeout_s)

    async def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        await self.kafka_probe.close()
        await self.redis.aclose()
        await self.db.close()


class NovaGraphQL(GraphQL[dict[str, Any], None]):
    def __init__(self, runtime: GatewayRuntime) -> None:
        super().__init__(schema, subscription_protocols=[GRAPHQL_TRANSPORT_WS_PROTOCOL])
        self._runtime = runtime

    async def get_context(self, request: Any, response: Any) -> dict[str, Any]:
        return {"request": request, "response": response, "runtime": self._runtime}


def create_app(runtime: GatewayRuntime) -> Starlette:
    graphql = NovaGraphQL(runtime)

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
        yield
        await runtime.close()

    app = Starlette(
        routes=[
            # Exact paths: a mount would answer `/graphql` with a redirect.
            Route("/graphql", graphql, methods=["GET", "POST"]),
            WebSocketRoute("/graphql", graphql),
            Route("/healthz", healthz),
            Route("/readyz", readyz),
        ],
        lifespan=lifespan,
    )
    app.add_middleware(TraceMiddleware)
    return app
