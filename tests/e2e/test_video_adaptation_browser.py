"""What the doctor sees when the bedside's path cannot carry video (issue 12): a real server,
a real gateway with its synthetic camera, the doctor's room in Chromium. The path's
collapse arrives as receiver reports of heavy loss through aiortc's RTCP handling of the
gateway's video sender (the WAN bench makes real ones; a test cannot wait for a congested
relay): the gateway steps the video down and pauses it, the room says so in words, and once
the pause's probe finds the path again the picture moves again, reduced, and says so."""

from __future__ import annotations

import asyncio

import pytest
from aiortc.rtp import RtcpReceiverInfo, RtcpRrPacket
from playwright.async_api import Page, expect

from media.rtc.adapt import VideoMode
from tests.e2e.browser import artifacts_dir, doctor_watching
from tests.helpers import LiveServer, eventually

pytestmark = pytest.mark.slow

_FRAMES = "document.getElementById('video').getVideoPlaybackQuality().totalVideoFrames"


async def _frames_past(page: Page, count: int, timeout: float) -> None:
    """Wait until the video element has shown more than ``count`` frames (polled from here:
    the page's CSP allows no string evaluation, which ``wait_for_function`` uses)."""
    async with asyncio.timeout(timeout):
        while await page.evaluate(_FRAMES) <= count:
            await asyncio.sleep(0.2)


async def test_the_room_says_when_video_is_paused_for_bandwidth(server: LiveServer) -> None:
    async with doctor_watching(server, "bandwidth") as watched:
        gateway, page = watched.gateway, watched.page
        await _frames_past(page, 10, timeout=20)
        badge = page.locator("#video-state")
        await expect(badge).to_be_hidden()

        peers = gateway.peers
        assert peers is not None
        (peer_id,) = peers.open_peers
        media = peers.media_of(peer_id)
        assert media is not None and media.video_adapter is not None
        adapter = media.video_adapter
        (sender,) = [t.sender for t in media.pc.getTransceivers() if t.kind == "video"]
        await eventually(lambda: adapter.send_bps is not None, timeout=10)
        async with asyncio.timeout(30):  # 94 % lost in every report: down to paused
            while adapter.mode is not VideoMode.PAUSED:
                lost = RtcpReceiverInfo(sender._ssrc, 240, 100, 0, 0, 0, 0)
                await sender._handle_rtcp_packet(RtcpRrPacket(ssrc=1, reports=[lost]))
                await asyncio.sleep(0.5)

        await expect(badge).to_be_visible(timeout=5_000)
        await expect(badge).to_have_text(
            "Low bandwidth: video paused; sound and vital signs continue"
        )
        await page.screenshot(path=artifacts_dir() / "room-video-paused.png")
        paused_at = await page.evaluate(_FRAMES)
        await page.wait_for_timeout(2_000)
        assert await page.evaluate(_FRAMES) - paused_at <= 2  # nothing more was sent

        # The probe: the lowest video rung again, said as such.
        await expect(badge).to_have_text(
            "Low bandwidth: video reduced (120p, 5 fps); vital signs continue", timeout=20_000
        )
        await _frames_past(page, paused_at + 10, timeout=20)
        # In the sites' own languages too: the badge, and with it the rest of the room, is
        # relabelled with the page (the tone's state and the call's note once kept theirs).
        for language, words, tone, note in (
            ("ja", "帯域不足: 映像を縮小中（120p", "アラーム音オン", "マイクもカメラも"),
            ("ko", "대역폭 부족: 영상 축소 중 (120p", "알람음 켜짐", "마이크나 카메라가"),
        ):
            await page.select_option("#language", language)
            await expect(badge).to_contain_text(words)
            await expect(page.locator(".tone-state")).to_have_text(tone, timeout=500)
            await expect(page.locator("#call-media-error")).to_contain_text(note)
            await page.screenshot(path=artifacts_dir() / f"room-video-reduced-{language}.png")
        assert watched.errors == []
