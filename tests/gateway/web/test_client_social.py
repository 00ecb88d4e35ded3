"""The rest of the web client in Chromium: comments, shares, post pages, follower lists,
search, endless scrolling, settings (profile, sessions, password), what it reports to
ranking, persisted queries, and waiting out a rate limit."""

from __future__ import annotations

import json
import re
import uuid
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from playwright.async_api import Browser, Request, Route, expect

from storage.db import Database
from tests.conftest import wait_until
from tests.support.browser import Person, follow, new_context, open_in_feed, post, sign_up
from tests.support.graphql import PASSWORD
from tests.support.graphql import post as post_graphql

pytestmark = pytest.mark.stack

CREATE_POST = "mutation($text: String!) { createPost(input: {text: $text}) { id } }"


async def _create_posts(http_url: str, person: Person, texts: list[str]) -> None:
    """Posts made over the API, as the author's other devices would."""
    token = await person.token()
    for text in texts:
        (await post_graphql(http_url, CREATE_POST, {"text": text}, token=token)).ok()


async def test_comments_shares_followers_and_search(browser: Browser, http_url: str) -> None:
    author = await sign_up(browser, http_url, "writer")
    reader = await sign_up(browser, http_url, "fan")
    tag = f"t{uuid.uuid4().hex[:8]}"
    text = f"A post worth discussing #{tag}"
    try:
        await follow(reader, author)
        await post(author, text)
        card = await open_in_feed(reader, text)

        await card.get_by_role("button", name="Share").click()
        await expect(card.get_by_role("button", name="Share")).to_have_accessible_name("Share 1")
        await card.get_by_role("link", name="Comment").click()
        await expect(reader.page).to_have_url(re.compile(r"/post/"))
        await reader.page.get_by_label("Add a comment").fill("Well said.")
        await reader.page.get_by_role("button", name="Comment", exact=True).click()
        comments = reader.page.get_by_role("region", name="Comments")
        await expect(comments).to_contain_text("Well said.")
        await reader.page.reload()  # it was stored, not only shown
        await expect(reader.page.get_by_role("region", name="Comments")).to_contain_text(
            "Well said."
        )

        await reader.page.goto(f"/u/{author.username}")
        await (
            reader.page.get_by_role("navigation", name="Profile sections")
            .get_by_role("link", name="Followers")
            .click()
        )
        followers = reader.page.get_by_role("region", name="Followers")
        await expect(followers.get_by_text(reader.username).first).to_be_visible()

        await reader.page.goto("/search")
        await reader.page.get_by_label("Search people and posts").fill(f"#{tag}")
        await reader.page.get_by_role("button", name="Search", exact=True).click()
        posts = reader.page.get_by_role("region", name="Posts")
        await expect(posts.get_by_role("article").filter(has_text=text)).to_be_visible()
        await reader.page.get_by_label("Search people and posts").fill(author.username)
        await reader.page.get_by_role("button", name="Search", exact=True).click()
        people = reader.page.get_by_role("region", name="People")
        await expect(people.get_by_text(author.username).first).to_be_visible()
        assert not author.problems + reader.problems
    finally:
        await author.context.close()
        await reader.context.close()


async def test_the_feed_scrolls_on_to_older_pages(browser: Browser, http_url: str) -> None:
    author = await sign_up(browser, http_url, "prolific")
    reader = await sign_up(browser, http_url, "scroller")
    try:
        await follow(reader, author)
        await _create_posts(http_url, author, [f"numbered post {n}" for n in range(25)])
        feed = reader.page.get_by_role("region", name="Feed").get_by_role("article")

        async def all_fanned_out() -> bool:
            await reader.page.goto("/")
            await expect(feed.first).to_be_visible()
            return "numbered post 24" in await feed.first.inner_text()

        await wait_until(all_fanned_out, timeout_s=30, message="the newest post in the feed")
        await expect(feed).to_have_count(20)  # the first page
        await feed.last.scroll_into_view_if_needed()
        await reader.page.mouse.wheel(0, 5000)
        await expect(feed).to_have_count(25)
        await expect(feed.last).to_contain_text("numbered post 0")
    finally:
        await author.context.close()
        await reader.context.close()


