"""Stories in the web client: an author publishes two from the home screen; a follower
sees them in the stories row with an unseen ring, opens the viewer, goes from one to the
next with the keyboard (each shown is viewed), closes it and finds the ring seen, after a
reload too; the author sees "1 view" and the follower among the viewers."""

from __future__ import annotations

import re

import pytest
from playwright.async_api import Browser, Page, expect

from tests.support.browser import (
    file_payload,
    follow,
    loaded_picture,
    screenshot,
    serious_accessibility_violations,
    sign_up,
)
from tests.support.media import jpeg

pytestmark = pytest.mark.stack


async def _publish(page: Page, name: str, text: str) -> None:
    """Add a story from the home screen: pick a picture, wait for it, add text, share."""
    await page.get_by_role("button", name="Add to your story").click()
    dialog = page.get_by_role("dialog", name="New story")
    await expect(dialog).to_be_visible()
    await dialog.locator("#story-media").set_input_files(
        files=[file_payload(name, "image/jpeg", jpeg(1080, 1350))]
    )
    media = dialog.get_by_role("list", name="Story media")
    await expect(media.get_by_text("Ready")).to_be_visible()
    await loaded_picture(dialog.get_by_role("img", name="Picture", exact=True))
    await dialog.get_by_label("Text (optional)").fill(text)
    await dialog.get_by_role("button", name="Share story").click()
    await expect(dialog).to_be_hidden()


async def test_a_story_is_seen_by_a_follower_and_the_author_sees_who_viewed_it(
    browser: Browser, http_url: str
) -> None:
    author = await sign_up(browser, http_url, "storyteller")
    # Less motion asked for: the viewer does not move on by itself while it is checked.
    # (CSP bypassed for axe, which is injected as a script of its own.)
    follower = await sign_up(browser, http_url, "watcher", reduced_motion="reduce", bypass_csp=True)
    try:
        await follow(follower, author)
        await author.page.goto("/")
        await _publish(author.page, "morning.jpg", "Good morning")
        await _publish(author.page, "noon.jpg", "Lunch by the river")
        row = author.page.get_by_role("list", name="Stories")
        await expect(row.get_by_role("button", name="Your story", exact=True)).to_be_visible()

        # The follower's row: the author, unseen.
        page = follower.page
        await page.goto("/")
        stories = page.get_by_role("list", name="Stories")
        unseen = stories.get_by_role("button", name=f"{author.username}, unseen")
        await expect(unseen).to_be_visible()
        await screenshot(page, "stories-row")
        assert not await serious_accessibility_violations(page)

        # The viewer: the oldest story first, with its picture, text and time left.
        await unseen.click()
        viewer = page.get_by_role("dialog", name=f"{author.username}'s story")
        await expect(viewer).to_be_visible()
        await expect(viewer).to_contain_text("Good morning")
        await expect(viewer).to_contain_text(re.compile(r"\d+\s+h left"))
        await loaded_picture(viewer.get_by_role("img", name="Picture", exact=True))
        await screenshot(page, "story-viewer")
        assert not await serious_accessibility_violations(page)
        await page.keyboard.press("ArrowRight")
        await expect(viewer).to_contain_text("Lunch by the river")
        await loaded_picture(viewer.get_by_role("img", name="Picture", exact=True))
        await page.keyboard.press("ArrowLeft")
        await expect(viewer).to_contain_text("Good morning")
        await page.keyboard.press("Escape")
        await expect(viewer).to_be_hidden()
        seen = stories.get_by_role("button", name=f"{author.username}, seen")
        await expect(seen).to_be_visible()
        await expect(seen).to_be_focused()  # focus returns to where it was
        await page.reload()
        await expect(seen).to_be_visible()  # the server recorded both views

        # The author: each story says "1 view", and who it was.
        await author.page.reload()
        await row.get_by_role("button", name="Your story", exact=True).click()
        own = author.page.get_by_role("dialog", name="Your story")
        await expect(own).to_contain_text("Good morning")
        views = own.get_by_role("button", name="1 view")
        await views.click()
        viewers = own.get_by_role("region", name="Viewers")
        await expect(viewers.get_by_role("link", name=follower.username)).to_be_visible()
        await screenshot(author.page, "story-viewers")
        await own.get_by_role("button", name="Next story").click()
        await expect(own).to_contain_text("Lunch by the river")
        await expect(own.get_by_role("button", name="1 view")).to_be_visible()
        await own.get_by_role("button", name="Close").click()
        await expect(own).to_be_hidden()
        assert not author.problems + follower.problems
    finally:
        await author.context.close()
        await follower.context.close()
