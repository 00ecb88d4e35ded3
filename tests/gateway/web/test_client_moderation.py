"""Reports and moderation in the web client: a member reports a post from the feed (and
is told so inline when reporting it again); a moderator opens /moderation, sees the post
with its report, removes it, finds it among the resolved, and the reporter's feed no
longer shows it; an admin reads the removal in the log. Someone without the role sees
neither the link nor the queue."""

from __future__ import annotations

import asyncio

import pytest
from playwright.async_api import Browser, expect

from storage.db import Database
from tests.support.browser import (
    follow,
    grant_role,
    open_in_feed,
    post,
    screenshot,
    serious_accessibility_violations,
    sign_up,
)

pytestmark = pytest.mark.stack


async def test_a_reported_post_is_removed_by_a_moderator_and_leaves_the_feed(
    browser: Browser, http_url: str, db: Database
) -> None:
    author = await sign_up(browser, http_url, "reported")
    reporter = await sign_up(browser, http_url, "reporter")
    # (CSP bypassed for axe, which is injected as a script of its own.)
    moderator = await sign_up(browser, http_url, "moderator", bypass_csp=True)
    try:
        await follow(reporter, author)
        await author.page.goto("/")
        text = f"Buy cheap followers now {author.username}"
        await post(author, text)
        # No Report on one's own post.
        own = author.page.get_by_role("article").filter(has_text=text)
        await expect(own.get_by_role("button", name="Delete")).to_be_visible()
        await expect(own.get_by_role("button", name="Report", exact=False)).to_have_count(0)

        # The reporter reports it from the feed: a reason, a note, thanks inline.
        card = await open_in_feed(reporter, text)
        page = reporter.page
        await card.get_by_role("button", name=f"Report post by {author.username}").click()
        dialog = page.get_by_role("dialog", name=f"Report post by {author.username}")
        await expect(dialog).to_be_visible()
        await dialog.get_by_label("Reason").select_option(label="Spam")
        await dialog.get_by_label("Note (optional)").fill("Selling followers")
        await dialog.get_by_role("button", name="Send report").click()
        await expect(dialog.get_by_role("status")).to_have_text(
            "Thanks — a moderator will look at it."
        )
        await dialog.get_by_role("button", name="Close").click()
        await expect(dialog).to_be_hidden()
        # A second report of the same post is refused, and the refusal said inline.
        await card.get_by_role("button", name=f"Report post by {author.username}").click()
        await dialog.get_by_role("button", name="Send report").click()
        await expect(dialog.get_by_role("alert")).to_contain_text("You already reported this")
        await page.keyboard.press("Escape")
        await expect(dialog).to_be_hidden()

        # Without the role: no link, and the screen says so.
        mod = moderator.page
        await expect(mod.get_by_role("link", name="Moderation")).to_have_count(0)
        await mod.goto("/moderation")
        await expect(mod.get_by_text("You are not a moderator.")).to_be_visible()

        # With it: the queue holds the post, its author, its report and reason.
        await grant_role(db, moderator, "moderator")
        await (
            mod.get_by_role("navigation", name="Main")
            .get_by_role("link", name="Moderation")
            .click()
        )
        await expect(mod.get_by_role("heading", name="Moderation")).to_be_visible()
        item = (
            mod.get_by_role("list", name="Open reports")
            .get_by_role("listitem")
            .filter(has_text=text)
        )
        await expect(item).to_be_visible()
        await expect(item).to_contain_text("1 report")
        await expect(item).to_contain_text("Spam")
        await expect(item).to_contain_text(author.username)
        await expect(item.get_by_text("visible", exact=True)).to_be_visible()
        await screenshot(mod, "moderation-queue")
        assert not await serious_accessibility_violations(mod)

        # Removed, with a note: the item says so at once.
        await item.get_by_label("Note (kept in the log)").fill("Spam, first strike")
        await item.get_by_role("button", name="Remove", exact=True).click()
        await expect(item.get_by_role("status")).to_have_text("Remove: done.")
        await expect(item.get_by_text("removed", exact=True)).to_be_visible()
        await expect(item.get_by_role("button", name="Restore", exact=True)).to_be_visible()

        # Among the resolved; not among the open after a reload.
        await mod.get_by_role("link", name="Resolved").click()
        resolved = mod.get_by_role("list", name="Resolved reports")
        await expect(resolved.get_by_role("listitem").filter(has_text=text)).to_be_visible()
        await mod.goto("/moderation")
        await expect(mod.get_by_role("list", name="Open reports")).to_be_attached()
        await expect(
            mod.get_by_role("list", name="Open reports")
            .get_by_role("listitem")
            .filter(has_text=text)
        ).to_have_count(0)

        # An admin also reads the log: the removal, with its note.
        await expect(mod.get_by_role("link", name="Log")).to_have_count(0)
        await grant_role(db, moderator, "admin")
        await mod.goto("/moderation")
        await (
            mod.get_by_role("navigation", name="Moderation sections")
            .get_by_role("link", name="Log")
            .click()
        )
        row = mod.get_by_role("row").filter(has_text="Spam, first strike")
        await expect(row).to_contain_text("REMOVE")
        assert not await serious_accessibility_violations(mod)

        # The reporter's feed no longer shows it (the takedown reaches timelines a moment
        # later): the post was all it held, so it says it is empty.
        feed = page.get_by_role("region", name="Feed")
        card = feed.get_by_role("article").filter(has_text=text)
        empty = page.get_by_text("Your feed is empty.")
        for _ in range(10):
            await page.goto("/")
            await expect(card.or_(empty).first).to_be_visible()
            if await empty.count():
                break
            await asyncio.sleep(1)
        await expect(empty).to_be_visible()
        await expect(card).to_have_count(0)
        for person in (author, reporter, moderator):
            assert not person.problems, person.problems
    finally:
        for person in (author, reporter, moderator):
            await person.context.close()
