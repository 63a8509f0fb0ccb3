"""The room survives the browser, as clinicians use it (headless Chromium, a real server and,
where the bedside matters, a real gateway with simulated devices): the list updates live,
reload and Back keep your place, two tabs are one person, ending is asked, then frozen and
summarised, a snapshot is stored, and one screen holds video, ECG and vital signs at the
common clinic screen sizes."""

from __future__ import annotations

import json
import re
import time
from pathlib import Path
from typing import Any

import pytest
from playwright.async_api import Page, expect

from devices.codes import ECG_II
from signaling.api_models import PatientIn
from signaling.client import SignalingClient, UserCredentials
from signaling.schema import Chat, ConsultationAction, Role, Sex
from tests.e2e.bedside import bedside
from tests.e2e.browser import artifacts_dir, chromium, in_english, sign_in
from tests.helpers import PASSWORD, LiveServer, next_of_type

pytestmark = pytest.mark.slow


async def _accepted(server: LiveServer, request: Any) -> Any:
    """Koriyama's doctor accepts the consultation ``request`` (awaited: Wonju's request)
    returns; the accepted consultation."""
    row = await request
    doctor = SignalingClient(server.base_url, UserCredentials("doctor.koriyama", PASSWORD))
    try:
        await doctor.consultation_action(row.id, ConsultationAction.ACCEPT)
    finally:
        await doctor.close()
    return row


async def _clinicians(server: LiveServer) -> tuple[int, int]:
    doctor = await server.add_user("doctor.koriyama", Role.DOCTOR, "koriyama")
    tech = await server.add_user("tech.wonju", Role.TECHNICIAN, "wonju")
    return doctor.id, tech.id


async def test_live_list_reload_back_and_two_tabs(server: LiveServer) -> None:
    doctor_id, _ = await _clinicians(server)
    tech = SignalingClient(server.base_url, UserCredentials("tech.wonju", PASSWORD))
    await tech.start()
    figures: dict[str, float] = {}
    try:
        async with chromium() as browser:
            context = await browser.new_context(locale="en-US")
            page = await context.new_page()
            errors: list[str] = []
            page.on("pageerror", lambda exc: errors.append(str(exc)))
            await in_english(page)
            await sign_in(page, server.base_url, "doctor.koriyama", PASSWORD)
            await expect(page.locator("#consultations-empty")).to_be_visible()

            # Wonju asks while Koriyama's doctor looks at the list: it appears by itself,
            # with a notice (an ARIA live region) for the doctor who can accept it.
            asked = time.monotonic()
            row = await tech.request_consultation("koriyama", False, "ECG review")
            listed = page.locator(f"tr[data-id='{row.id}']")
            await expect(listed.locator(".state")).to_have_text("Requested", timeout=10_000)
            figures["list_update_s"] = round(time.monotonic() - asked, 2)
            await expect(page.locator("#notices .notice.request")).to_contain_text("Wonju")
            await listed.locator("button[data-action='consultations.accept']").click()
            await expect(listed.locator(".state")).to_have_text("Active")
            await listed.locator("button[data-action='consultations.join']").click()
            await expect(page.locator("#room-view")).to_be_visible()
            assert page.url.endswith(f"#/consultations/{row.id}")

            # Chat is part of the consultation's record: sent, then replayed after a reload.
            await tech.join(row.id)
            await tech.send(Chat(text="Lead II attached"))
            await expect(page.locator("#chat-log li .text").last).to_have_text("Lead II attached")
            await expect(page.locator("#chat-log li .who").last).to_contain_text(
                "tech.wonju · Wonju"
            )
            await page.reload()
            await expect(page.locator("#room-view")).to_be_visible()  # still here, signed in
            await expect(page.locator("#whoami")).to_contain_text("doctor.koriyama")
            await expect(page.locator("#chat-log li .text")).to_have_text(["Lead II attached"])
            # Times carry their zone (the viewer's).
            who = await page.locator("#chat-log li .who").first.text_content()
            assert who is not None and ("GMT" in who or "UTC" in who or "JST" in who), who

            # Back returns to the list, Forward to the room: never out of the app.
            await page.go_back()
            await expect(page.locator("#list-view")).to_be_visible()
            await page.go_forward()
            await expect(page.locator("#room-view")).to_be_visible()

            # A second tab is its own session (sessionStorage), yet the same person: the
            # room shows one participant, with two tabs.
            second = await context.new_page()
            await in_english(second)
            await sign_in(
                second,
                server.base_url,
                "doctor.koriyama",
                PASSWORD,
                path=f"#/consultations/{row.id}",
            )
            mine = page.locator(f'.participant[data-principal="user:{doctor_id}"]')
            await expect(mine).to_have_count(1, timeout=10_000)
            await expect(mine.locator(".status")).to_contain_text("2 tabs", timeout=10_000)
            await second.close()
            await expect(mine.locator(".status")).not_to_contain_text("2 tabs", timeout=10_000)

            # Signing out ends the tab's session: a reload shows the sign-in form.
            await page.click("#logout")
            await expect(page.locator("#login-view")).to_be_visible()
            await page.reload()
            await expect(page.locator("#login-view")).to_be_visible()
            assert errors == []
    finally:
        await tech.close()
    (artifacts_dir() / "room-list.json").write_text(json.dumps(figures))


