"""The room's image panel in Chromium (issue 13), against the server as ``telemed serve``
builds it (media's renderer wired in), with instances stored through the real STOW-RS
route.

Koriyama's doctor (English) and Wonju's bedside doctor (Korean, the site's language) are in
one room. A de-identified CT (pydicom's CT_small, Pixel Spacing 0.661468 mm) is there
before they open it; its series shows with a thumbnail and "De-identified". The bedside
doctor records the patient's imaging consent (a confirmation first); both pages say so.
An identified ultrasound cine (a Korean name, 16 frames) is then stored and appears on both
pages at once (``imaging.stored``). The Koriyama doctor opens the CT: the soft-tissue and
bone presets give different images (the canvas's pixels, not just a request); a length
measured across 100 image pixels reads 66.1 mm; the other page follows the image, window
and pointer. The cine plays (frames advance, the picture changes), the follower's frames
with it, and the ultrasound (no Pixel Spacing) measures in pixels and says why. The bedside
doctor takes control and the first page follows. Screenshots in English and Korean are kept
in test-artifacts.
"""

from __future__ import annotations

import io
import re
from collections.abc import AsyncIterator
from pathlib import Path
from typing import cast

import numpy as np
import pytest
import pytest_asyncio
from PIL import Image
from playwright.async_api import ConsoleMessage, Page, expect
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

from signaling.config import DEFAULT_SITES
from signaling.server.services import Services
from telemed.serve import build_app, start_server
from tests.e2e.browser import artifacts_dir, chromium, in_english, sign_in
from tests.helpers import PASSWORD, LiveServer, make_config
from tests.signaling.imaging.dicoms import US_MULTIFRAME, ct, encode, uids
from tests.signaling.imaging.room import SEOUL, ImagingRoom, part, related

pytestmark = [pytest.mark.slow, pytest.mark.browser]

_ACCESSIBILITY = (Path(__file__).parent / "accessibility.js").read_text(encoding="utf-8")
CT_SPACING = 0.661468
FRAMES = 16
CANVAS = "#imaging-canvas"


@pytest_asyncio.fixture
async def room(tmp_path: Path) -> AsyncIterator[ImagingRoom]:
    config = make_config(tmp_path, sites=(*DEFAULT_SITES, SEOUL))
    app = build_app(config)
    server, task, port = await start_server(app, config, log_level="warning")
    try:
        live = LiveServer(config, f"http://127.0.0.1:{port}", cast(Services, app.state.services))
        async with ImagingRoom(live) as r:
            await r.setup()
            yield r
    finally:
        server.should_exit = True
        await task


def _cine(name: str) -> bytes:
    """A 16-frame ultrasound cine, 120x160, a bright disc crossing a speckled sector, with a
    Korean name in UTF-8 and no Pixel Spacing (the panel must measure it in pixels)."""
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.file_meta.MediaStorageSOPClassUID = US_MULTIFRAME
    ds.SOPClassUID = US_MULTIFRAME
    ds.SOPInstanceUID = generate_uid()
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    ds.StudyInstanceUID, ds.SeriesInstanceUID = generate_uid(), generate_uid()
    ds.SpecificCharacterSet = "ISO_IR 192"
    ds.PatientName, ds.PatientID, ds.PatientIdentityRemoved = name, "W-0042", "NO"
    ds.Modality, ds.SeriesDescription, ds.StudyDescription = "US", "Cardiac 4CH", "Echo"
    ds.StudyDate, ds.StudyTime = "20261202", "101500"
    ds.SeriesNumber, ds.InstanceNumber = 2, 1
    ds.NumberOfFrames, ds.Rows, ds.Columns = FRAMES, 120, 160
    ds.FrameTime = "50"  # 20 fps
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.BitsAllocated = ds.BitsStored = 8
    ds.HighBit, ds.PixelRepresentation = 7, 0
    rng = np.random.default_rng(7)
    yy, xx = np.mgrid[0:120, 0:160]
    frames = []
    for k in range(FRAMES):
        frame = (rng.random((120, 160)) * 60).astype(np.uint8)
        cx = 20 + k * 120 / FRAMES
        frame[(xx - cx) ** 2 + (yy - 60) ** 2 < 15**2] = 230
        frames.append(frame)
    ds.PixelData = np.stack(frames).tobytes()
    return encode(ds)


