"""Which requests get a page, which get the API, and what a missing build answers (no stack)."""

from __future__ import annotations

import os
from pathlib import Path

import httpx
import pytest
from starlette.applications import Starlette
from starlette.responses import PlainTextResponse
from starlette.types import Receive, Scope, Send

from deployments.web_build import source_hash
from gateway.app import GraphQLFirst
from gateway.transport.negotiation import prefers_html
from gateway.web import Dist, WebSite
from gateway.web.site import is_client_path

CHROME = "text/html,application/xhtml+xml,application/xml;q=0.9,image/avif,*/*;q=0.8"


@pytest.mark.parametrize(
    ("accept", "expected"),
    [
        (CHROME, True),
        ("text/html", True),
        (None, False),
        ("*/*", False),
        ("application/json", False),
        ("application/graphql-response+json, text/html", False),  # a tie goes to the API
        ("text/html;q=0.5, application/json", False),
    ],
)
def test_prefers_html(accept: str | None, expected: bool) -> None:
    assert prefers_html(accept) is expected


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ("/login", True),
        ("/post/42", True),
        ("/u/ada/followers", True),
        ("/graphql", False),
        ("/graphql/", False),
        ("/healthz", False),
        ("/assets/app.js", False),
        ("/.well-known/jwks.json", False),
        ("/favicon.ico", False),
        ("/robots.txt", False),
        ("/chat/", False),  # Starlette redirects it to /chat
        ("/favicon.ico/", False),
    ],
)
def test_is_client_path(path: str, expected: bool) -> None:
    assert is_client_path(path) is expected


async def _api(scope: Scope, receive: Receive, send: Send) -> None:
    await PlainTextResponse("api", status_code=406)(scope, receive, send)


async def _graphiql(scope: Scope, receive: Receive, send: Send) -> None:
    await PlainTextResponse("graphiql")(scope, receive, send)


async def _call(app: GraphQLFirst, accept: str) -> httpx.Response:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        return await client.get("/graphql", headers={"accept": accept})


async def test_graphiql_switched_off_leaves_browsers_the_apis_answer() -> None:
    on = GraphQLFirst(_api, Starlette(), graphiql=_graphiql)
    off = GraphQLFirst(_api, Starlette(), graphiql=None)
    assert (await _call(on, CHROME)).text == "graphiql"
    assert (await _call(on, "application/json")).text == "api"
    answer = await _call(off, CHROME)
    assert (answer.status_code, answer.text) == (406, "api")


async def test_pages_answer_503_until_the_client_is_built(tmp_path: Path) -> None:
    app = Starlette(routes=WebSite(Dist(tmp_path / "dist")).routes())
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        page = await client.get("/", headers={"accept": CHROME})
        asset = await client.get("/assets/app-123.js")
    assert page.status_code == 503
    assert "not built" in page.text
    assert asset.status_code == 404


async def test_a_new_build_is_served_without_a_restart(tmp_path: Path) -> None:
    dist = tmp_path / "dist"
    (dist / "assets").mkdir(parents=True)
    app = Starlette(routes=WebSite(Dist(dist)).routes())

    def build(marker: str, mtime_ns: int) -> None:
        for page in ("app", "graphiql"):
            (dist / f"{page}.html").write_text(f"<p>{marker}</p>")
        manifest = dist / "manifest.json"
        manifest.write_text("{}")
        os.utime(manifest, ns=(mtime_ns, mtime_ns))

    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        build("one", 1_000_000_000)
        assert "one" in (await client.get("/", headers={"accept": CHROME})).text
        build("two", 2_000_000_000)
        assert "two" in (await client.get("/", headers={"accept": CHROME})).text


def test_source_hash_follows_the_sources_and_nothing_else(tmp_path: Path) -> None:
    client = tmp_path / "client"
    (client / "src").mkdir(parents=True)
    (client / "graphiql").mkdir()
    for name in ("package.json", "package-lock.json", "build.mjs", "app.html"):
        (client / name).write_text(name)
    (client / "src" / "main.jsx").write_text("one")
    first = source_hash(client)
    (client / "node_modules").mkdir()
    (client / "node_modules" / "x.js").write_text("ignored")
    assert source_hash(client) == first
    (client / "src" / "main.jsx").write_text("two")
    assert source_hash(client) != first
