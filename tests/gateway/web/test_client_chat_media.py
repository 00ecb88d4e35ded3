"""Pictures in chat: attached in the room's composer (uploaded with progress, removable
before sending), sent with or without text once processed, and shown live in the other
member's open room, blurhash first, then the picture from its signed URL."""

from __future__ import annotations

import pytest
from playwright.async_api import Browser, expect

from tests.support.browser import (
    file_payload,
    loaded_picture,
    open_room_with,
    screenshot,
    sign_up,
    start_chat,
)
from tests.support.media import jpeg

pytestmark = pytest.mark.stack


async def test_a_picture_sent_in_chat_shows_in_the_other_members_open_room(
    browser: Browser, http_url: str
) -> None:
    sender = await sign_up(browser, http_url, "snapper")
    receiver = await sign_up(browser, http_url, "friend")
    try:
        await start_chat(sender, receiver)
        await open_room_with(receiver, sender)
        page = sender.page

        # A picture with text: both show, in one message, in the other member's open room.
        media = page.locator("#message-media")
        await media.set_input_files(files=[file_payload("pier.jpg", "image/jpeg", jpeg(900, 1200))])
        attachments = page.get_by_role("list", name="Attachments")
        # Sent once processed, so the room gets it ready to show.
        await expect(attachments.get_by_text("Ready")).to_be_visible()
        await page.get_by_label("Message", exact=True).fill("The pier at noon")
        send = page.get_by_role("button", name="Send")
        await send.click()
        await expect(attachments).to_have_count(0)
        messages = receiver.page.get_by_role("list", name="Messages")
        latest = messages.get_by_role("listitem").last
        await expect(latest).to_contain_text("The pier at noon")
        picture = latest.get_by_role("img", name="Picture", exact=True)
        await loaded_picture(picture)
        assert "/media/signed/" in (await picture.get_attribute("src") or "")
        await screenshot(receiver.page, "chat-with-picture")

        # Two pictures attached, one taken back, no text: the picture is the message.
        await media.set_input_files(
            files=[
                file_payload("harbour.jpg", "image/jpeg", jpeg(1200, 900)),
                file_payload("blurry.jpg", "image/jpeg", jpeg(640, 480)),
            ]
        )
        await expect(attachments.get_by_role("listitem")).to_have_count(2)
        await attachments.get_by_role("button", name="Remove blurry.jpg").click()
        await expect(attachments.get_by_role("listitem")).to_have_count(1)
        await expect(attachments.get_by_text("Ready")).to_be_visible()
        await send.click()
        mine = page.get_by_role("list", name="Messages").get_by_role("listitem").last
        await loaded_picture(mine.get_by_role("img", name="Picture", exact=True))
        await expect(messages.get_by_role("listitem")).to_have_count(2)
        await loaded_picture(messages.get_by_role("img", name="Picture", exact=True).last)

        # The room list says what a message without text carried.
        await receiver.page.goto("/chat")
        rooms = receiver.page.get_by_role("navigation", name="Chats")
        await expect(rooms.get_by_role("link", name=sender.username)).to_contain_text("Picture")
        assert not sender.problems + receiver.problems
    finally:
        await sender.context.close()
        await receiver.context.close()