async def _stow(room: ImagingRoom, data: bytes) -> None:
    response = await room.stow(related([part(data)]))
    assert response.status_code == 200, response.text


def _page_fault(message: ConsoleMessage) -> bool:
    """A console error or warning (the server's headers included: a Permissions-Policy
    feature Chromium does not know is warned about here, and was removed for it)."""
    return message.type in ("error", "warning")


async def _pixels(page: Page) -> np.ndarray:
    """The canvas's grey levels as shown (a screenshot of it)."""
    png = await page.locator(CANVAS).screenshot()
    return np.asarray(Image.open(io.BytesIO(png)).convert("L"), dtype=np.float64)


async def _shown(page: Page, *, window: str | None = None, frame: str | None = None) -> None:
    """The canvas shows what was asked (its data attributes are set when a render is drawn)."""
    canvas = page.locator(CANVAS)
    if window is not None:
        await expect(canvas).to_have_attribute("data-window", window, timeout=15_000)
    if frame is not None:
        await expect(canvas).to_have_attribute("data-frame", frame, timeout=15_000)
    await expect(canvas).not_to_have_attribute("data-loading", "true", timeout=15_000)


async def _image_point(
    page: Page, x: float, y: float, size: tuple[int, int]
) -> tuple[float, float]:
    """The page position of image pixel (x, y) at zoom 1 (the image fitted and centred)."""
    box = await page.locator(CANVAS).bounding_box()
    assert box is not None
    scale = min(box["width"] / size[0], box["height"] / size[1])
    left = box["x"] + (box["width"] - size[0] * scale) / 2
    top = box["y"] + (box["height"] - size[1] * scale) / 2
    return left + x * scale, top + y * scale