async def _room_with_bedside(page: Page, server: LiveServer, row_id: str) -> None:
    await in_english(page)
    await sign_in(page, server.base_url, "doctor.koriyama", PASSWORD, f"#/consultations/{row_id}")
    await expect(page.locator("#link-state")).to_have_attribute(
        "data-state", "link.connected", timeout=30_000
    )


async def test_ending_freezes_the_room_and_summarises_it(server: LiveServer) -> None:
    await _clinicians(server)
    tech = SignalingClient(server.base_url, UserCredentials("tech.wonju", PASSWORD))
    await tech.start()
    try:
        row = await _accepted(server, tech.request_consultation("koriyama", True, "chest pain"))
        async with bedside(server), chromium() as browser:
            page = await browser.new_page(locale="en-US")
            errors: list[str] = []
            page.on("pageerror", lambda exc: errors.append(str(exc)))
            await _room_with_bedside(page, server, row.id)
            await page.wait_for_function(
                "() => document.getElementById('video').videoWidth > 0", timeout=20_000
            )
            await page.fill("#chat-text", "Please repeat the NIBP")
            await page.click("#chat-form button")
            await expect(page.locator("#chat-log li .text")).to_have_text(
                ["Please repeat the NIBP"]
            )

            # The bedside camera, snapshotted and stored with the consultation.
            await page.click("#snapshot")
            await expect(page.locator("#notices .notice")).to_contain_text("Snapshot stored")
            shots = await tech.list_snapshots(row.id)
            assert len(shots) == 1 and shots[0].content_type == "image/jpeg"

            # Ending is asked first; keeping it open changes nothing.
            await page.click("#close-consultation")
            await expect(page.locator("#confirm-end")).to_be_visible()
            await page.click("#confirm-end button[value=cancel]")
            await expect(page.locator("#room-ended")).to_be_hidden()
            await page.click("#close-consultation")
            await page.click("#confirm-end button[value=end]")

            # Ended: said and when, the badge no longer live, traces and tiles frozen and
            # marked, chat closed, a summary.
            await expect(page.locator("#room-ended")).to_be_visible()
            await expect(page.locator("#room-ended-text")).to_contain_text("ended at")
            await expect(page.locator("#link-state")).to_have_attribute("data-state", "link.ended")
            await expect(page.locator(".trace").first).to_have_attribute("data-frozen", "true")
            await expect(page.locator(".trace .label").first).to_contain_text("stopped at the end")
            await expect(page.locator("#chat-text")).to_be_disabled()
            summary = page.locator("#room-summary")
            await expect(summary.locator("dd[data-key='summary.messages']")).to_have_text("1")
            await expect(summary.locator("dd[data-key='summary.snapshots']")).to_have_text("1")
            await expect(summary.locator("dd[data-key='summary.participants']")).to_contain_text(
                "doctor.koriyama"
            )
            # The chat is kept with the consultation's record.
            assert [m.text for m in await tech.chat_history(row.id)] == ["Please repeat the NIBP"]
            await page.screenshot(path=artifacts_dir() / "room-ended-1366.png")
            assert errors == []
    finally:
        await tech.close()


