"""The site's PACS from the room, in Chromium: Orthanc as Wonju's PACS, the real server and
gateway (its imaging path and --pacs). Wonju's technician searches by patient ID, sees the
study with the Korean name in its own script, pulls it, is told "Pulled: 2 images", and the
images join the panel as stored images do. Koriyama's doctor sees only that the bedside can
pull."""

from __future__ import annotations

from pathlib import Path

import pytest
from playwright.async_api import expect

from devices.dicom.pacs import PacsSettings
from devices.dicom.scp import ScpSettings
from signaling.schema import Role
from telemed.gateway.imaging import ImagingConfig
from tests.devices.dicom.dicom_helpers import STORESCU
from tests.devices.dicom.orthanc import orthanc
from tests.e2e.bedside import bedside
from tests.e2e.browser import artifacts_dir, chromium, in_english, sign_in
from tests.e2e.pacs_study import PATIENT_ID, load, study_files
from tests.helpers import PASSWORD, LiveServer
from tests.signaling.sockets import active_consultation

pytestmark = pytest.mark.slow


async def test_the_bedside_site_searches_its_pacs_and_pulls_a_study(
    server: LiveServer, tmp_path: Path
) -> None:
    paths, study_uid = study_files(tmp_path)
    users = [("tw", Role.TECHNICIAN, "wonju"), ("dk", Role.DOCTOR, "koriyama")]
    scp = ScpSettings(port=0, host="127.0.0.1", allowed_calling=(STORESCU,))
    async with orthanc(tmp_path / "pacs") as pacs_server:
        await load(pacs_server, paths)
        pacs = PacsSettings("127.0.0.1", pacs_server.dicom_port, pacs_server.ae_title)
        _, cid = await active_consultation(server, users)
        async with (
            bedside(server, imaging=ImagingConfig(scp, pacs=pacs), data_dir=tmp_path / "gateway"),
            chromium() as browser,
        ):
            errors: list[str] = []
            pages = {}
            for name in ("tw", "dk"):
                page = await browser.new_page(
                    locale="en-US", viewport={"width": 1366, "height": 900}
                )
                page.on("pageerror", lambda exc: errors.append(str(exc)))
                await in_english(page)
                await sign_in(page, server.base_url, name, PASSWORD, f"#/consultations/{cid}")
                await expect(page.locator("#link-state")).to_have_attribute(
                    "data-state", "link.connected", timeout=30_000
                )
                pages[name] = page

            # The other site: told the bedside can pull, no search of its own.
            koriyama = pages["dk"]
            await expect(koriyama.locator("#pacs")).to_be_hidden()
            await expect(koriyama.locator("#pacs-elsewhere")).to_be_visible()

            page = pages["tw"]
            await expect(page.locator("#pacs-elsewhere")).to_be_hidden()
            section = page.locator("#pacs")
            await section.locator("summary").click()
            await page.fill("#pacs-patient-id", PATIENT_ID)
            await page.get_by_role("button", name="Search").click()
            await expect(page.locator("#pacs-state")).to_have_text("1 study found", timeout=30_000)
            study = page.locator(f"#pacs-results li[data-study='{study_uid}']")
            await expect(study.locator(".who")).to_have_text(f"김 민지 (Kim Minji) · {PATIENT_ID}")
            await expect(study.locator(".what")).to_have_text(
                "2026-12-01 · CT chest · CT · 2 images"
            )

            await study.get_by_role("button", name="Pull into consultation").click()
            outcome = study.locator(".outcome")
            await expect(outcome).to_have_attribute("data-outcome", "pulled", timeout=60_000)
            await expect(outcome).to_have_text("Pulled: 2 images")
            # The images join the panel (imaging.stored), on both sites' pages.
            for p in (page, koriyama):
                series = p.locator("#imaging-series-list button.series[data-modality='CT']")
                await expect(series).to_have_count(1, timeout=30_000)
                await expect(series.locator(".series-text")).to_contain_text("2 images")
            await page.screenshot(path=artifacts_dir() / "room-pacs-pulled.png", full_page=True)
            # In Korean, the section and the outcome are told again in the page's language.
            await page.select_option("#language", "ko")
            await expect(section.locator("summary")).to_have_text("PACS에서 가져오기")
            await expect(outcome).to_have_text("가져옴: 영상 2장")
            await expect(page.locator("#pacs-state")).to_have_text("검사 1건을 찾았습니다")
            await page.locator("#imaging").screenshot(path=artifacts_dir() / "room-pacs-ko.png")
            await koriyama.screenshot(path=artifacts_dir() / "room-pacs-other-site.png")
            assert errors == []
