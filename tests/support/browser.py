"""Debian's Chromium, headless, driven by Playwright: the web client as people use it.

Playwright never downloads a browser here; it launches `/usr/bin/chromium` with the flags
this machine needs (no background networking: the machine's network is closed). Screens
are saved under `build/screenshots/` as the run's artifacts; the docs use them.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import re
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from playwright.async_api import (
    Browser,
    BrowserContext,
    FilePayload,
    Locator,
    Page,
    Playwright,
    async_playwright,
    expect,
)
from playwright.async_api import TimeoutError as PlaywrightTimeout

from deployments.stack.debian import CHROMIUM, CHROMIUM_ARGS
from gateway.auth import identity
from storage.db import Database
from tests.support.graphql import PASSWORD

ROOT = Path(__file__).resolve().parents[2]
SCREENSHOTS = ROOT / "build" / "screenshots"
AXE = ROOT / "gateway" / "web" / "client" / "node_modules" / "axe-core" / "axe.min.js"
# Long enough for a post to go outbox → Kafka → fan-out → socket on a loaded 2-core machine.
LIVE_TIMEOUT_MS = 20_000

_serial = itertools.count()


@asynccontextmanager
async def chromium() -> AsyncIterator[tuple[Playwright, Browser]]:
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(
            executable_path=str(CHROMIUM), args=list(CHROMIUM_ARGS)
        )
        try:
            yield playwright, browser
        finally:
            await browser.close()


@dataclass
class Person:
    """Someone using the client in their own browser context (own storage and sockets)."""

    context: BrowserContext
    page: Page
    username: str
    email: str
    password: str = PASSWORD
    # Uncaught exceptions and Content-Security-Policy refusals in the person's pages.
    problems: list[str] = field(default_factory=list)

    async def goto(self, base_url: str, path: str) -> None:
        await self.page.goto(base_url + path)

    async def token(self) -> str:
        stored = await self.page.evaluate("localStorage.getItem('nova.session')")
        return str(json.loads(stored)["accessToken"])


async def new_context(browser: Browser, base_url: str, **options: Any) -> BrowserContext:
    context = await browser.new_context(base_url=base_url, **options)
    context.set_default_timeout(LIVE_TIMEOUT_MS)
    expect.set_options(timeout=LIVE_TIMEOUT_MS)
    return context


def unique_name(prefix: str) -> str:
    return f"{prefix}{next(_serial)}_{uuid.uuid4().hex[:8]}"


async def sign_up(browser: Browser, base_url: str, prefix: str, **options: Any) -> Person:
    """A new person signs up through the client's form and lands on their home feed."""
    context = await new_context(browser, base_url, **options)
    page = await context.new_page()
    problems: list[str] = []
    watch_for_problems(page, problems)
    username = unique_name(prefix)
    email = f"{username}@example.com"
    await page.goto("/signup")
    await page.get_by_label("Email", exact=True).fill(email)
    await page.get_by_label("Username", exact=True).fill(username)
    await page.get_by_label("Password", exact=True).fill(PASSWORD)
    await page.get_by_role("button", name="Sign up").click()
    await expect(page.get_by_role("heading", name="Home")).to_be_visible()
    return Person(context, page, username, email, problems=problems)


async def post(person: Person, text: str) -> None:
    """Compose a post on the home screen; it shows at the top of the feed."""
    await person.page.get_by_label("What's happening?").fill(text)
    await person.page.get_by_role("button", name="Post", exact=True).click()
    await expect(person.page.get_by_role("article").filter(has_text=text).first).to_be_visible()


async def follow(person: Person, other: Person) -> None:
    """Follow `other` from their profile."""
    await person.page.goto(f"/u/{other.username}")
    await person.page.get_by_role("button", name=f"Follow {other.username}").click()
    await expect(
        person.page.get_by_role("button", name=f"Unfollow {other.username}")
    ).to_be_visible()


