"""Nova's web client in Debian's Chromium against the test stack, as people use it: two
browsers that follow, post and chat live; the mailed links; a phone-sized screen; the
keyboard alone; an accessibility scan of every main screen; GraphiQL with the caller's
token. Screenshots of the main screens are saved under `build/screenshots/`."""

from __future__ import annotations

import json
import re
import time
import uuid

import pytest
from playwright.async_api import Browser, Page, WebSocketRoute, expect

from deployments.stack import Stack
from tests.support.browser import (
    Person,
    follow,
    link_in,
    new_context,
    post,
    screenshot,
    serious_accessibility_violations,
    sign_up,
)
from tests.support.graphql import PASSWORD
from tests.support.graphql import post as post_graphql
from tests.support.mailbox import wait_for_mail

pytestmark = pytest.mark.stack

NEW_PASSWORD = "a brand new passphrase"
SEND_MESSAGE = """
mutation($room: ID!, $text: String!, $cmid: String!) {
  sendMessage(input: {roomId: $room, text: $text, clientMessageId: $cmid}) { seq }
}
"""


async def _open_room_with(person: Person, other: Person) -> None:
    await person.page.goto("/chat")
    await (
        person.page.get_by_role("navigation", name="Chats")
        .get_by_role("link", name=other.username)
        .click()
    )
    await expect(person.page.get_by_role("heading", name=other.username)).to_be_visible()


async def _send(http_url: str, token: str, room: str, text: str) -> None:
    """A message sent over the API, as another of the sender's devices would."""
    variables = {"room": room, "text": text, "cmid": str(uuid.uuid4())}
    (await post_graphql(http_url, SEND_MESSAGE, variables, token=token)).ok()


async def _no_horizontal_scroll(page: Page) -> None:
    widths = await page.evaluate(
        "[document.documentElement.scrollWidth, document.documentElement.clientWidth]"
    )
    assert widths[0] <= widths[1], f"the page is {widths[0]} px wide on a {widths[1]} px screen"


async def test_two_people_follow_post_and_chat_live(browser: Browser, http_url: str) -> None:
    author = await sign_up(browser, http_url, "author")
    reader = await sign_up(browser, http_url, "reader")
    try:
        await follow(reader, author)
        # The follow reaches the author as a notification, and the badge counts it live.
        await expect(author.page.get_by_test_id("unread-badge")).to_be_visible()

        await reader.page.goto("/")
        await expect(reader.page.get_by_role("heading", name="Home")).to_be_visible()
        text = f"Hello from {author.username}"
        await post(author, text)
        banner = reader.page.get_by_role("button", name="1 new post: show")
        await expect(banner).to_be_visible()
        await banner.click()
        feed = reader.page.get_by_role("region", name="Feed")
        await expect(feed.get_by_role("article").filter(has_text=text)).to_be_visible()
        await screenshot(reader.page, "feed")

        like = feed.get_by_role("article").filter(has_text=text).get_by_role("button", name="Like")
        await like.click()
        await expect(like).to_have_attribute("aria-pressed", "true")
        await expect(like).to_have_accessible_name("Like 1")

        # The reader starts a direct chat; the author opens it from the room list.
        await reader.page.goto("/chat")
        await reader.page.get_by_label("People").fill(author.username)
        await reader.page.get_by_role("button", name="Start chat").click()
        await expect(reader.page.get_by_role("heading", name=author.username)).to_be_visible()
        await reader.page.get_by_label("Message", exact=True).fill("Hi! Loved your post.")
        await reader.page.get_by_role("button", name="Send").click()
        await _open_room_with(author, reader)
        messages = author.page.get_by_role("list", name="Messages")
        await expect(messages).to_contain_text("Hi! Loved your post.")

        # The author types: the reader sees it, then the reply, without reloading.
        await author.page.get_by_label("Message", exact=True).press_sequentially("Thank")
        await expect(reader.page.get_by_text(f"{author.username} is typing…")).to_be_visible()
        await author.page.get_by_label("Message", exact=True).press_sequentially("s, glad!")
        await author.page.get_by_label("Message", exact=True).press("Enter")
        await expect(reader.page.get_by_role("list", name="Messages")).to_contain_text(
            "Thanks, glad!"
        )
        await expect(reader.page.get_by_text(f"Online: {author.username}")).to_be_visible()
        await expect(author.page.get_by_text(f"Seen by {reader.username}")).to_be_visible()
        await screenshot(reader.page, "chat")

        await author.page.goto("/notifications")
        await expect(author.page.get_by_role("heading", name="Notifications")).to_be_visible()
        await expect(author.page.get_by_text(reader.username).first).to_be_visible()
        await screenshot(author.page, "notifications")
        await author.page.goto(f"/u/{author.username}")
        await expect(author.page.get_by_role("article").filter(has_text=text)).to_be_visible()
        await screenshot(author.page, "profile")
        assert not author.problems + reader.problems
    finally:
        await author.context.close()
        await reader.context.close()


