"""The web client's pages, its assets and GraphiQL, as Starlette routes.

- `GET /` and the client's own paths (`/login`, `/post/<id>`, `/verify-email?token=…`):
  the app page, `Cache-Control: no-cache`, so a new build reaches browsers at once. A
  path is the client's when a browser navigates to it: GET or HEAD, `Accept` naming
  `text/html`, no file extension, and not an API path. Anything else unknown stays 404.
- `GET /assets/<name>`: a file of the build, named by its content hash, so cached for a
  year as immutable; the precompressed `.gz` when the client takes gzip.
- `GET /graphql` from a browser (`Accept` ranks `text/html` first, no `query`): GraphiQL,
  while `NOVA_GRAPHIQL` is on (`gateway.app.GraphQLFirst` asks `wants_graphiql`).

The pages carry a Content-Security-Policy that allows scripts, styles and connections
to this origin only (and its WebSocket), no framing and no plugins, and
`Referrer-Policy: no-referrer`: the mailed links carry their token in the URL. While the
client is not built, its pages answer 503 with a plain explanation.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

from starlette.datastructures import Headers
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import BaseRoute, Match, NoMatchFound, Route, request_response
from starlette.types import Receive, Scope, Send

from gateway.transport.negotiation import names, prefers_html, weighted
from gateway.web.dist import Dist

__all__ = ["WebSite", "content_security_policy", "wants_graphiql"]

IMMUTABLE = "public, max-age=31536000, immutable"
NOT_BUILT = (
    "Nova's web client is not built. `nova up` builds it (it needs Node.js and npm); so "
    "does `python -m deployments.web_build`. The API is at /graphql.\n"
)
# Paths a page never takes, whatever the request asks for.
_API_PATHS = frozenset({"/graphql", "/healthz", "/readyz"})
_API_PREFIXES = ("/graphql/", "/.well-known/", "/assets/", "/_")
# A Host header as it may appear in a CSP source (host, IPv4, [IPv6], optional port).
_HOST = re.compile(r"^(?:[A-Za-z0-9.-]+|\[[0-9A-Fa-f:.]+\])(?::[0-9]{1,5})?$")
_NOSNIFF = {"X-Content-Type-Options": "nosniff"}


def content_security_policy(
    host: str | None, *, inline_styles: bool = False, upload_origins: Sequence[str] = ()
) -> str:
    """The pages' policy. `'self'` covers the page's own WebSocket in current browsers;
    the explicit ws:/wss: sources cover those that read CSP level 2, where it does not.
    `inline_styles` is for GraphiQL, whose editor injects `<style>` elements; scripts
    stay this origin's only. `upload_origins`: where uploads go when not to Nova (an S3
    bucket's presigned URLs). Video plays from `blob:` URLs when hls.js feeds the player
    through Media Source Extensions."""
    sockets = f" ws://{host} wss://{host}" if host and _HOST.match(host) else ""
    sockets += "".join(f" {origin}" for origin in upload_origins)
    styles = "style-src 'self' 'unsafe-inline'" if inline_styles else "style-src 'self'"
    return "; ".join(
        [
            "default-src 'self'",
            "script-src 'self'",
            styles,
            "img-src 'self' data: https:",
            "font-src 'self' data:",
            "media-src 'self' blob:",
            f"connect-src 'self'{sockets}",
            "frame-ancestors 'none'",
            "base-uri 'none'",
            "object-src 'none'",
            "form-action 'self'",
        ]
    )


def wants_graphiql(request: Request) -> bool:
    """A browser opening `/graphql`: no GraphQL parameter, `text/html` ranked first."""
    params = request.query_params
    return (
        "query" not in params
        and "extensions" not in params
        and prefers_html(request.headers.get("accept"))
    )


def is_client_path(path: str) -> bool:
    """A path the client routes itself: not the API's, no extension in its last segment,
    no trailing slash (Starlette redirects `/chat/` to `/chat`; were `/favicon.ico/` a
    client path, `/favicon.ico` would be redirected to it)."""
    if path in _API_PATHS or path.startswith(_API_PREFIXES) or path.endswith("/"):
        return False
    return "." not in path.rpartition("/")[2]


class WebSite:
    """The routes for the client built into `dist`."""

    def __init__(self, dist: Dist, *, upload_origins: Sequence[str] = ()) -> None:
        self._dist = dist
        self._upload_origins = tuple(upload_origins)

    def routes(self) -> list[BaseRoute]:
        """`/`, `/assets/<name>`, and (last, after every other route) the client's paths."""
        return [
            Route("/", self.app_page, methods=["GET"]),
            Route("/assets/{name}", self.asset, methods=["GET"]),
            ClientPaths(self.app_page),
        ]

    async def app_page(self, request: Request) -> Response:
        return await self._page("app", request)

    async def graphiql_page(self, request: Request) -> Response:
        return await self._page("graphiql", request)

    async def _page(self, page: str, request: Request) -> Response:
        build = await self._dist.current()
        if build is None:
            return PlainTextResponse(
                NOT_BUILT, status_code=503, headers={"Cache-Control": "no-store", **_NOSNIFF}
            )
        return Response(
            build.pages[page],
            media_type="text/html; charset=utf-8",
            headers={
                "Cache-Control": "no-cache",
                "Content-Security-Policy": content_security_policy(
                    request.headers.get("host"),
                    inline_styles=page == "graphiql",
                    upload_origins=self._upload_origins,
                ),
                "Referrer-Policy": "no-referrer",
                **_NOSNIFF,
            },
        )

    async def asset(self, request: Request) -> Response:
        build = await self._dist.current()
        asset = build.assets.get(request.path_params["name"]) if build else None
        if build is None or asset is None:
            raise HTTPException(404)
        headers = {"Cache-Control": IMMUTABLE, **_NOSNIFF}
        path = asset.path
        if asset.gzip_path is not None:
            headers["Vary"] = "Accept-Encoding"
            if _takes_gzip(request.headers.get("accept-encoding")):
                path = asset.gzip_path
                headers["Content-Encoding"] = "gzip"
        body = await build.read(path)
        if body is None:
            raise HTTPException(404)  # a newer build removed it
        return Response(body, media_type=asset.content_type, headers=headers)


class ClientPaths(BaseRoute):
    """Matches a browser's navigation to one of the client's paths (`is_client_path`).

    Anything else does not match at all, so unknown paths keep Starlette's 404 and the
    API's routes their 405s.
    """

    def __init__(self, endpoint: Any) -> None:
        self._app = request_response(endpoint)

    def matches(self, scope: Scope) -> tuple[Match, Scope]:
        if (
            scope["type"] == "http"
            and scope["method"] in ("GET", "HEAD")
            and is_client_path(scope["path"])
            and names(Headers(scope=scope).get("accept"), "text/html")
        ):
            return Match.FULL, {}
        return Match.NONE, {}

    def url_path_for(self, name: str, /, **path_params: Any) -> Any:
        raise NoMatchFound(name, path_params)

    async def handle(self, scope: Scope, receive: Receive, send: Send) -> None:
        await self._app(scope, receive, send)


def _takes_gzip(accept_encoding: str | None) -> bool:
    """Whether `Accept-Encoding` allows gzip (named, or by `*`, with a quality above 0)."""
    codings = dict(weighted(accept_encoding or ""))
    return codings.get("gzip", codings.get("*", 0.0)) > 0
