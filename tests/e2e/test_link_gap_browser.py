"""Values measured while the bedside link was down (issue 12): the room says how many, from
which device, and that Trends has them. A real server, gateway and oximeter simulator; the
doctor's page in Chromium; the gateway's connection to the doctor is closed under it, as a
dead path would end it, and rebuilt by the gateway's supervisor."""

from __future__ import annotations

import asyncio
import re

import pytest
from aiortc import RTCIceServer
from playwright.async_api import expect

from tests.e2e.browser import doctor_watching
from tests.helpers import LiveServer, eventually

pytestmark = pytest.mark.slow


async def test_the_room_says_what_a_link_gap_missed(server: LiveServer) -> None:
    async with doctor_watching(server, "gap") as watched:
        gateway, page = watched.gateway, watched.page
        badge = page.locator("#link-state")
        await expect(page.locator("#num-spo2")).to_be_visible(timeout=20_000)
        notices = page.locator("#notices .notice")
        missed = notices.filter(has_text="were measured while the link was down")
        await page.wait_for_timeout(4_000)  # the first connection's check: nothing missed
        await expect(missed).to_have_count(0)

        peers = gateway.peers
        assert peers is not None
        (peer_id,) = peers.open_peers
        media = peers.media_of(peer_id)
        assert media is not None
        # The way back takes 4 s (the ICE servers come slowly, as over a bad uplink),
        # so the oximeter's values go on being measured with no connection to carry them.
        fetch = peers._ice_servers

        async def slowly() -> list[RTCIceServer]:
            await asyncio.sleep(4.0)
            return await fetch()

        peers._ice_servers = slowly
        await media.pc.close()  # the path dies; the gateway's supervisor rebuilds it
        await eventually(lambda: peers.opened_total >= 2, timeout=30)
        await expect(badge).to_have_attribute("data-state", "link.connected", timeout=30_000)
        await expect(missed).to_have_count(1, timeout=10_000)
        text = await missed.inner_text()
        found = re.match(r"(\d+) values from oximeter-1 were measured", text)
        assert found is not None, text
        # About 3 values a second for 4 s, less each parameter's latest (re-sent).
        assert int(found.group(1)) >= 3
        assert "Trends" in text
        assert watched.errors == []