async def test_a_chat_resumes_after_its_socket_drops_without_losing_a_message(
    browser: Browser, http_url: str
) -> None:
    sender = await sign_up(browser, http_url, "sender")
    watcher = await sign_up(browser, http_url, "watcher")
    sockets: list[WebSocketRoute] = []

    def through(route: WebSocketRoute) -> None:
        route.connect_to_server()  # frames pass both ways untouched
        sockets.append(route)

    try:
        await watcher.page.route_web_socket("**/graphql", through)
        await sender.page.goto("/chat")
        await sender.page.get_by_label("People").fill(watcher.username)
        await sender.page.get_by_role("button", name="Start chat").click()
        await expect(sender.page.get_by_role("heading", name=watcher.username)).to_be_visible()
        room = sender.page.url.rpartition("/")[2]
        await _send(http_url, await sender.token(), room, "before the drop")
        await watcher.page.goto(f"/chat/{room}")
        messages = watcher.page.get_by_role("list", name="Messages")
        await expect(messages).to_contain_text("before the drop")

        # The watcher's socket drops; what is sent meanwhile arrives once, in order, when
        # the client reconnects and resubscribes after the last seq it showed.
        await sockets[-1].close(code=1001, reason="going away")
        token = await sender.token()
        for n in range(3):
            await _send(http_url, token, room, f"while away {n}")
        await expect(messages.get_by_role("listitem")).to_have_count(4)
        texts = await messages.locator(".text").all_inner_texts()
        assert texts == ["before the drop", "while away 0", "while away 1", "while away 2"]
        assert len(sockets) >= 2, "the client did not reconnect"
        assert not sender.problems + watcher.problems
    finally:
        await sender.context.close()
        await watcher.context.close()


async def test_the_mailed_verification_link_verifies_the_account(
    browser: Browser, http_url: str, stack: Stack
) -> None:
    person = await sign_up(browser, http_url, "verify")
    try:
        mail = await wait_for_mail(
            stack.layout.mail_dir, to=person.email, subject_contains="Verify"
        )
        link = link_in(mail.get_content(), "/verify-email")
        assert link.startswith(f"{http_url}/verify-email?token=")
        await person.page.goto(link)
        await expect(person.page.get_by_text("Your email address is verified.")).to_be_visible()
        # The token leaves the address bar once used.
        assert person.page.url == f"{http_url}/verify-email"
        await person.page.goto("/settings")
        await expect(person.page.get_by_text(f"{person.email} · verified")).to_be_visible()
        await screenshot(person.page, "settings")
    finally:
        await person.context.close()


async def test_a_reset_link_sets_a_new_password(
    browser: Browser, http_url: str, stack: Stack
) -> None:
    person = await sign_up(browser, http_url, "reset")
    await person.context.close()
    context = await new_context(browser, http_url)
    page = await context.new_page()
    try:
        await page.goto("/login")
        await page.get_by_role("link", name="Forgot your password?").click()
        await page.get_by_label("Email", exact=True).fill(person.email)
        await page.get_by_role("button", name="Send me a link").click()
        await expect(
            page.get_by_role("status").filter(has_text="we sent it a link")
        ).to_be_visible()
        mail = await wait_for_mail(stack.layout.mail_dir, to=person.email, subject_contains="Reset")
        await page.goto(link_in(mail.get_content(), "/reset-password"))
        await page.get_by_label("New password").fill(NEW_PASSWORD)
        await page.get_by_role("button", name="Set password").click()
        await expect(page.get_by_text("Your password is changed")).to_be_visible()

        await page.goto("/login")
        await page.get_by_label("Email or username").fill(person.username)
        await page.get_by_label("Password", exact=True).fill(PASSWORD)
        await page.get_by_role("button", name="Log in").click()
        await expect(page.get_by_role("alert")).to_be_visible()  # the old one is refused
        await page.get_by_label("Password", exact=True).fill(NEW_PASSWORD)
        await page.get_by_role("button", name="Log in").click()
        await expect(page.get_by_role("heading", name="Home")).to_be_visible()
    finally:
        await context.close()


