"""The bedside's two cameras in the doctor's room: a real server, a real gateway with a
synthetic room camera and a synthetic ultrasound (a diagnostic camera) and its imaging path,
the Koriyama doctor's room in Chromium. Each camera is its own labelled tile; on the
ultrasound's, Freeze holds the frame and Keep as image keeps it in the consultation (the
patient consented), which the tile says and the server's index shows."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from playwright.async_api import Page, expect

from devices.dicom.scp import ScpSettings
from signaling.schema import Role
from telemed.gateway.cameras import CameraSpec
from telemed.gateway.imaging import ImagingConfig
from tests.devices.dicom.dicom_helpers import STORESCU
from tests.e2e.bedside import bedside
from tests.e2e.browser import artifacts_dir, chromium, in_english, sign_in
from tests.helpers import PASSWORD, LiveServer, eventually
from tests.signaling.imaging.room import ImagingRoom
from tests.signaling.sockets import active_consultation

pytestmark = pytest.mark.slow

ULTRASOUND = CameraSpec("ultrasound", "synthetic", "diagnostic")
DIAGNOSTIC = ".camera-tile.diagnostic[data-camera='ultrasound']"


async def _playing(page: Page, selector: str) -> None:
    """Wait until the video in ``selector`` has decoded frames (polled from here: the page's
    CSP allows no string evaluation, which ``wait_for_function`` uses)."""
    async with asyncio.timeout(30):
        while not await page.locator(selector).evaluate("v => v.videoWidth > 0"):
            await asyncio.sleep(0.2)


async def test_two_labelled_cameras_and_a_kept_ultrasound_frame(
    server: LiveServer, tmp_path: Path
) -> None:
    users = [("tw", Role.TECHNICIAN, "wonju"), ("dk", Role.DOCTOR, "koriyama")]
    scp = ScpSettings(port=0, host="127.0.0.1", allowed_calling=(STORESCU,))
    async with ImagingRoom(server) as room:
        room.tokens, room.cid = await active_consultation(server, users)
        assert (await room.consent(True)).status_code == 200
        async with (
            bedside(
                server,
                cameras=(ULTRASOUND,),
                imaging=ImagingConfig(scp, consent_ttl_s=0),
                data_dir=tmp_path / "gateway",
            ) as gateway,
            chromium() as browser,
        ):
            page = await browser.new_page(locale="en-US", viewport={"width": 1366, "height": 768})
            errors: list[str] = []
            page.on("pageerror", lambda exc: errors.append(str(exc)))
            await in_english(page)
            await sign_in(page, server.base_url, "dk", PASSWORD, f"#/consultations/{room.cid}")
            await expect(page.locator("#link-state")).to_have_attribute(
                "data-state", "link.connected", timeout=30_000
            )
            # Two tiles, each labelled by the cameras event, each playing its own track.
            await expect(page.locator("#room-camera-label")).to_have_text("Room camera")
            tile = page.locator(DIAGNOSTIC)
            await expect(tile.locator(".camera-label")).to_have_text(
                "ultrasound (diagnostic, as captured)", timeout=20_000
            )
            await expect(page.locator("#camera-tiles .camera-tile")).to_have_count(2)
            await _playing(page, "#video")
            await _playing(page, f"{DIAGNOSTIC} video")
            streams = await page.evaluate(
                "() => [...document.querySelectorAll('#camera-tiles video')]"
                ".map((v) => v.srcObject?.getVideoTracks()[0]?.id)"
            )
            assert len(streams) == 2 and None not in streams and streams[0] != streams[1]

            # Freeze: the frame holds on a canvas; Keep as image: kept, and said so.
            await tile.get_by_role("button", name="Freeze").click()
            await expect(tile).to_have_attribute("data-state", "frozen")
            await expect(tile.locator("canvas")).to_be_visible()
            await expect(tile.locator("video")).to_be_hidden()
            # The frozen picture's stamp names its frame (the bedside holds it)...
            frozen = await tile.locator("canvas").get_attribute("data-frame-id")
            assert frozen is not None and frozen.isdigit(), frozen
            # ...and the doctor takes their time: longer than the bedside's recent seconds.
            await page.wait_for_timeout(2_500)
            await tile.get_by_role("button", name="Keep as image").click()
            outcome = tile.locator(".camera-outcome")
            await expect(outcome).to_have_attribute("data-outcome", "kept", timeout=30_000)
            await expect(outcome).to_have_text(
                "Kept as captured (the patient consented); it joins the images of this "
                "consultation."
            )
            # The frame kept is the one frozen: no times to compare.
            await expect(tile).to_have_attribute("data-kept-frame-id", frozen)
            await expect(tile.locator(".camera-kept-when")).to_have_text("")
            await page.screenshot(path=artifacts_dir() / "room-cameras-kept.png")

            imaging = gateway.imaging
            assert imaging is not None
            await eventually(lambda: imaging.forwarder.sent == 1, timeout=30)
            [row] = await room.indexed()
            uid = await tile.get_attribute("data-sop-instance-uid")
            assert (row.consultation_id, row.sop_instance_uid) == (room.cid, uid)

            # Live: the video again, ready to freeze the next frame.
            await tile.get_by_role("button", name="Live").click()
            await expect(tile.locator("video")).to_be_visible()
            await expect(tile.get_by_role("button", name="Freeze")).to_be_visible()
            assert errors == []
