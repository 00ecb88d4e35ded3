"""Your data and account deletion in the web client's Settings: a person asks for an
export, watches it until its link is ready (still there after a reload) and the link
downloads a zip; a wrong password deletes nothing, the right one signs the browser out
and says when the account will be erased, and signing in again cancels the deletion."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from playwright.async_api import Browser, expect

from tests.support.browser import screenshot, serious_accessibility_violations, sign_up
from tests.support.graphql import post as graphql

pytestmark = pytest.mark.stack

# As long as tests/gateway/schema/test_exports.py waits for an export on a busy machine.
EXPORT_READY_MS = 120_000
STATUSES = re.compile("Waiting to start|Collecting your data|Ready to download")
ME = "{ me { username } }"
LOGIN = """
mutation Login($input: LoginInput!) { login(input: $input) { accessToken deletionCancelled } }
"""
GRACE = timedelta(days=14)


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


async def test_deleting_the_account_signs_out_and_signing_in_again_cancels_it(
    browser: Browser, http_url: str
) -> None:
    person = await sign_up(browser, http_url, "leaver", bypass_csp=True)
    try:
        page = person.page
        token = await person.token()
        await page.goto("/settings")
        form = page.get_by_role("form", name="Delete my account")
        password = form.get_by_label("Your password")
        confirm = form.get_by_role("checkbox", name=re.compile("^I understand"))
        delete = form.get_by_role("button", name="Delete my account")

        # A wrong password deletes nothing: still signed in, and no deletion to cancel.
        await password.fill("not the password at all")
        await confirm.check()
        await delete.click()
        await expect(form.get_by_role("alert")).to_have_text(
            "That password is wrong: nothing was deleted."
        )
        await expect(page).to_have_url(f"{http_url}/settings")
        assert (await graphql(http_url, ME, {}, token=token)).ok()["me"]["username"] == (
            person.username
        )
        login = {"input": {"login": person.username, "password": person.password}}
        again = (await graphql(http_url, LOGIN, login)).ok()["login"]
        assert again["deletionCancelled"] is False

        # The right one signs this browser out and says when the account goes.
        await password.fill(person.password)
        asked_at = datetime.now(UTC)
        await delete.click()
        await expect(page.get_by_role("heading", name="Log in to Nova")).to_be_visible()
        await expect(page).to_have_url(f"{http_url}/login")
        notice = page.get_by_role("status").filter(has_text="Your account will be erased on")
        await expect(notice).to_contain_text("Sign in before then to cancel.")
        erase_after = await notice.locator("time").get_attribute("datetime")
        assert erase_after is not None
        expected = asked_at + GRACE
        assert abs(datetime.fromisoformat(erase_after) - expected) < timedelta(minutes=2)
        assert await page.evaluate("localStorage.getItem('nova.session')") is None
        for used in (token, again["accessToken"]):  # every session ended, not only this one
            assert (await graphql(http_url, ME, {}, token=used)).codes == ["UNAUTHENTICATED"]
        await page.reload()  # the notice outlives the page
        await expect(notice).to_contain_text("Sign in before then to cancel.")
        await screenshot(page, "account-deletion-requested")
        assert not await serious_accessibility_violations(page)

        # Signing in before then cancels it, once.
        await page.get_by_label("Email or username").fill(person.username)
        await page.get_by_label("Password", exact=True).fill(person.password)
        await page.get_by_role("button", name="Log in").click()
        await expect(page.get_by_text("Account deletion cancelled")).to_be_visible()
        await expect(page.get_by_role("heading", name="Home")).to_be_visible()
        assert (await graphql(http_url, ME, {}, token=await person.token())).ok()
        later = (await graphql(http_url, LOGIN, login)).ok()["login"]
        assert later["deletionCancelled"] is False
        await page.evaluate("localStorage.removeItem('nova.session')")
        await page.goto("/login")
        await expect(page.get_by_role("heading", name="Log in to Nova")).to_be_visible()
        await expect(page.get_by_text("Your account will be erased")).to_have_count(0)
        assert not person.problems, person.problems
    finally:
        await person.context.close()
