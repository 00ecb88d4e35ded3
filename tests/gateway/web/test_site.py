"""The web client as HTTP serves it: pages, deep links, hashed assets, GraphiQL for browsers,
and the API's own answers left as they were."""

from __future__ import annotations

import json

import httpx
import pytest

from gateway.web import DIST_DIR
from gateway.web.site import content_security_policy
from storage.media_store import upload_origins

pytestmark = pytest.mark.stack

BROWSER_ACCEPT = "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"


def _page_assets(page: str) -> dict[str, str]:
    """The page's script and stylesheet, as the build's manifest names them."""
    assets: dict[str, str] = json.loads((DIST_DIR / "manifest.json").read_text())["pages"][page]
    return assets


async def _get(url: str, **headers: str) -> httpx.Response:
    async with httpx.AsyncClient(timeout=10) as client:
        return await client.get(url, headers=headers)


async def test_root_serves_the_app_page_with_its_security_headers(http_url: str) -> None:
    response = await _get(f"{http_url}/", accept=BROWSER_ACCEPT)
    assert response.status_code == 200
    assert response.headers["content-type"] == "text/html; charset=utf-8"
    assert response.headers["cache-control"] == "no-cache"
    assert response.headers["referrer-policy"] == "no-referrer"
    assert response.headers["x-content-type-options"] == "nosniff"
    policy = response.headers["content-security-policy"]
    assert "script-src 'self'" in policy
    assert "frame-ancestors 'none'" in policy
    assert "media-src 'self' blob:" in policy  # hls.js feeds the player from blob: URLs
    assert '<div id="app"' in response.text
    # No CDN: every script and stylesheet the page names is one of Nova's own assets.
    assert "https://" not in response.text
    assert "http://" not in response.text


@pytest.mark.parametrize(
    "path", ["/login", "/verify-email?token=abc", "/reset-password?token=abc", "/post/123"]
)
async def test_a_browser_navigating_to_a_client_path_gets_the_app_page(
    http_url: str, path: str
) -> None:
    response = await _get(f"{http_url}{path}", accept=BROWSER_ACCEPT)
    assert response.status_code == 200
    assert '<div id="app"' in response.text


async def test_unknown_paths_stay_404_for_everything_but_a_browser_page(http_url: str) -> None:
    # A file-like path, or a client that asks for JSON, gets the 404 it always got.
    assert (await _get(f"{http_url}/favicon.ico", accept=BROWSER_ACCEPT)).status_code == 404
    assert (await _get(f"{http_url}/login", accept="application/json")).status_code == 404
    assert (await _get(f"{http_url}/.well-known/nope", accept=BROWSER_ACCEPT)).status_code == 404


async def test_assets_are_immutable_precompressed_and_typed(http_url: str) -> None:
    script = _page_assets("app")["script"].removeprefix("/assets/")
    plain = (DIST_DIR / "assets" / script).read_bytes()
    async with httpx.AsyncClient(timeout=10) as client:
        zipped = await client.get(
            f"{http_url}/assets/{script}", headers={"accept-encoding": "gzip"}
        )
        identity = await client.get(
            f"{http_url}/assets/{script}", headers={"accept-encoding": "identity"}
        )
    for response in (zipped, identity):
        assert response.status_code == 200
        assert response.headers["content-type"] == "text/javascript; charset=utf-8"
        assert response.headers["cache-control"] == "public, max-age=31536000, immutable"
        assert response.headers["x-content-type-options"] == "nosniff"
        assert response.headers["vary"] == "Accept-Encoding"
    assert zipped.headers["content-encoding"] == "gzip"
    assert len(zipped.content) == len(plain)  # httpx decoded it
    assert zipped.content == plain
    sent = int(zipped.headers["content-length"])
    assert sent == (DIST_DIR / "assets" / f"{script}.gz").stat().st_size < len(plain)
    assert "content-encoding" not in identity.headers
    assert identity.content == plain


@pytest.mark.parametrize(
    "path",
    ["/assets/nope-123.js", "/assets/..%2Fapp.html", "/assets/%2E%2E/manifest.json"],
)
async def test_assets_outside_the_build_are_404(http_url: str, path: str) -> None:
    assert (await _get(f"{http_url}{path}")).status_code == 404


async def test_a_browser_opening_graphql_gets_graphiql(http_url: str) -> None:
    response = await _get(f"{http_url}/graphql", accept=BROWSER_ACCEPT)
    assert response.status_code == 200
    assert response.headers["content-type"] == "text/html; charset=utf-8"
    assert response.headers["referrer-policy"] == "no-referrer"
    assert "graphiql" in response.text.lower()
    for asset in _page_assets("graphiql").values():
        assert asset in response.text


async def test_graphql_get_for_api_clients_is_unchanged(http_url: str) -> None:
    # A query in the URL runs, even from a browser; JSON clients never see the page.
    ran = await _get(f"{http_url}/graphql?query=%7BserverTime%7D", accept=BROWSER_ACCEPT)
    assert ran.status_code == 200
    assert "serverTime" in ran.json()["data"]
    refused = await _get(f"{http_url}/graphql", accept="application/json")
    assert refused.status_code == 400
    assert (await _get(f"{http_url}/graphql", accept="image/png")).status_code == 406


def test_uploads_to_a_bucket_are_allowed_by_the_pages_policy() -> None:
    bucket = "s3://media/nova?endpoint=http://127.0.0.1:9000"
    policy = content_security_policy("127.0.0.1:8000", upload_origins=upload_origins(bucket))
    connect = next(part for part in policy.split("; ") if part.startswith("connect-src"))
    assert "http://127.0.0.1:9000" in connect.split()
    aws = upload_origins("s3://media?region=eu-west-1")
    assert aws == ("https://media.s3.eu-west-1.amazonaws.com", "https://s3.eu-west-1.amazonaws.com")
    assert upload_origins("/var/lib/nova/media") == ()  # uploads go through Nova
