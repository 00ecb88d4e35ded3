"""Pictures in the web client: picked in compose, uploaded with progress, posted, shown to
the author once processed and to a follower in their feed; files that are not pictures
are refused with a message."""

from __future__ import annotations

import pytest
from playwright.async_api import Browser, FilePayload, expect

from tests.support.browser import follow, open_in_feed, screenshot, sign_up
from tests.support.media import jpeg

pytestmark = pytest.mark.stack


def file(name: str, mime_type: str, data: bytes) -> FilePayload:
    return {"name": name, "mimeType": mime_type, "buffer": data}


async def test_a_picture_is_uploaded_posted_and_shown(browser: Browser, http_url: str) -> None:
    author = await sign_up(browser, http_url, "photographer")
    reader = await sign_up(browser, http_url, "viewer")
    try:
        await follow(reader, author)
        page = author.page
        await page.goto("/")
        picker = page.locator("#compose-pictures")
        await picker.set_input_files(files=[file("sunset.jpg", "image/jpeg", jpeg(1600, 1200))])
        pictures = page.get_by_role("list", name="Pictures")
        await expect(pictures.get_by_text("Uploaded")).to_be_visible()
        await page.get_by_label("What's happening?").fill("Sunset tonight")
        await page.get_by_role("button", name="Post", exact=True).click()

        # The author's own card turns from "processing" to the picture, without a reload.
        card = page.get_by_role("article").filter(has_text="Sunset tonight")
        shown = card.get_by_role("img", name="Picture", exact=True)
        await expect(shown).to_be_visible()
        await expect(shown).to_have_js_property("complete", True)
        assert await shown.evaluate("image => image.naturalWidth") > 0
        await screenshot(page, "post-with-picture")

        seen = await open_in_feed(reader, "Sunset tonight")
        await expect(seen.get_by_role("img", name="Picture", exact=True)).to_be_visible()

        # Not a picture by its type, then not a picture by its content: both refused.
        await picker.set_input_files(files=[file("notes.txt", "text/plain", b"hello")])
        await expect(pictures.get_by_text("only JPEG, PNG, WebP or GIF")).to_be_visible()
        await picker.set_input_files(
            files=[file("fake.jpg", "image/jpeg", b"%PDF-1.7" + bytes(64))]
        )
        await expect(pictures.get_by_text("not the declared image/jpeg")).to_be_visible()
        assert not author.problems + reader.problems
    finally:
        await author.context.close()
        await reader.context.close()