async def test_reopening_shows_no_stale_live_badge(server: LiveServer) -> None:
    await _clinicians(server)
    tech = SignalingClient(server.base_url, UserCredentials("tech.wonju", PASSWORD))
    await tech.start()
    try:
        first = await tech.request_consultation("koriyama", False, "first")
        doctor = SignalingClient(server.base_url, UserCredentials("doctor.koriyama", PASSWORD))
        await doctor.login()
        await doctor.consultation_action(first.id, ConsultationAction.ACCEPT)
        async with bedside(server), chromium() as browser:
            page = await browser.new_page(locale="en-US")
            await _room_with_bedside(page, server, first.id)
            second = await tech.request_consultation("koriyama", False, "second")
            await doctor.consultation_action(second.id, ConsultationAction.ACCEPT)
            await page.click("#back")
            await expect(page.locator("#list-view")).to_be_visible()
            # The badge as the new room shows (read in the same turn as the app's own
            # hashchange handler), and every state it takes after.
            states = await page.evaluate(
                """async (id) => {
                    const badge = document.getElementById('link-state');
                    const seen = [];
                    const watch = new MutationObserver(() => seen.push(badge.dataset.state));
                    watch.observe(badge, {attributes: true, attributeFilter: ['data-state']});
                    const first = new Promise((resolve) => window.addEventListener(
                        'hashchange', () => resolve(badge.dataset.state), {once: true}));
                    location.hash = `#/consultations/${id}`;
                    const shown = await first;
                    await new Promise((r) => setTimeout(r, 1000));
                    watch.disconnect();
                    return {shown, seen};
                }""",
                second.id,
            )
            assert states["shown"] == "link.waiting", states
            assert states["seen"][:1] in ([], ["link.waiting"]), states
        await doctor.close()
    finally:
        await tech.close()


SIZES = [(1366, 768), (1920, 1080), (1024, 768), (768, 1024)]

_ACCESSIBILITY = (Path(__file__).parent / "accessibility.js").read_text(encoding="utf-8")


async def test_one_screen_holds_video_ecg_and_vitals(server: LiveServer) -> None:
    await _clinicians(server)
    tech = SignalingClient(server.base_url, UserCredentials("tech.wonju", PASSWORD))
    await tech.start()
    try:
        # With a patient: the banner takes its line too.
        patient = PatientIn(
            pseudonym="W-2207", birth_year=1958, sex=Sex.MALE, allergies=["penicillin"]
        )
        row = await _accepted(
            server, tech.request_consultation("koriyama", False, "layout", patient)
        )
        async with bedside(server, monitor=True), chromium() as browser:
            page = await browser.new_page(locale="ja-JP", viewport={"width": 1366, "height": 768})
            missing: list[str] = []  # nothing the page asks for may be missing (the favicon)
            page.on("response", lambda r: missing.append(r.url) if r.status == 404 else None)
            await sign_in(
                page, server.base_url, "doctor.koriyama", PASSWORD, f"#/consultations/{row.id}"
            )
            ecg = page.locator(f".trace[data-mdc='{ECG_II.mdc}'][data-device='monitor-1'] canvas")
            await expect(ecg).to_be_visible(timeout=30_000)
            await expect(page.locator("#num-spo2")).to_be_visible(timeout=30_000)
            await page.wait_for_function(
                "() => document.getElementById('video').videoWidth > 0", timeout=20_000
            )
            await tech.join(row.id)
            await tech.send(Chat(text="血圧を測りました / 혈압을 쟀습니다"))
            for width, height in SIZES:
                await page.set_viewport_size({"width": width, "height": height})
                await page.wait_for_timeout(300)  # layout and a frame drawn
                boxes = await page.evaluate(
                    """() => {
                        const box = (sel) => {
                            const r = document.querySelector(sel).getBoundingClientRect();
                            return {top: r.top, bottom: r.bottom, height: r.height};
                        };
                        return {scrollY: window.scrollY,
                                video: box('#video'), ecg: box(".trace[data-mdc='131330']"),
                                vitals: box('#numerics')};
                    }"""
                )
                portrait = height > width
                shown = ["vitals", "ecg"] if portrait else ["video", "ecg", "vitals"]
                for name in shown:
                    element = boxes[name]
                    assert element["height"] > 20, (width, height, name, boxes)
                    assert element["top"] >= 0 and element["bottom"] <= height, (
                        f"{name} not on screen at {width}x{height}: {boxes}"
                    )
                assert boxes["scrollY"] == 0
                await page.screenshot(path=artifacts_dir() / f"room-{width}x{height}-ja.png")
            await page.select_option("#language", "ko")
            await page.set_viewport_size({"width": 1366, "height": 768})
            await page.screenshot(path=artifacts_dir() / "room-1366x768-ko.png")
            await next_of_type(tech.recv, Chat)
            assert await page.evaluate(_ACCESSIBILITY) == []
            assert missing == [], missing
    finally:
        await tech.close()


