"""The engineer's latency overlay (issue 15) in the doctor's room: F9 opens it over the room;
it shows the bedside camera's capture → display latency in ms, read from the bedside stamp
of each frame Chromium presents, and the waveforms' sample → draw; the gateway logs the
viewer's `latency-report`; and Chromium accepted the gateway's playout-delay extension (its
answer names it)."""

from __future__ import annotations

import asyncio
import logging
import re

import pytest
from playwright.async_api import Page, expect

from media.rtc.playout_delay import PLAYOUT_DELAY_URI
from tests.e2e.browser import artifacts_dir, doctor_watching
from tests.helpers import LiveServer

pytestmark = pytest.mark.slow

_FRAMES = "document.getElementById('video').getVideoPlaybackQuality().totalVideoFrames"


async def _frames_past(page: Page, count: int, timeout: float) -> None:
    async with asyncio.timeout(timeout):
        while await page.evaluate(_FRAMES) <= count:
            await asyncio.sleep(0.2)


async def test_f9_shows_the_bedside_video_latency_and_reports_it(
    server: LiveServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="telemed.gateway.runner")
    async with doctor_watching(server, "latency overlay") as watched:
        page = watched.page
        await _frames_past(page, 5, timeout=15)
        overlay = page.locator("#latency-overlay")
        await expect(overlay).to_be_hidden()
        await page.keyboard.press("F9")
        await expect(overlay).to_be_visible()
        await expect(overlay.locator("h3")).to_have_text("Latency (engineer, last 5 s)")
        video = overlay.locator("dd[data-figure=video]")
        await expect(video).to_have_text(
            re.compile(r"^median \d+\.\d ms · p95 \d+\.\d ms · max \d+\.\d ms \(n=\d+\)$"),
            timeout=5_000,
        )
        await expect(overlay.locator("dd[data-figure=waveform]")).to_contain_text("median")
        await expect(overlay.locator("dd[data-figure=playout]")).to_have_text(
            "min 0 / max 0 ms, negotiated"
        )
        figures = await page.evaluate("window.telemedLatency.figures()")
        assert figures["camera"] == "room"
        assert figures["playoutDelay"] == {"offered": True, "accepted": True}
        # One machine, one clock: each frame was shown after it was captured.
        frames = await page.evaluate("window.telemedLatency.frames()")
        assert len(frames) >= 5
        assert all(0 < f["latencyMs"] < 2000 for f in frames), frames[:5]
        await page.screenshot(path=artifacts_dir() / "latency-overlay.png")

        # The gateway logs the report (the first goes 2 s after opening).
        def logged() -> list[str]:
            return [r.getMessage() for r in caplog.records if "latency seen by" in r.getMessage()]

        async with asyncio.timeout(10):
            while not logged():
                await asyncio.sleep(0.2)
        (line, *_) = logged()
        assert re.search(r"video room capture→presentation median \d+\.\d p95", line), line
        assert "waveform sample→draw median" in line
        assert "jitter buffer" in line and "decode" in line

        # The answer Chromium made accepts the extension the gateway offered.
        peers = watched.gateway.peers
        assert peers is not None
        (peer_id,) = peers.open_peers
        media = peers.media_of(peer_id)
        assert media is not None
        assert PLAYOUT_DELAY_URI in media.pc.remoteDescription.sdp

        # In the sites' languages too.
        await page.select_option("#language", "ja")
        await expect(overlay.locator("h3")).to_have_text("遅延（技術者用、直近5秒）")
        await expect(video).to_contain_text("中央値")
        await page.screenshot(path=artifacts_dir() / "latency-overlay-ja.png")

        await page.keyboard.press("F9")
        await expect(overlay).to_be_hidden()
        assert watched.errors == []
