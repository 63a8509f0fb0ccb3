"""The server process is killed and restarted in the middle of a live consultation: the
bedside's media does not pass through the server, so the doctor's screen stays live through
the outage (the video plays on, the link badge stays connected, a second badge says the server
is away); the browser and the gateway reconnect by themselves, know each other again under
their new peer ids, and keep the connection they had: nothing is renegotiated."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.async_api import expect

from signaling.client import SignalingClient, UserCredentials
from tests.e2e.bedside import bedside_at
from tests.e2e.browser import chromium, sign_in
from tests.e2e.server_process import ServerProcess

pytestmark = pytest.mark.slow


def _password(user: str) -> str:
    return f"restart-test-password-{user}"


@pytest.fixture
def server(tmp_path: Path) -> Iterator[tuple[ServerProcess, str]]:
    proc = ServerProcess(tmp_path)
    for user, role, site in (("tw", "technician", "wonju"), ("dk", "doctor", "koriyama")):
        args = ("users", "add", user, "--role", role, "--site", site, "--password-stdin")
        proc.cli(*args, stdin=f"{_password(user)}\n".encode())
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
    tech = SignalingClient(base, UserCredentials("tw", _password("tw")))
    await tech.login()
    row = await tech.request_consultation("koriyama", False)
    await tech.close()
    async with bedside_at(base, "bed-1", key) as gateway, chromium() as browser:
        page = await browser.new_page(locale="en-US")
        await sign_in(page, base, "dk", _password("dk"))
        listed = page.locator(f"tr[data-id='{row.id}']")
        await listed.locator("button[data-action='consultations.accept']").click()
        await listed.locator("button[data-action='consultations.join']").click()
        badge = page.locator("#link-state")
        await expect(badge).to_have_attribute("data-state", "link.connected", timeout=30_000)
        await page.wait_for_function(
            "() => document.getElementById('video').videoWidth > 0", timeout=20_000
        )

        assert gateway.peers is not None
        assert gateway.peers.opened_total == 1
        process.kill()  # no goodbye to anyone
        await expect(page.locator("#signaling-state")).to_be_visible(timeout=15_000)
        # The media goes on without the server: the video plays, the badge stays connected.
        before = await page.evaluate("document.getElementById('video').currentTime")
        await page.wait_for_function(
            "t => document.getElementById('video').currentTime > t + 3",
            arg=before,
            timeout=20_000,
        )
        await expect(badge).to_have_attribute("data-state", "link.connected")
        await process.start()

        # Both ends reconnect and re-join, and know each other again: nothing renegotiated.
        await expect(page.locator("#signaling-state")).to_be_hidden(timeout=45_000)
        peers = page.locator("#participants li")
        await expect(peers.filter(has_text="bed-1")).to_have_count(1, timeout=15_000)
        async with asyncio.timeout(30):
            while gateway.consultation_id != row.id:
                await asyncio.sleep(0.1)
        await expect(badge).to_have_attribute("data-state", "link.connected")
        before = await page.evaluate("document.getElementById('video').currentTime")
        await page.wait_for_function(
            "t => document.getElementById('video').currentTime > t + 1",
            arg=before,
            timeout=20_000,
        )
        assert gateway.peers.opened_total == 1
        assert gateway.peers.deaths == 0
