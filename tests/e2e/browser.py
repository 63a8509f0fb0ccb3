"""Headless Debian Chromium driven by Playwright (its own browser download cannot work here)."""

from __future__ import annotations

import contextlib
import os
import shutil
from collections.abc import AsyncIterator

import pytest
from playwright.async_api import Browser, Page, async_playwright, expect

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
ARGS = [
    "--no-sandbox",  # CI runs as root
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    # The machine has no internet: background fetches only fill the log with refusals.
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    # Real host candidates instead of mDNS names, which the gateway (aiortc) cannot resolve.
    "--disable-features=WebRtcHideLocalIpsWithMdns",
    # A camera is not needed to receive video; no permission prompt either.
    "--use-fake-ui-for-media-stream",
    "--autoplay-policy=no-user-gesture-required",
]


def _have_chromium() -> bool:
    return os.path.exists(CHROMIUM)


@contextlib.asynccontextmanager
async def chromium() -> AsyncIterator[Browser]:
    if not _have_chromium():
        if os.environ.get("CI"):
            pytest.fail("CI must run the browser tests: install Debian's chromium")
        pytest.skip("no chromium here (scripts/bootstrap installs it)")
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(
            executable_path=CHROMIUM, headless=True, args=ARGS
        )
        try:
            yield browser
        finally:
            await browser.close()


async def sign_in(page: Page, base_url: str, username: str, password: str) -> None:
    """Open the clinic app and sign in; returns once the consultation list shows."""
    await page.goto(base_url)
    await expect(page.locator("body[data-ready=true]")).to_be_attached()
    await page.fill("#username", username)
    await page.fill("#password", password)
    await page.click("#login-form button[type=submit]")
    await expect(page.locator("#list-view")).to_be_visible()
