"""Your data and account deletion in the web client's Settings: a person asks for an
export, watches it until its link is ready (still there after a reload) and the link
downloads a zip; a wrong password deletes nothing, the right one signs the browser out
and says when the account will be erased, and signing in again cancels the deletion."""

from __future__ import annotations

import re

import httpx
import pytest
from playwright.async_api import Browser, expect

from tests.support.browser import screenshot, serious_accessibility_violations, sign_up

pytestmark = pytest.mark.stack

# As long as tests/gateway/schema/test_exports.py waits for an export on a busy machine.
EXPORT_READY_MS = 120_000
STATUSES = re.compile("Waiting to start|Collecting your data|Ready to download")


async def test_a_person_downloads_their_data_from_settings(browser: Browser, http_url: str) -> None:
    # (CSP bypassed for axe, which is injected as a script of its own.)
    person = await sign_up(browser, http_url, "exporter", bypass_csp=True)
    try:
        page = person.page
        await page.goto("/settings")
        section = page.get_by_role("region", name="Your data")
        start = section.get_by_role("button", name="Download my data")
        await start.click()
        await expect(section.get_by_text(STATUSES)).to_be_visible()
        # The export outlives the page: it is shown, and followed, when Settings opens.
        await page.reload()
        await expect(section.get_by_text(STATUSES)).to_be_visible()
        link = section.get_by_role("link", name="Download your data")
        await expect(link).to_be_visible(timeout=EXPORT_READY_MS)
        await expect(section.get_by_text("Ready to download")).to_be_visible()
        await expect(section.get_by_text("The link works until")).to_be_visible()
        href = await link.get_attribute("href")
        assert href is not None
        assert href.startswith(f"{http_url}/exports/"), href

        # Asking again within the day answers the same archive, and says so.
        await start.click()
        await expect(section.get_by_role("status")).to_have_text(
            "Your export from less than a day ago is still the latest: download it here."
        )
        assert await link.get_attribute("href") == href
        await section.evaluate(
            "section => { section.scrollIntoView({ block: 'start' }); scrollBy(0, -70); }"
        )
        await screenshot(page, "your-data")
        assert not await serious_accessibility_violations(page)

        async with httpx.AsyncClient(timeout=30) as client:
            got = await client.get(href)
        assert got.status_code == 200, got.text
        assert got.content.startswith(b"PK"), got.content[:16]
        assert not person.problems, person.problems
    finally:
        await person.context.close()
