"""Notification settings in the web client: a person turns likes off in the app, and a
like then writes no notification while a follow still does; they mute someone from their
profile (and report it) and their chat from its room, find both listed in Settings, and
unmute them there."""

from __future__ import annotations

import contextlib

import pytest
from playwright.async_api import Browser, expect

from tests.support.browser import (
    screenshot,
    serious_accessibility_violations,
    sign_up,
    start_chat,
)
from tests.support.graphql import post as graphql

pytestmark = pytest.mark.stack

NOTIFICATIONS = "{ notifications(first: 20) { edges { node { kind actor { username } } } } }"


async def test_likes_turned_off_in_the_app_write_no_notification(
    browser: Browser, http_url: str
) -> None:
    # (CSP bypassed for axe, which is injected as a script of its own.)
    person = await sign_up(browser, http_url, "quiet", bypass_csp=True)
    fan = await sign_up(browser, http_url, "fan")
    try:
        page = person.page
        await page.goto("/settings")
        section = page.get_by_role("region", name="Notifications")
        likes = section.get_by_role("checkbox", name="Likes in the app")
        await expect(likes).to_be_checked()
        by_email = section.get_by_role("checkbox", name="Likes by email")
        email_before = await by_email.is_checked()
        await likes.uncheck()
        await expect(likes).to_be_enabled()  # saved: the answer came back
        await page.reload()
        await expect(likes).not_to_be_checked()
        # The other channel is kept.
        assert await by_email.is_checked() == email_before

        text = f"Nobody needs to tell me {person.username}"
        await page.goto("/")
        await page.get_by_label("What's happening?").fill(text)
        await page.get_by_role("button", name="Post", exact=True).click()
        await expect(page.get_by_role("article").filter(has_text=text)).to_be_visible()

        # The fan likes it from the profile, then follows: the follow notifies, the like
        # (written before it) does not.
        await fan.page.goto(f"/u/{person.username}")
        card = fan.page.get_by_role("article").filter(has_text=text)
        await card.get_by_role("button", name="Like").click()
        await expect(card.get_by_role("button", name="Like")).to_have_attribute(
            "aria-pressed", "true"
        )
        await fan.page.get_by_role("button", name=f"Follow {person.username}").click()
        await expect(
            fan.page.get_by_role("button", name=f"Unfollow {person.username}")
        ).to_be_visible()

        # The follow's notification may come after the list loads: reload until it shows.
        followed = page.get_by_text("followed you")
        for _ in range(10):
            await page.goto("/notifications")
            await expect(page.get_by_role("heading", name="Notifications")).to_be_visible()
            with contextlib.suppress(AssertionError):
                await expect(followed).to_be_visible(timeout=2_000)
                break
        await expect(followed).to_be_visible()
        await expect(page.get_by_text("liked your post")).to_have_count(0)
        reply = await graphql(http_url, NOTIFICATIONS, {}, token=await person.token())
        kinds = [edge["node"]["kind"] for edge in reply.ok()["notifications"]["edges"]]
        assert "FOLLOW" in kinds, kinds
        assert "LIKE" not in kinds, kinds
        assert not person.problems, person.problems
        assert not fan.problems, fan.problems
    finally:
        await person.context.close()
        await fan.context.close()


async def test_someone_muted_from_their_profile_and_their_chat_are_listed_in_settings(
    browser: Browser, http_url: str
) -> None:
    person = await sign_up(browser, http_url, "muter", bypass_csp=True)
    noisy = await sign_up(browser, http_url, "noisy")
    try:
        page = person.page
        await page.goto(f"/u/{noisy.username}")
        await page.get_by_role("button", name=f"Mute {noisy.username}").click()
        await expect(page.get_by_text(f"Muted @{noisy.username}")).to_be_visible()
        # Reported from the profile too.
        await page.get_by_role("button", name=f"Report @{noisy.username}").click()
        dialog = page.get_by_role("dialog", name=f"Report @{noisy.username}")
        await dialog.get_by_label("Reason").select_option("HARASSMENT")
        assert not await serious_accessibility_violations(page)
        await dialog.get_by_role("button", name="Send report").click()
        await expect(dialog.get_by_role("status")).to_have_text(
            "Thanks — a moderator will look at it."
        )
        await dialog.get_by_role("button", name="Close").click()
        # And their chat muted from the room.
        await start_chat(person, noisy)
        await page.get_by_role("button", name="Mute", exact=True).click()
        await expect(page.get_by_text("Chat muted")).to_be_visible()

        await page.goto("/settings")
        muted = page.get_by_role("list", name="Muted people")
        await expect(muted.get_by_role("link", name=noisy.username)).to_be_visible()
        rooms = page.get_by_role("list", name="Muted chats")
        await expect(rooms.get_by_role("link").filter(has_text=noisy.username)).to_be_visible()
        await page.get_by_role("region", name="Notifications").evaluate(
            "section => { section.scrollIntoView({ block: 'start' }); scrollBy(0, -70); }"
        )
        await screenshot(page, "notification-settings")
        assert not await serious_accessibility_violations(page)

        await muted.get_by_role("button", name=f"Unmute {noisy.username}").click()
        await expect(page.get_by_text("No one is muted.")).to_be_visible()
        await rooms.get_by_role("button").click()
        await expect(page.get_by_text("No chat is muted.")).to_be_visible()
        await page.reload()
        await expect(page.get_by_text("No one is muted.")).to_be_visible()
        await expect(page.get_by_text("No chat is muted.")).to_be_visible()
        assert not person.problems, person.problems
    finally:
        await person.context.close()
        await noisy.context.close()