async def test_keyboard_alone_logs_in_and_posts(browser: Browser, http_url: str) -> None:
    person = await sign_up(browser, http_url, "keys")
    await person.context.close()
    context = await new_context(browser, http_url)
    page = await context.new_page()
    try:
        await page.goto("/login")
        # Focus starts on the screen's heading; Tab walks the fields in reading order.
        for _ in range(12):
            await page.keyboard.press("Tab")
            if await page.evaluate("document.activeElement.id") == "login":
                break
        await page.keyboard.type(person.username)
        await page.keyboard.press("Tab")
        assert await page.evaluate("document.activeElement.type") == "password"
        await page.keyboard.type(PASSWORD)
        await page.keyboard.press("Enter")
        await expect(page.get_by_role("heading", name="Home")).to_be_visible()
        compose = page.get_by_label("What's happening?")
        for _ in range(20):
            await page.keyboard.press("Tab")
            if await compose.evaluate("element => element === document.activeElement"):
                break
        await page.keyboard.type("typed without a mouse")
        post_button = page.get_by_role("button", name="Post", exact=True)
        for _ in range(5):  # past "Add pictures" to "Post"
            await page.keyboard.press("Tab")
            if await post_button.evaluate("element => element === document.activeElement"):
                break
        await page.keyboard.press("Enter")
        await expect(
            page.get_by_role("article").filter(has_text="typed without a mouse")
        ).to_be_visible()
    finally:
        await context.close()


async def test_a_rejected_access_token_is_refreshed(browser: Browser, http_url: str) -> None:
    person = await sign_up(browser, http_url, "refresh")
    try:
        # A token the server refuses (UNAUTHENTICATED), then one about to expire: each is
        # replaced through the refresh token, without sending the person to the login page.
        for forged_token, expires_at in (("not-a-token", 4_102_444_800_000), (None, 0)):
            # Forged where the client does not run (a JSON document of the same origin), so
            # nothing of the client's writes the session back meanwhile.
            await person.page.goto("/healthz")
            stored = json.loads(await person.page.evaluate("localStorage['nova.session']"))
            sent = forged_token or stored["accessToken"]
            forged = {**stored, "accessToken": sent, "expiresAt": expires_at}
            await person.page.evaluate(
                "value => localStorage.setItem('nova.session', value)", json.dumps(forged)
            )
            await person.page.goto("/settings")
            # The sessions list is a query that only a valid token gets answered.
            sessions = person.page.get_by_role("region", name="Where you're signed in")
            await expect(sessions.get_by_text("This device")).to_be_visible()
            await expect(person.page).to_have_url(re.compile(r"/settings$"))
            renewed = json.loads(await person.page.evaluate("localStorage['nova.session']"))
            assert renewed["accessToken"] not in (sent, stored["accessToken"])
            assert renewed["expiresAt"] > time.time() * 1000
    finally:
        await person.context.close()


async def test_a_360_pixel_screen_has_no_sideways_scrolling(
    browser: Browser, http_url: str
) -> None:
    phone = {"width": 360, "height": 740}
    person = await sign_up(browser, http_url, "phone", viewport=phone, is_mobile=True)
    try:
        await post(person, "Posted from a small screen, with a long unbroken word: " + "x" * 80)
        await _no_horizontal_scroll(person.page)
        await screenshot(person.page, "feed-360px")
        for path in ("/chat", "/search", "/notifications", "/settings", f"/u/{person.username}"):
            await person.page.goto(path)
            await person.page.wait_for_load_state("networkidle")
            await _no_horizontal_scroll(person.page)
    finally:
        await person.context.close()


@pytest.mark.parametrize("scheme", ["light", "dark"])
async def test_main_screens_have_no_serious_accessibility_violations(
    browser: Browser, http_url: str, scheme: str
) -> None:
    # axe is injected as a script of its own, which the pages' CSP would refuse.
    person = await sign_up(browser, http_url, f"axe{scheme}", bypass_csp=True, color_scheme=scheme)
    try:
        await post(person, f"Checking contrast in the {scheme} theme")
        found = {}
        for path in (
            "/",
            "/search",
            "/chat",
            "/notifications",
            "/settings",
            f"/u/{person.username}",
        ):
            await person.page.goto(path)
            await person.page.wait_for_load_state("networkidle")
            found[path] = await serious_accessibility_violations(person.page)
        if scheme == "dark":
            await person.page.goto("/")
            await expect(person.page.get_by_role("article").first).to_be_visible()
            await screenshot(person.page, "feed-dark")
        await person.page.evaluate("localStorage.clear()")
        for path in ("/login", "/signup", "/reset-password"):
            await person.page.goto(path)
            await person.page.wait_for_load_state("networkidle")
            found[path] = await serious_accessibility_violations(person.page)
            if path == "/login" and scheme == "light":
                await screenshot(person.page, "login")
        assert not any(found.values()), json.dumps(found, indent=2)
    finally:
        await person.context.close()


async def test_graphiql_runs_queries_as_the_signed_in_user(browser: Browser, http_url: str) -> None:
    person = await sign_up(browser, http_url, "graphiql")
    try:
        await person.page.evaluate("localStorage.setItem('graphiql:query', '{ me { username } }')")
        await person.page.goto("/graphql")
        await person.page.get_by_role("button", name="Execute query").click()
        result = person.page.locator(".result-window")
        await expect(result).to_contain_text(f'"username": "{person.username}"')
        await screenshot(person.page, "graphiql")
        assert not person.problems
    finally:
        await person.context.close()
