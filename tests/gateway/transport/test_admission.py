"""Load shedding (`gateway.transport.admission.InFlightLimit`) on a real ASGI app: past the limit a
request is answered 503 with `Retry-After` and never reaches the handler; once requests
finish, new ones are served again. No servers needed."""

from __future__ import annotations

import asyncio

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route, request_response

from gateway.transport.admission import InFlightLimit


class Handler:
    """An endpoint that holds each request until released, counting what it served."""

    def __init__(self) -> None:
        self.release = asyncio.Event()
        self.entered = 0
        self.served = 0

    async def __call__(self, _: Request) -> JSONResponse:
        self.entered += 1
        await self.release.wait()
        self.served += 1
        return JSONResponse({"data": {"ok": True}})


def build(limit: int) -> tuple[Handler, InFlightLimit, list[int], httpx.AsyncClient]:
    handler = Handler()
    shed_calls: list[int] = []
    admission = InFlightLimit(
        request_response(handler), limit, on_shed=lambda: shed_calls.append(1)
    )
    app = Starlette(routes=[Route("/graphql", admission, methods=["GET", "POST"])])
    client = httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t")
    return handler, admission, shed_calls, client


async def wait_for(predicate: object, timeout_s: float = 5.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout_s
    while not predicate():  # type: ignore[operator]
        assert asyncio.get_running_loop().time() < deadline, "condition not reached"
        await asyncio.sleep(0.005)


async def test_requests_beyond_the_limit_are_refused_at_once_and_others_recover() -> None:
    handler, admission, shed_calls, client = build(limit=3)
    async with client:
        held = [asyncio.create_task(client.post("/graphql", json={})) for _ in range(3)]
        await wait_for(lambda: handler.entered == 3)
        assert admission.in_flight == 3

        refused = await asyncio.wait_for(client.post("/graphql", json={}), 2)
        assert refused.status_code == 503
        assert refused.headers["retry-after"] == "1"
        error = refused.json()["errors"][0]
        assert error["extensions"]["code"] == "UNAVAILABLE"
        assert error["extensions"]["retryAfter"] == 1
        assert handler.entered == 3, "a refused request must not reach the handler"
        assert admission.shed == 1
        assert shed_calls == [1]

        handler.release.set()
        answered = await asyncio.gather(*held)
        assert [r.status_code for r in answered] == [200, 200, 200]
        assert admission.in_flight == 0

        again = await client.post("/graphql", json={})
        assert again.status_code == 200
        assert handler.served == 4


async def test_a_failing_handler_frees_its_slot() -> None:
    async def boom(_: Request) -> JSONResponse:
        raise RuntimeError("handler failed")

    admission = InFlightLimit(request_response(boom), 1)
    app = Starlette(routes=[Route("/graphql", admission, methods=["POST"])])
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
        for _ in range(3):
            response = await client.post("/graphql", json={})
            assert response.status_code == 500
    assert admission.in_flight == 0
    assert admission.shed == 0


def test_a_limit_below_one_is_refused() -> None:
    with pytest.raises(ValueError, match="at least 1"):
        InFlightLimit(request_response(Handler()), 0)
