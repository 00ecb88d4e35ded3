"""Pictures and videos in the web client: picked in compose, uploaded with progress,
posted, shown to the author once processed and to a follower in their feed; a video plays
its HLS stream, natively where the browser plays HLS and through hls.js elsewhere; files
that are neither are refused with a message."""

from __future__ import annotations

import re

import pytest
from playwright.async_api import Browser, Locator, expect

from tests.support.browser import (
    file_payload,
    follow,
    loaded_picture,
    open_in_feed,
    screenshot,
    sign_up,
)
from tests.support.media import jpeg, mp4

pytestmark = pytest.mark.stack

# A browser without HLS of its own (Firefox, older Chrome): the client then loads hls.js.
WITHOUT_NATIVE_HLS = """
const canPlayType = HTMLMediaElement.prototype.canPlayType;
HTMLMediaElement.prototype.canPlayType = function (type) {
  return /mpegurl/i.test(type) ? "" : canPlayType.call(this, type);
};
"""


async def _plays(video: Locator) -> None:
    """Start the video (muted, so no gesture is needed) and wait until frames advance."""
    await video.evaluate("video => { video.muted = true; return video.play(); }")
    handle = await video.element_handle()
    await video.page.wait_for_function("video => video.currentTime > 0.2", arg=handle)
    assert await video.evaluate("video => video.readyState") >= 2  # HAVE_CURRENT_DATA
    assert await video.evaluate("video => video.videoWidth") > 0


async def test_a_picture_is_uploaded_posted_and_shown(browser: Browser, http_url: str) -> None:
    author = await sign_up(browser, http_url, "photographer")
    reader = await sign_up(browser, http_url, "viewer")
    try:
        await follow(reader, author)
        page = author.page
        await page.goto("/")
        picker = page.locator("#compose-media")
        await picker.set_input_files(
            files=[file_payload("sunset.jpg", "image/jpeg", jpeg(1600, 1200))]
        )
        attachments = page.get_by_role("list", name="Attachments")
        await expect(attachments.get_by_text(re.compile("^(Uploaded|Ready)"))).to_be_visible()
        await page.get_by_label("What's happening?").fill("Sunset tonight")
        await page.get_by_role("button", name="Post", exact=True).click()

        # The author's own card turns from "processing" to the picture, without a reload.
        card = page.get_by_role("article").filter(has_text="Sunset tonight")
        await loaded_picture(card.get_by_role("img", name="Picture", exact=True))
        await screenshot(page, "post-with-picture")

        seen = await open_in_feed(reader, "Sunset tonight")
        await expect(seen.get_by_role("img", name="Picture", exact=True)).to_be_visible()

        # Not a picture by its type, then not a picture by its content: both refused.
        await picker.set_input_files(files=[file_payload("notes.txt", "text/plain", b"hello")])
        await expect(attachments.get_by_text("only JPEG, PNG, WebP or GIF")).to_be_visible()
        await picker.set_input_files(
            files=[file_payload("fake.jpg", "image/jpeg", b"%PDF-1.7" + bytes(64))]
        )
        await expect(attachments.get_by_text("not the declared image/jpeg")).to_be_visible()
        assert not author.problems + reader.problems
    finally:
        await author.context.close()
        await reader.context.close()


async def test_a_video_is_posted_and_plays_in_a_followers_feed(
    browser: Browser, http_url: str
) -> None:
    author = await sign_up(browser, http_url, "director")
    reader = await sign_up(browser, http_url, "audience")
    # A browser without HLS of its own: hls.js plays through Media Source Extensions from
    # a blob: URL, which the pages' policy allows for media (`media-src 'self' blob:`).
    elsewhere = await sign_up(browser, http_url, "firefoxish")
    try:
        await follow(reader, author)
        page = author.page
        await page.goto("/")
        await page.locator("#compose-media").set_input_files(
            files=[file_payload("harbour.mp4", "video/mp4", mp4(2.0, 640, 360))]
        )
        attachments = page.get_by_role("list", name="Attachments")
        await expect(attachments.get_by_text(re.compile("^(Uploaded|Ready)"))).to_be_visible()
        # A video goes alone: nothing more may be added to this post.
        await expect(page.get_by_role("button", name="Add pictures or a video")).to_be_disabled()
        await page.get_by_label("What's happening?").fill("The harbour at dawn")
        await page.get_by_role("button", name="Post", exact=True).click()

        # The author's card: processing, then the video with its poster, live.
        card = page.get_by_role("article").filter(has_text="The harbour at dawn")
        video = card.get_by_label("Video", exact=True)
        await expect(video).to_have_attribute("poster", re.compile(r"/poster\.jpeg$"))
        post_id = await card.get_attribute("data-post-id")

        # The follower's feed: the poster shows, and the stream plays. This Chromium plays
        # HLS itself (canPlayType says "maybe"), so no hls.js is loaded.
        seen = (await open_in_feed(reader, "The harbour at dawn")).get_by_label("Video", exact=True)
        poster = await seen.get_attribute("poster")
        assert poster
        answer = await reader.page.request.get(poster)
        assert answer.ok
        assert answer.headers["content-type"] == "image/jpeg"
        assert (await seen.get_attribute("src") or "").endswith("/hls.m3u8")
        await expect(seen).to_have_attribute("data-player", "native")
        await _plays(seen)
        await seen.scroll_into_view_if_needed()
        await screenshot(reader.page, "post-with-video")

        # Without HLS of its own, the browser gets hls.js (its own chunk), which reads the
        # master playlist's levels and plays the same stream.
        await elsewhere.context.add_init_script(WITHOUT_NATIVE_HLS)
        scripts: list[str] = []
        elsewhere.page.on("request", lambda request: scripts.append(request.url.rpartition("/")[2]))
        await elsewhere.page.goto(f"/post/{post_id}")
        mse = elsewhere.page.get_by_label("Video", exact=True)
        await expect(mse).to_have_attribute("data-player", "hls.js")
        await expect(mse).to_have_attribute("data-levels", "240p")
        await _plays(mse)
        assert any(re.fullmatch(r"hls-[A-Z0-9]+\.js", name) for name in scripts), scripts
        assert not author.problems + reader.problems + elsewhere.problems
    finally:
        await author.context.close()
        await reader.context.close()
        await elsewhere.context.close()
