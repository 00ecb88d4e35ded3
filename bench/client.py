"""Web client benchmark: what the client adds to the API it calls, in headless Chromium.

    cd /work/main && .venv/bin/python -m bench.client [--runs 50]

Needs the dev stack started with `bench/bench.env` (see docs/benchmarks.md) and the web
client built (`nova up` builds it). Two people: an author with a page of posts and a
reader who follows them, signed in to the client in Debian's Chromium.

- **First feed page**: navigation to `/` → the first post of the home feed rendered
  (timed in the page, from its navigation start, by a MutationObserver), over `--runs`
  navigations of a returning visitor (the hashed assets come from the browser's cache,
  the page itself is revalidated). Baselines: the `feed` query the page sends, alone,
  over HTTP; and the browser's floor for any page, a navigation to a document that runs
  nothing (`/healthz`) to its load event, plus that query.
- **A new post reaches the reader**: `createPost` by the author (over HTTP) → the "new
  posts" banner shown in the reader's page, fed by `feedUpdated`. Baseline, the same
  posts: `createPost` → the `feedUpdated` push on a bare graphql-transport-ws connection
  of the same reader.

Ratios: client p50/p99 over the raw API's. Also: the client's bundle, compressed, as
served. Bounded in count and time.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import sys
import time
import uuid
from typing import Any

import httpx
import websockets
from playwright.async_api import Page, async_playwright

from bench.goals import Goal
from bench.harness import StackNotUp, graphql, load_stack_env, ratio, summarize
from deployments.stack import dev_layout
from deployments.stack.debian import CHROMIUM, CHROMIUM_ARGS
from gateway.web import DIST_DIR

SCENARIO = "client"
PASSWORD = "correct horse battery"
REGISTER = """
mutation($input: RegisterInput!) { register(input: $input) { accessToken user { id } } }
"""
FOLLOW = "mutation($id: ID!) { follow(userId: $id) }"
CREATE_POST = "mutation($text: String!) { createPost(input: {text: $text}) { id } }"
# The fields the client's first page asks for (gateway/web/client/src/gql.js: FEED).
FEED = """
query($first: Int!) {
  feed(mode: LATEST, first: $first) {
    edges { cursor score modelVersion node {
      id text tags createdAt editedAt likeCount commentCount shareCount viewerHasLiked
      author { id username displayName avatarUrl }
      sharedPost { id text createdAt author { id username displayName avatarUrl } }
    } }
    pageInfo { hasNextPage endCursor }
  }
}
"""
FEED_UPDATED = "subscription { feedUpdated { postId } }"
FIRST_PAGE = 20
STEP_TIMEOUT_S = 20.0
# Installed in every page before its scripts: the first feed post's render time (ms since
# navigation start), and the wall-clock time the banner first showed each count.
OBSERVER = """
window.__bench = { firstPostMs: null, banner: {} };
new MutationObserver(() => {
  if (window.__bench.firstPostMs === null &&
      document.querySelector('section[aria-label="Feed"] article')) {
    window.__bench.firstPostMs = performance.now();
  }
  const banner = document.querySelector("button.banner");
  const count = banner && parseInt(banner.textContent, 10);
  if (count && !(count in window.__bench.banner)) {
    window.__bench.banner[count] = performance.timeOrigin + performance.now();
  }
}).observe(document, { childList: true, subtree: true, characterData: true });
"""


class Account:
    def __init__(self, user_id: str, username: str, token: str) -> None:
        self.user_id, self.username, self.token = user_id, username, token


async def register(http: httpx.AsyncClient, prefix: str) -> Account:
    username = f"{prefix}_{uuid.uuid4().hex[:10]}"
    credentials = {"email": f"{username}@example.com", "username": username, "password": PASSWORD}
    data = await graphql(http, "", None, REGISTER, {"input": credentials})
    return Account(data["register"]["user"]["id"], username, data["register"]["accessToken"])


async def until(predicate: Any, what: str, timeout_s: float = STEP_TIMEOUT_S) -> Any:
    deadline = time.monotonic() + timeout_s
    while (value := await predicate()) is None or value is False:
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what}: not within {timeout_s:.0f}s")
        await asyncio.sleep(0.02)
    return value


async def sign_in(page: Page, account: Account) -> None:
    await page.goto("/login")
    await page.get_by_label("Email or username").fill(account.username)
    await page.get_by_label("Password", exact=True).fill(PASSWORD)
    await page.get_by_role("button", name="Log in").click()
    await page.get_by_role("heading", name="Home").wait_for(timeout=STEP_TIMEOUT_S * 1000)


async def first_page(
    page: Page, http: httpx.AsyncClient, reader: Account, runs: int
) -> dict[str, Any]:
    client_ms: list[float] = []
    for _ in range(runs):
        await page.goto("/", wait_until="commit")
        await page.wait_for_function(
            "() => window.__bench && window.__bench.firstPostMs !== null",
            timeout=STEP_TIMEOUT_S * 1000,
        )
        client_ms.append(await page.evaluate("window.__bench.firstPostMs"))
    raw_ms: list[float] = []
    for _ in range(runs):
        started = time.perf_counter()
        await graphql(http, "", reader.token, FEED, {"first": FIRST_PAGE})
        raw_ms.append((time.perf_counter() - started) * 1000)
    # The browser's own floor: navigating to a document that runs nothing (`/healthz`,
    # through the same Serve proxy), to its load event.
    blank_ms: list[float] = []
    for _ in range(runs):
        await page.goto("/healthz", wait_until="load")
        blank_ms.append(
            await page.evaluate("performance.getEntriesByType('navigation')[0].loadEventEnd")
        )
    return {
        "client_ms": summarize(client_ms),
        "raw_feed_query_ms": summarize(raw_ms),
        "blank_navigation_ms": summarize(blank_ms),
    }


async def feed_pushes(url: str, token: str, pushed: dict[str, float], ready: asyncio.Event) -> None:
    async with websockets.connect(url, subprotocols=["graphql-transport-ws"]) as ws:  # type: ignore[list-item]
        init = {"type": "connection_init", "payload": {"authorization": f"Bearer {token}"}}
        await ws.send(json.dumps(init))
        if json.loads(await asyncio.wait_for(ws.recv(), 30)).get("type") != "connection_ack":
            raise RuntimeError("the bare subscriber was not acknowledged")
        await ws.send(
            json.dumps({"id": "1", "type": "subscribe", "payload": {"query": FEED_UPDATED}})
        )
        ready.set()
        async for raw in ws:
            message = json.loads(raw)
            if message.get("type") == "next":
                pushed[message["payload"]["data"]["feedUpdated"]["postId"]] = time.time() * 1000


async def new_posts(
    page: Page, http: httpx.AsyncClient, author: Account, reader: Account, ws_url: str, runs: int
) -> dict[str, Any]:
    pushed: dict[str, float] = {}
    ready = asyncio.Event()
    subscriber = asyncio.create_task(feed_pushes(ws_url, reader.token, pushed, ready))
    await page.goto("/")
    await page.get_by_role("region", name="Feed").get_by_role("article").first.wait_for()
    await asyncio.wait_for(ready.wait(), STEP_TIMEOUT_S)
    await asyncio.sleep(1.0)  # the page's own subscription is started by then
    client_ms: list[float] = []
    raw_ms: list[float] = []
    try:
        for n in range(1, runs + 1):
            started = time.time() * 1000
            post_id = (
                await graphql(http, "", author.token, CREATE_POST, {"text": f"bench post {n}"})
            )["createPost"]["id"]

            async def shown(count: int = n) -> float | None:
                value = await page.evaluate(f"window.__bench.banner[{count}] ?? null")
                return float(value) if value is not None else None

            async def arrived(key: str = post_id) -> float | None:
                return pushed.get(key)

            client_ms.append(await until(shown, f"banner for post {n}") - started)
            raw_ms.append(await until(arrived, f"feedUpdated for post {n}") - started)
            await asyncio.sleep(0.15)  # the author's mutation budget is 10/s
    finally:
        subscriber.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await subscriber
    return {"client_ms": summarize(client_ms), "raw_feed_updated_ms": summarize(raw_ms)}


def bundle() -> dict[str, Any]:
    """The app page's script and stylesheet as served (gzip) and before compression."""
    manifest = json.loads((DIST_DIR / "manifest.json").read_text())
    names = [path.removeprefix("/assets/") for path in manifest["pages"]["app"].values()]
    sizes = {name: manifest["sizes"][name] for name in names}
    return {
        "files": sizes,
        "total_gzip_bytes": sum(size["gzip"] for size in sizes.values()),
        "total_bytes": sum(size["bytes"] for size in sizes.values()),
    }


