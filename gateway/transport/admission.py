"""Load shedding: a replica works on at most N GraphQL HTTP requests at once.

An asyncio replica never refuses work by itself: past what its core can serve, every
request joins the same queue and everyone's latency grows until clients time out and
retry, which adds more. Past the limit, this answers 503 with `Retry-After` at once, for
almost no work, so the requests already admitted keep their latency and a client (or a
load balancer) can go elsewhere or come back. WebSockets are not counted: they are long
lived, and their operations pay the rate limits instead.
"""

from __future__ import annotations

import json
from collections.abc import Callable

from starlette.types import ASGIApp, Receive, Scope, Send

from gateway.errors import UNAVAILABLE

_RETRY_AFTER_S = 1


class InFlightLimit:
    """ASGI wrapper refusing HTTP requests beyond `limit` in flight."""

    def __init__(
        self, app: ASGIApp, limit: int, *, on_shed: Callable[[], None] | None = None
    ) -> None:
        if limit < 1:
            raise ValueError("the in-flight limit must be at least 1")
        self.app = app
        self.limit = limit
        self.in_flight = 0
        self.shed = 0
        self._on_shed = on_shed
        self._refusal = json.dumps(
            {
                "errors": [
                    {
                        "message": "the gateway is overloaded; retry shortly",
                        "extensions": {"code": UNAVAILABLE, "retryAfter": _RETRY_AFTER_S},
                    }
                ]
            },
            separators=(",", ":"),
        ).encode()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        if self.in_flight >= self.limit:
            self.shed += 1
            if self._on_shed is not None:
                self._on_shed()
            await self._refuse(send)
            return
        self.in_flight += 1
        try:
            await self.app(scope, receive, send)
        finally:
            self.in_flight -= 1

    async def _refuse(self, send: Send) -> None:
        await send(
            {
                "type": "http.response.start",
                "status": 503,
                "headers": [
                    (b"content-type", b"application/json; charset=utf-8"),
                    (b"content-length", str(len(self._refusal)).encode()),
                    (b"retry-after", str(_RETRY_AFTER_S).encode()),
                ],
            }
        )
        await send({"type": "http.response.body", "body": self._refusal})