async def open_in_feed(person: Person, text: str) -> Locator:
    """The home feed, with the post holding `text` on it: there when the page loads, or
    shown from the "new posts" banner when fan-out delivers it a moment later. `feedUpdated`
    has no replay: a post fanned out after the page read its first page but before its
    subscription reached the server shows on the next load, so this loads up to 3 times."""
    page = person.page
    card = page.get_by_role("region", name="Feed").get_by_role("article").filter(has_text=text)
    banner = page.get_by_role("button", name=re.compile(r"new posts?: show$"))
    for attempt in range(3):
        await page.goto("/")
        try:
            await expect(card.or_(banner).first).to_be_visible(timeout=LIVE_TIMEOUT_MS // 2)
            break
        except AssertionError:
            if attempt == 2:  # neither in the page nor announced: the push was lost
                raise
    if not await card.count():
        # The banner may go before the click: the feed's first answer held the post.
        with contextlib.suppress(PlaywrightTimeout):
            await banner.click(timeout=LIVE_TIMEOUT_MS // 2)
    await expect(card).to_be_visible()
    return card


def file_payload(name: str, mime_type: str, data: bytes) -> FilePayload:
    """A file as a person picks it, for `Locator.set_input_files`."""
    return {"name": name, "mimeType": mime_type, "buffer": data}


async def start_chat(person: Person, other: Person) -> None:
    """`person` starts a direct chat with `other` and is left in its room."""
    await person.page.goto("/chat")
    await person.page.get_by_label("People").fill(other.username)
    await person.page.get_by_role("button", name="Start chat").click()
    await expect(person.page.get_by_role("heading", name=other.username)).to_be_visible()


async def open_room_with(person: Person, other: Person) -> None:
    """`person` opens their direct chat with `other` from the room list."""
    await person.page.goto("/chat")
    await (
        person.page.get_by_role("navigation", name="Chats")
        .get_by_role("link", name=other.username)
        .click()
    )
    await expect(person.page.get_by_role("heading", name=other.username)).to_be_visible()


async def loaded_picture(picture: Locator) -> None:
    """The <img> is visible and its bytes decoded (a blurhash placeholder is not enough)."""
    await expect(picture).to_be_visible()
    await expect(picture).to_have_js_property("complete", True)
    assert await picture.evaluate("image => image.naturalWidth") > 0


def watch_for_problems(page: Page, problems: list[str]) -> None:
    """Collect the page's uncaught exceptions and the CSP's refusals into `problems`."""
    page.on("pageerror", lambda error: problems.append(f"uncaught: {error}"))
    page.on(
        "console",
        lambda message: (
            problems.append(message.text)
            if message.type == "error" and "Content Security Policy" in message.text
            else None
        ),
    )


async def screenshot(page: Page, name: str) -> Path:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    path = SCREENSHOTS / f"{name}.png"
    await page.screenshot(path=str(path), full_page=False)
    return path


async def serious_accessibility_violations(page: Page) -> list[dict[str, Any]]:
    """axe-core's violations of impact serious or critical on the page as it is now
    (the context must bypass CSP: axe is injected as an inline script)."""
    await page.add_script_tag(path=str(AXE))
    result = await page.evaluate("async () => await axe.run(document)")
    return [
        {
            "id": violation["id"],
            "impact": violation["impact"],
            "help": violation["help"],
            "targets": [node["target"] for node in violation["nodes"]][:5],
        }
        for violation in result["violations"]
        if violation["impact"] in ("serious", "critical")
    ]


def link_in(body: str, path: str) -> str:
    """The first link to `path` in a mail body."""
    found = re.search(rf"https?://\S+{re.escape(path)}\?token=[^\s>]+", body)
    assert found, f"no {path} link in the mail:\n{body}"
    return found.group(0)


async def grant_role(db: Database, person: Person, role: str) -> None:
    """Give `person` a role as an operator does (`nova users grant`) and sign them in
    again: roles reach new tokens, and the client reads them from the token."""
    await identity.grant_role(db, person.username, role)
    page = person.page
    await page.evaluate("localStorage.removeItem('nova.session')")
    await page.goto("/login")
    await page.get_by_label("Email or username").fill(person.username)
    await page.get_by_label("Password", exact=True).fill(person.password)
    await page.get_by_role("button", name="Log in").click()
    await expect(page.get_by_role("heading", name="Home")).to_be_visible()