def client_goals(navigation: dict[str, Any], live: dict[str, Any]) -> list[Goal]:
    """The first feed post rendered over the least any page could do (a blank navigation
    plus the same query), and the new-posts banner over the bare `feedUpdated` push."""
    blank, query = navigation["blank_navigation_ms"]["p50"], navigation["raw_feed_query_ms"]["p50"]
    return [
        Goal(
            "navigation to / until the first feed post is rendered, p50",
            navigation["client_ms"]["p50"],
            None if blank is None or query is None else blank + query,
            "ms",
            "blank navigation plus the feed query alone, p50",
        ),
        *(
            Goal(
                f"createPost until the new-posts banner shows, {q}",
                live["client_ms"][q],
                live["raw_feed_updated_ms"][q],
                "ms",
                f"createPost until feedUpdated on a bare socket, {q}",
            )
            for q in ("p50", "p99")
        ),
    ]


async def run(runs: int) -> dict[str, Any]:
    port = dev_layout().http_port
    base = f"http://127.0.0.1:{port}"
    async with httpx.AsyncClient(base_url=base, timeout=30) as http:
        author = await register(http, "bench_author")
        reader = await register(http, "bench_reader")
        await graphql(http, "", reader.token, FOLLOW, {"id": author.user_id})
        for n in range(FIRST_PAGE):
            await graphql(http, "", author.token, CREATE_POST, {"text": f"first page post {n}"})

        async def page_full() -> bool:
            data = await graphql(http, "", reader.token, FEED, {"first": FIRST_PAGE})
            return len(data["feed"]["edges"]) >= FIRST_PAGE

        await until(page_full, "the reader's first page", timeout_s=60)
        async with async_playwright() as playwright:
            browser = await playwright.chromium.launch(
                executable_path=str(CHROMIUM), args=list(CHROMIUM_ARGS)
            )
            try:
                context = await browser.new_context(base_url=base)
                await context.add_init_script(OBSERVER)
                page = await context.new_page()
                await sign_in(page, reader)
                navigation = await first_page(page, http, reader, runs)
                live = await new_posts(
                    page, http, author, reader, f"ws://127.0.0.1:{port}/graphql", runs
                )
            finally:
                await browser.close()
    return {
        "runs": runs,
        "first_feed_page": navigation,
        "new_post_visible": live,
        "bundle": bundle(),
        "ratios": {
            "first_page_p50_over_raw": ratio(
                navigation["client_ms"]["p50"], navigation["raw_feed_query_ms"]["p50"]
            ),
            "first_page_p99_over_raw": ratio(
                navigation["client_ms"]["p99"], navigation["raw_feed_query_ms"]["p99"]
            ),
            # Against the least any page could do: a navigation, then the same query.
            "first_page_p50_over_navigation_plus_query": ratio(
                navigation["client_ms"]["p50"],
                navigation["blank_navigation_ms"]["p50"] + navigation["raw_feed_query_ms"]["p50"],
            ),
            "new_post_p50_over_raw": ratio(
                live["client_ms"]["p50"], live["raw_feed_updated_ms"]["p50"]
            ),
            "new_post_p99_over_raw": ratio(
                live["client_ms"]["p99"], live["raw_feed_updated_ms"]["p99"]
            ),
        },
        "goals": [g.to_dict() for g in client_goals(navigation, live)],
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=50)
    args = parser.parse_args()
    try:
        load_stack_env()
    except StackNotUp as exc:
        print(exc, file=sys.stderr)
        return 2
    from bench.harness import report

    report(SCENARIO, asyncio.run(asyncio.wait_for(run(args.runs), timeout=900)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
