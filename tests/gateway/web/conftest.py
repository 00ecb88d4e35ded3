"""One headless Chromium for every browser test of the session (each person gets a
context of their own)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from playwright.async_api import Browser

from tests.support.browser import chromium


@pytest.fixture(scope="session")
async def browser(http_url: str) -> AsyncIterator[Browser]:
    async with chromium() as (_, launched):
        yield launched