async def test_tiles_name_their_devices_and_a_technician_chooses_the_primary(
    server: LiveServer,
) -> None:
    """A monitor and an oximeter both measure SpO2 and pulse rate: both values show, each
    named; the monitor's is primary until the Wonju technician chooses the oximeter, which
    the Koriyama doctor's screen then shows. NIBP is one tile; heart rate in bpm."""
    await _clinicians(server)
    tech = SignalingClient(server.base_url, UserCredentials("tech.wonju", PASSWORD))
    await tech.login()
    row = await _accepted(server, tech.request_consultation("koriyama", False, "two oximeters"))
    await tech.close()
    room = f"#/consultations/{row.id}"
    async with bedside(server, monitor=True), chromium() as browser:
        pages = []
        for user in ("doctor.koriyama", "tech.wonju"):
            page = await (await browser.new_context(locale="en-US")).new_page()
            await in_english(page)
            await sign_in(page, server.base_url, user, PASSWORD, room)
            pages.append(page)
        koriyama, wonju = pages
        spo2 = koriyama.locator("#num-spo2")
        await expect(spo2).to_have_attribute("data-device", "monitor-1", timeout=30_000)
        await expect(spo2.locator(".device")).to_have_text("monitor-1")
        await expect(spo2.locator(".others li[data-device='oximeter-1']")).to_contain_text(
            re.compile(r"^oximeter-1: \d+ %$"), timeout=15_000
        )
        await expect(koriyama.locator("#num-heart_rate .unit")).to_have_text("bpm")
        nibp = koriyama.locator("#num-nibp")
        await expect(nibp.locator(".value")).to_have_text(re.compile(r"^\d+/\d+ \(\d+\)$"))
        await expect(nibp.locator(".unit")).to_have_text("mmHg")
        await expect(nibp.locator(".note")).to_contain_text("cuff")
        assert "measured" in (await spo2.locator(".value").get_attribute("title") or "")
        # Only the technician is offered the choice.
        await expect(koriyama.locator("#num-spo2 select.source")).to_be_hidden()
        choice = wonju.locator("#num-spo2 select.source")
        await expect(choice).to_be_visible(timeout=15_000)
        await choice.select_option("oximeter-1")
        await expect(spo2).to_have_attribute("data-device", "oximeter-1", timeout=10_000)
        await expect(spo2.locator(".others li[data-device='monitor-1']")).to_be_visible()


async def test_trends_show_what_the_bedside_measured(server: LiveServer) -> None:
    """The gateway uploads every numeric to the server; the room's trends draw them for the
    last hour (heart rate and SpO2 from the monitor, NIBP, respiration, temperature)."""
    await _clinicians(server)
    tech = SignalingClient(server.base_url, UserCredentials("tech.wonju", PASSWORD))
    await tech.login()
    row = await _accepted(server, tech.request_consultation("koriyama", False, "trends"))
    await tech.close()
    async with bedside(server, monitor=True), chromium() as browser:
        page = await browser.new_page(locale="en-US")
        await in_english(page)
        await sign_in(
            page, server.base_url, "doctor.koriyama", PASSWORD, f"#/consultations/{row.id}"
        )
        await expect(page.locator("#num-spo2")).to_be_visible(timeout=30_000)
        await page.wait_for_timeout(5000)  # a few seconds of numerics uploaded
        await page.click("#open-trends")
        await expect(page.locator("#trends-dialog")).to_be_visible()
        for chart in ("heart_rate", "spo2", "nibp", "resp_rate", "temperature"):
            canvas = page.locator(f".trend[data-chart='{chart}'] canvas")
            await expect(canvas).to_have_attribute("data-points", re.compile(r"^[1-9]\d*$"))
        await expect(page.locator(".trend[data-chart='spo2'] figcaption")).to_contain_text(
            "monitor-1"
        )
        await page.click("#trends-dialog [data-hours='8']")
        await expect(page.locator("#trends-dialog [data-hours='8']")).to_have_attribute(
            "aria-pressed", "true"
        )
        await page.screenshot(path=artifacts_dir() / "trends-1366.png")
        await page.click("#close-trends")
        await expect(page.locator("#trends-dialog")).to_be_hidden()