async def test_impressions_and_clicks_reach_the_analytics_log(
    browser: Browser, http_url: str, db: Database
) -> None:
    author = await sign_up(browser, http_url, "seen")
    reader = await sign_up(browser, http_url, "looker")
    try:
        await follow(reader, author)
        await _create_posts(http_url, author, ["look at me"])
        card = await open_in_feed(reader, "look at me")
        post_id = await card.get_attribute("data-post-id")
        await card.get_by_role("link", name="Comment").click()  # opens the post: a click
        await expect(reader.page).to_have_url(re.compile(r"/post/"))
        # Leaving the post page in the app ends its dwell; the batch goes within seconds.
        await (
            reader.page.get_by_role("navigation", name="Main")
            .get_by_role("link", name="Search")
            .click()
        )
        user_id = (await reader.page.evaluate("JSON.parse(localStorage['nova.session'])"))["user"][
            "id"
        ]

        async def logged() -> Any:
            rows = await db.fetch(
                "SELECT kind, position, dwell_ms FROM analytics_events "
                "WHERE user_id = $1 AND post_id = $2",
                uuid.UUID(user_id),
                uuid.UUID(str(post_id)),
            )
            kinds = [row["kind"] for row in rows]
            return rows if {"IMPRESSION", "CLICK", "DWELL"} <= set(kinds) else None

        rows = await wait_until(logged, timeout_s=40, message="impression, click and dwell")
        # One impression, where the feed placed it; the post's own page is not one.
        by_kind = {row["kind"]: row for row in rows}
        assert sorted(row["kind"] for row in rows) == ["CLICK", "DWELL", "IMPRESSION"]
        assert by_kind["IMPRESSION"]["position"] == 0
        assert by_kind["CLICK"]["position"] == 0
        assert by_kind["DWELL"]["dwell_ms"] > 0
    finally:
        await author.context.close()
        await reader.context.close()


async def test_queries_are_persisted_and_a_rate_limit_is_waited_out(
    browser: Browser, http_url: str
) -> None:
    person = await sign_up(browser, http_url, "patient")
    sent: list[Request] = []
    person.page.on(
        "request", lambda request: sent.append(request) if "/graphql" in request.url else None
    )
    limited: list[str] = []

    async def limit_once(route: Route) -> None:
        body = route.request.post_data or ""
        if "CreatePost" in body and not limited:
            limited.append(body)
            await route.fulfill(
                status=429,
                headers={"Retry-After": "1", "Content-Type": "application/json"},
                body=json.dumps(
                    {"errors": [{"message": "slow down", "extensions": {"code": "RATE_LIMITED"}}]}
                ),
            )
        else:
            await route.continue_()

    try:
        await person.page.goto("/")
        await expect(person.page.get_by_role("heading", name="Home")).to_be_visible()
        feed_requests = [r for r in sent if "operationName=Feed" in r.url]
        assert feed_requests, [r.url for r in sent]
        params = parse_qs(urlsplit(feed_requests[-1].url).query)
        # A query goes as GET with its hash only: no document text on the wire.
        assert feed_requests[-1].method == "GET"
        assert "query" not in params
        assert json.loads(params["extensions"][0])["persistedQuery"]["sha256Hash"]

        await person.page.route("**/graphql*", limit_once)
        await person.page.get_by_label("What's happening?").fill("posted after a wait")
        await person.page.get_by_role("button", name="Post", exact=True).click()
        await expect(
            person.page.get_by_text("Too many requests: trying again in 1 s.")
        ).to_be_visible()
        await expect(
            person.page.get_by_role("article").filter(has_text="posted after a wait")
        ).to_have_count(1)
        assert limited
    finally:
        await person.context.close()


async def test_settings_change_the_profile_end_other_sessions_and_the_password(
    browser: Browser, http_url: str
) -> None:
    person = await sign_up(browser, http_url, "owner")
    elsewhere = await new_context(browser, http_url)
    other = await elsewhere.new_page()
    fresh = await new_context(browser, http_url)
    try:
        await other.goto("/login")
        await other.get_by_label("Email or username").fill(person.username)
        await other.get_by_label("Password", exact=True).fill(PASSWORD)
        await other.get_by_role("button", name="Log in").click()
        await expect(other.get_by_role("heading", name="Home")).to_be_visible()

        page = person.page
        await page.goto("/settings")
        await page.get_by_label("Display name").fill("Ada Lovelace")
        await page.get_by_role("button", name="Save profile").click()
        await expect(page.get_by_text("Profile saved.")).to_be_visible()
        await page.goto(f"/u/{person.username}")
        await expect(page.get_by_role("heading", name="Ada Lovelace")).to_be_visible()

        # Signing the other device out ends its session: its next screen is the login.
        await page.goto("/settings")
        sessions = page.get_by_role("region", name="Where you're signed in")
        await expect(sessions.get_by_role("listitem")).to_have_count(2)
        await sessions.get_by_role(
            "button", name=re.compile(r"^Sign out (?!of this device)")
        ).click()
        await expect(sessions.get_by_role("listitem")).to_have_count(1)
        await other.goto("/settings")
        await expect(other).to_have_url(re.compile(r"/login"))

        await page.get_by_label("Current password").fill(PASSWORD)
        await page.get_by_label("New password").fill("another good passphrase")
        await page.get_by_role("button", name="Change password").click()
        await expect(page.get_by_role("status").filter(has_text="assword")).to_be_visible()
        login = await fresh.new_page()
        await login.goto("/login")
        await login.get_by_label("Email or username").fill(person.username)
        await login.get_by_label("Password", exact=True).fill("another good passphrase")
        await login.get_by_role("button", name="Log in").click()
        await expect(login.get_by_role("heading", name="Home")).to_be_visible()
    finally:
        await person.context.close()
        await elsewhere.close()
        await fresh.close()
