"""The patient in the room, as each site may see them: Wonju's technician names the patient
when requesting (in Hangul and romanised); without cross-border consent Koriyama's doctor
sees the pseudonym, age band, sex and allergies, and nothing identifying is anywhere in the
page; with consent both sites see who it is. The banner says to whom it shows the identity."""

from __future__ import annotations

import pytest
from playwright.async_api import Page, expect

from signaling.client import SignalingClient, UserCredentials
from signaling.schema import ConsultationAction, Role
from tests.e2e.browser import artifacts_dir, chromium, in_english, sign_in
from tests.helpers import PASSWORD, LiveServer

pytestmark = pytest.mark.slow

NAME, ROMAN = "김민준", "Kim Min-jun"


async def _request(page: Page, consent: bool) -> str:
    """Wonju's technician fills in the request form; returns the new consultation's id."""
    await page.select_option("#consulting-site", "koriyama")
    if consent:
        await page.check("#consent")
    await page.fill("#reason", "chest pain, ECG review")
    await page.fill("#patient-pseudonym", "W-2207")
    await page.fill("#patient-birth-year", "1958")
    await page.select_option("#patient-sex", "male")
    await page.fill("#patient-ward", "5")
    await page.fill("#patient-bed", "12")
    await page.fill("#patient-name", NAME)
    await page.fill("#patient-name-romanised", ROMAN)
    await page.fill("#patient-allergies", "penicillin, latex")
    rows = page.locator("#consultations tbody tr")
    before = await rows.count()
    await page.click("#request-form button[type=submit]")
    await expect(rows).to_have_count(before + 1)
    return str(await rows.first.get_attribute("data-id"))


async def test_each_site_sees_the_patient_as_consent_allows(server: LiveServer) -> None:
    await server.add_user("tech.wonju", Role.TECHNICIAN, "wonju")
    await server.add_user("doctor.koriyama", Role.DOCTOR, "koriyama")
    doctor = SignalingClient(server.base_url, UserCredentials("doctor.koriyama", PASSWORD))
    async with chromium() as browser:
        wonju = await (await browser.new_context(locale="ko-KR")).new_page()
        koriyama = await (await browser.new_context(locale="ja-JP")).new_page()
        for page in (wonju, koriyama):
            await in_english(page)
        await sign_in(wonju, server.base_url, "tech.wonju", PASSWORD)
        withheld = await _request(wonju, consent=False)
        consented = await _request(wonju, consent=True)
        for cid in (withheld, consented):
            await doctor.consultation_action(cid, ConsultationAction.ACCEPT)

        # Without consent: the requesting site sees who it is, and that only it does.
        await wonju.goto(f"{server.base_url}/#/consultations/{withheld}")
        await expect(wonju.locator("#patient-who")).to_have_text(f"{NAME} ({ROMAN})")
        await expect(wonju.locator("#patient-details")).to_contain_text("5 / 12")
        await expect(wonju.locator("#patient-visibility")).to_contain_text("your site only")
        # ...and the consulting site a pseudonym, the age band, sex and allergies: no name,
        # birth year, ward or bed anywhere in the page (or in what the page received).
        await sign_in(
            koriyama, server.base_url, "doctor.koriyama", PASSWORD, f"#/consultations/{withheld}"
        )
        await expect(koriyama.locator("#patient-who")).to_have_text("Patient W-2207")
        await expect(koriyama.locator("#patient-details")).to_have_text("age 60-69 · male")
        await expect(koriyama.locator("#patient-allergies-line")).to_have_text(
            "Allergies: penicillin, latex"
        )
        await expect(koriyama.locator("#patient-visibility")).to_contain_text("withheld")
        html = await koriyama.content()
        for secret in (NAME, ROMAN, "1958", "5 / 12"):
            assert secret not in html, secret
        await koriyama.screenshot(path=artifacts_dir() / "patient-withheld-1366.png")

        # With consent: both sites see who it is.
        await koriyama.goto(f"{server.base_url}/#/consultations/{consented}")
        await expect(koriyama.locator("#patient-who")).to_have_text(f"{NAME} ({ROMAN})")
        await expect(koriyama.locator("#patient-visibility")).to_contain_text("both sites")
    await doctor.close()
