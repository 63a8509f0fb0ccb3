"""The server process is killed and restarted in the middle of a live consultation: the
doctor's browser and the bedside gateway both come back by themselves, and the bedside is
live again on the doctor's screen."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.async_api import expect

from signaling.client import SignalingClient, UserCredentials
from tests.e2e.bedside import bedside_at
from tests.e2e.browser import chromium, sign_in
from tests.e2e.server_process import ServerProcess

pytestmark = pytest.mark.slow


@pytest.fixture
def server(tmp_path: Path) -> Iterator[tuple[ServerProcess, str]]:
    proc = ServerProcess(tmp_path)
    for user, role, site in (("tw", "technician", "wonju"), ("dk", "doctor", "koriyama")):
        args = ("users", "add", user, "--role", role, "--site", site, "--password-stdin")
        proc.cli(*args, stdin=f"password-{user}\n".encode())
    key = proc.cli("gateways", "add", "bed-1", "--site", "wonju").strip().split()[-1]
    try:
        yield proc, key
    finally:
        proc.stop()


async def test_browser_and_gateway_come_back_after_a_server_restart(
    server: tuple[ServerProcess, str],
) -> None:
    process, key = server
    await process.start()
    base = process.base_url
    tech = SignalingClient(base, UserCredentials("tw", "password-tw"))
    await tech.login()
    row = await tech.request_consultation("koriyama", False)
    await tech.close()
    async with bedside_at(base, "bed-1", key) as gateway, chromium() as browser:
        page = await browser.new_page(locale="en-US")
        await sign_in(page, base, "dk", "password-dk")
        listed = page.locator(f"tr[data-id='{row.id}']")
        await listed.locator("button[data-action='consultations.accept']").click()
        await listed.locator("button[data-action='consultations.join']").click()
        badge = page.locator("#link-state")
        await expect(badge).to_have_attribute("data-state", "link.connected", timeout=30_000)
        await page.wait_for_function(
            "document.getElementById('video').videoWidth > 0", timeout=20_000
        )

        process.kill()  # no goodbye to anyone
        await expect(badge).not_to_have_attribute("data-state", "link.connected", timeout=15_000)
        await process.start()

        # Both ends reconnect and re-join; the gateway offers anew; the bedside is live.
        await expect(badge).to_have_attribute("data-state", "link.connected", timeout=45_000)
        peers = page.locator("#participants li")
        await expect(peers.filter(has_text="bed-1")).to_have_count(1, timeout=15_000)
        before = await page.evaluate("document.getElementById('video').currentTime")
        await page.wait_for_function(
            "t => document.getElementById('video').currentTime > t + 1",
            arg=before,
            timeout=20_000,
        )
        assert gateway.consultation_id == row.id
