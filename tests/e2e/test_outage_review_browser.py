"""Reviewing an outage in the doctor's browser (issue 12): waveforms lost in a link's gap stay
gaps on the live trace, and "Review the outage" shows the gap's samples as the device sampled
them, from what the gateway kept. A real server, gateway and CMS50 simulator sending the
coded test pattern (sample k is k mod 120); the doctor's page in Chromium; the gateway's
connection is closed under it, as a dead path would end it, and rebuilt 4 s later."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from aiortc import RTCIceServer
from playwright.async_api import expect

from devices.codes import PLETH
from devices.simulation.test_pattern import ramp_length
from tests.e2e.browser import artifacts_dir, doctor_watching
from tests.helpers import LiveServer, eventually

pytestmark = [pytest.mark.slow, pytest.mark.browser]

RAMP = ramp_length(60.0)  # the CMS50's pleth: k mod 120, shown as 0..119


async def test_the_outage_review_shows_the_gap_as_the_device_sampled_it(
    server: LiveServer,
) -> None:
    async with doctor_watching(server, "outage", pattern=True) as watched:
        gateway, page = watched.gateway, watched.page
        await page.wait_for_function(
            """(mdc) => window.telemedTraces.ids().some((id) => {
                const trace = window.telemedTraces.get(id);
                return trace.info.mdc === mdc && trace.newest - trace.oldest >= 120;
            })""",
            arg=PLETH.mdc,
            timeout=30_000,
        )
        button = page.locator("button[name=review-outage]")
        await expect(button).to_be_hidden()  # no gap yet

        peers = gateway.peers
        assert peers is not None
        (peer_id,) = peers.open_peers
        media = peers.media_of(peer_id)
        assert media is not None
        fetch = peers._ice_servers

        async def slowly() -> list[RTCIceServer]:  # the way back takes 4 s
            await asyncio.sleep(4.0)
            return await fetch()

        peers._ice_servers = slowly
        await media.pc.close()  # the path dies; the gateway's supervisor rebuilds it
        await eventually(lambda: peers.opened_total >= 2, timeout=30)
        await expect(page.locator("#link-state")).to_have_attribute(
            "data-state", "link.connected", timeout=30_000
        )
        await expect(button).to_be_visible(timeout=10_000)
        # The live trace with its gap, as the doctor sees it when the link is back.
        await page.locator("#traces").screenshot(path=artifacts_dir() / "outage-live-gap.png")

        gaps: list[dict[str, Any]] = await page.evaluate("() => window.telemedOutage.gaps()")
        (gap,) = gaps
        channel, start, end = gap["channel"], gap["from"], gap["to"]
        assert end - start >= 3 * 60, gap  # at least 3 s of the 60 Hz pleth
        # The live trace keeps its gap: nothing of it was placed, its edges were.
        live = await page.evaluate(
            """([id, lo, hi]) => {
                const trace = window.telemedTraces.get(id);
                const around = trace.samples(lo - 1, hi + 1);
                return {info: trace.info, indices: around.indices, values: around.values};
            }""",
            [channel, start, end],
        )
        assert live["info"]["device"] == "oximeter-1"
        assert live["indices"] == [start - 1, end], "the live trace has samples in its gap"
        before, after = (round(v) % RAMP for v in live["values"])

        await button.click()
        await page.wait_for_function(
            "() => window.telemedOutage.reviews().length > 0 "
            "&& window.telemedOutage.reviews().every((r) => r.done)",
            timeout=20_000,
        )
        (review,) = await page.evaluate("() => window.telemedOutage.reviews()")
        assert (review["channel"], review["device"]) == (channel, "oximeter-1")
        assert (review["first"], review["count"]) == (start, end - start)
        values = review["values"]
        assert None not in values, "the gateway kept every sample of the gap"
        codes = [round(v) % RAMP for v in values]
        assert all(abs(v - round(v)) < 0.01 for v in values)
        # As the device sampled them: one ramp step a sample, joining the live edges.
        steps = [(b - a) % RAMP for a, b in zip([before, *codes], [*codes, after], strict=True)]
        assert steps == [1] * (len(codes) + 1)

        panel = page.locator(".outage-review")
        row = panel.locator(".outage-trace")
        await expect(row).to_have_count(1)
        await expect(row.locator(".device")).to_have_text("oximeter-1")
        await expect(row.locator(".history-mark")).to_have_text("history, not live")
        await expect(panel.locator("h3")).to_contain_text("not live")
        await page.locator("#traces").screenshot(path=artifacts_dir() / "outage-review.png")
        assert watched.errors == []