async def test_image_panel_presets_measure_cine_and_the_shared_view(room: ImagingRoom) -> None:
    ct_file = ct(deidentified=True)
    ct_sop = uids(ct_file)[2]
    await _stow(room, ct_file)
    shots = artifacts_dir()
    async with chromium() as browser:
        errors: list[str] = []
        pages: list[Page] = []
        for user, english in (("dk", True), ("dw", False)):
            page = await (
                await browser.new_context(locale="en-US", viewport={"width": 1366, "height": 768})
            ).new_page()
            page.on("pageerror", lambda exc: errors.append(str(exc)))
            page.on("console", lambda m: errors.append(m.text) if _page_fault(m) else None)
            if english:
                await in_english(page)
            await sign_in(page, room.server.base_url, user, PASSWORD, f"#/consultations/{room.cid}")
            pages.append(page)
        dk, dw = pages

        # The CT stored before: listed with a thumbnail, what it is and that it is de-identified.
        ct_item = dk.locator("button.series[data-modality=CT]")
        await expect(ct_item).to_contain_text("CT", timeout=15_000)
        await expect(ct_item).to_contain_text("1 image")
        await expect(ct_item.locator(".privacy")).to_have_text("De-identified")
        # The thumbnail: the server's rendering at 128x128, decoded by the page.
        await dk.wait_for_function(
            "() => document.querySelector('button.series[data-modality=CT] img')?.naturalWidth"
            " === 128"
        )
        await expect(dk.locator("#imaging-consent-state")).to_have_attribute(
            "data-consent", "false"
        )
        # Only the bedside site records consent.
        await expect(dk.locator("#imaging-consent")).to_be_hidden()

        # The bedside doctor records the imaging consent, after a confirmation (in Korean).
        await expect(dw.locator("#imaging-consent")).to_have_text("영상 동의 기록")
        await dw.locator("#imaging-consent").click()
        dialog = dw.locator("#confirm-imaging-consent")
        await expect(dialog).to_be_visible()
        await dw.screenshot(path=shots / "imaging-consent-ko.png")
        await dialog.locator("#confirm-imaging-consent-ok").click()
        for page in (dk, dw):
            await expect(page.locator("#imaging-consent-state")).to_have_attribute(
                "data-consent", "true", timeout=10_000
            )
        await expect(dk.locator("#imaging-consent-state")).to_contain_text(
            "Imaging consent recorded"
        )
        assert [(a, d["consent"]) for a, _, d in await room.audit("imaging.consent")] == [
            ("dw", True)
        ]

        # An identified ultrasound cine arrives: on both pages at once, its name as stored.
        await _stow(room, _cine("김민준"))
        us_item = dk.locator("button.series[data-modality=US]")
        for page in (dk, dw):
            await expect(page.locator("button.series[data-modality=US]")).to_be_visible(
                timeout=10_000
            )
        await expect(us_item).to_contain_text("US · Cardiac 4CH")
        await expect(us_item).to_contain_text(f"1 image, {FRAMES} frames")
        await expect(us_item.locator(".privacy")).to_have_text("Identified: 김민준")
        await expect(dk.locator(".series-list li.study").nth(1)).to_contain_text("김민준")

        # The CT: the presets change the picture itself; the window's values are shown.
        await ct_item.click()
        await _shown(dk, window="file")
        await expect(dk.locator("#imaging-spacing")).to_contain_text("0.6615")
        await dk.locator("#imaging-presets [data-preset=soft-tissue]").click()
        await _shown(dk, window="40,400")
        soft = await _pixels(dk)
        await dk.locator("#imaging-presets [data-preset=bone]").click()
        await _shown(dk, window="400,1800")
        await expect(dk.locator("#imaging-window")).to_have_text("Window C 400 / W 1800 (Bone)")
        bone = await _pixels(dk)
        # Soft tissue (~40 HU) is mid-grey in its own window and darker in bone's (~0.3).
        assert soft.mean() - bone.mean() > 15, (soft.mean(), bone.mean())
        assert float(np.abs(soft - bone).mean()) > 15
        await expect(dk.locator("#imaging-presets [data-preset=bone]")).to_have_attribute(
            "aria-pressed", "true"
        )

        # The other page follows: the same image and window, and "following dk".
        await expect(dw.locator(CANVAS)).to_have_attribute("data-sop", ct_sop, timeout=10_000)
        await _shown(dw, window="400,1800")
        await expect(dw.locator("#imaging-share")).to_have_attribute("data-mode", "following")
        await expect(dw.locator("#imaging-share-state")).to_contain_text("dk")
        await expect(dk.locator("#imaging-share")).to_have_attribute("data-mode", "leading")
        followed = await _pixels(dw)
        assert followed.shape == bone.shape and float(np.abs(followed - bone).mean()) < 3

        # The pointer: over image pixel (32, 96) on one page, there on the other.
        x, y = await _image_point(dk, 32, 96, (128, 128))
        await dk.mouse.move(x, y)
        await dk.mouse.move(x + 0.5, y)
        pointer = dw.locator(CANVAS)
        await expect(pointer).to_have_attribute(
            "data-remote-pointer", re.compile(r".+"), timeout=10_000
        )
        px, py = (
            float(v) for v in (await pointer.get_attribute("data-remote-pointer") or "").split(",")
        )
        assert abs(px - 32) < 1.5 and abs(py - 96) < 1.5, (px, py)

        # A length across 100 image pixels, with Pixel Spacing: 100 x 0.661468 mm.
        await dk.locator("#imaging-tools [data-tool=measure]").click()
        ax, ay = await _image_point(dk, 14, 64, (128, 128))
        bx, by = await _image_point(dk, 114, 64, (128, 128))
        await dk.mouse.move(ax, ay)
        await dk.mouse.down()
        await dk.mouse.move(bx, by, steps=5)
        await dk.mouse.up()
        text = await dk.locator("#imaging-measure-result").text_content() or ""
        match = re.fullmatch(r"Length ([0-9.]+) mm", text)
        assert match, text
        assert abs(float(match.group(1)) - 100 * CT_SPACING) < 0.3, text
        await dk.screenshot(path=shots / "imaging-ct-bone-en.png", full_page=True)
        await dw.screenshot(path=shots / "imaging-ct-following-ko.png", full_page=True)

        # Window and level by right-drag (whatever the tool): the server is asked again for
        # the window the drag rests on, not for each step of it; the follower gets it too.
        rendered: list[str] = []
        dk.on("request", lambda r: rendered.append(r.url) if "/rendered" in r.url else None)
        cx, cy = await _image_point(dk, 64, 64, (128, 128))
        await dk.mouse.move(cx, cy)
        await dk.mouse.down(button="right")
        await dk.mouse.move(cx + 150, cy - 60, steps=30)
        await dk.mouse.up(button="right")
        await expect(dk.locator("#imaging-window")).to_contain_text("(adjusted)")
        await _shown(dk)
        window = await dk.locator(CANVAS).get_attribute("data-window") or ""
        centre, width = (float(v) for v in window.split(","))
        assert centre < 400 and width > 1800, window  # up lowers the level, right widens
        assert 1 <= len(rendered) <= 6, rendered
        await _shown(dw, window=window)
        # The keyboard: Shift+Up lowers the level; Escape clears the measurement.
        await dk.locator(CANVAS).focus()
        await dk.keyboard.press("Shift+ArrowUp")
        await expect(dk.locator(CANVAS)).not_to_have_attribute("data-window", window)
        await dk.keyboard.press("Escape")
        await expect(dk.locator("#imaging-measure-result")).to_have_text("")

        # The cine: frames advance and the picture with them; the follower's frames too.
        await us_item.click()
        await _shown(dk, frame="1")
        await expect(dk.locator("#imaging-cine")).to_be_visible()
        await expect(dk.locator("#imaging-fps")).to_have_value("20")
        first = await _pixels(dk)
        await dk.locator("#imaging-play").click()
        seen: set[str] = set()
        followed_frames: set[str] = set()
        for _ in range(60):
            seen.add(await dk.locator(CANVAS).get_attribute("data-frame") or "")
            followed_frames.add(await dw.locator(CANVAS).get_attribute("data-frame") or "")
            if len(seen) >= 6 and len(followed_frames) >= 3:
                break
            await dk.wait_for_timeout(100)
        assert len(seen) >= 6, seen
        assert len(followed_frames) >= 3, followed_frames
        await dk.locator("#imaging-play").click()  # pause
        await expect(dk.locator("#imaging-play")).to_have_attribute("aria-pressed", "false")
        await _shown(dk)
        if await dk.locator(CANVAS).get_attribute("data-frame") == "1":  # paused where it began
            await dk.locator("#imaging-frame-next").click()
            await _shown(dk, frame="2")
        later = await _pixels(dk)
        assert float(np.abs(first - later).mean()) > 2
        # No Pixel Spacing: a length in pixels, and the panel says why.
        await expect(dk.locator("#imaging-spacing")).to_have_text(
            "No pixel spacing in this image: lengths in pixels only"
        )
        ax, ay = await _image_point(dk, 20, 60, (160, 120))
        bx, by = await _image_point(dk, 60, 90, (160, 120))
        await dk.mouse.move(ax, ay)
        await dk.mouse.down()
        await dk.mouse.move(bx, by, steps=3)
        await dk.mouse.up()
        text = await dk.locator("#imaging-measure-result").text_content() or ""
        match = re.fullmatch(r"Length ([0-9.]+) px \(not calibrated: no pixel spacing\)", text)
        assert match and abs(float(match.group(1)) - 50) < 1.5, text

        # The bedside doctor takes control: now the first page follows.
        await expect(dw.locator("#imaging-take-control")).to_be_visible()
        await dw.locator("#imaging-take-control").click()
        await _shown(dw)
        frame = int(await dw.locator(CANVAS).get_attribute("data-frame") or "0")
        await dw.locator("#imaging-frame-next").click()
        after = str(frame % FRAMES + 1)
        await _shown(dw, frame=after)
        await expect(dk.locator("#imaging-share")).to_have_attribute(
            "data-mode", "following", timeout=10_000
        )
        await expect(dk.locator("#imaging-share-state")).to_have_text("Following dw")
        await _shown(dk, frame=after)
        # While following, the shared controls wait for "Take control".
        await expect(dk.locator("#imaging-play")).to_be_disabled()

        await dk.screenshot(path=shots / "imaging-us-following-en.png", full_page=True)
        await dw.screenshot(path=shots / "imaging-us-leading-ko.png", full_page=True)
        for page in (dk, dw):
            assert await page.evaluate(_ACCESSIBILITY) == []
        assert errors == []
