"""The clinic app in a real browser (headless Chromium): a Koriyama doctor signs in, accepts
Wonju's request, and sees the bedside live (video, pleth, vital signs, device state), chats
with the Wonju technician, switches between Japanese, Korean and English, and ends it."""

from __future__ import annotations

import asyncio
import itertools
import json
import re
from pathlib import Path

import numpy as np
import pytest
from playwright.async_api import expect

from devices.codes import PLETH
from media.rtc.wire import WirePacket, encode
from runtime.tasks import cancel_and_wait
from signaling.client import SignalingClient, UserCredentials
from signaling.schema import Chat, Role
from tests.e2e.bedside import bedside
from tests.e2e.browser import chromium, sign_in
from tests.helpers import PASSWORD, LiveServer, make_config, next_of_type, run_server

pytestmark = pytest.mark.slow

CSP_WATCH = """
window.cspViolations = [];
document.addEventListener("securitypolicyviolation", (e) => {
  window.cspViolations.push(`${e.violatedDirective} ${e.blockedURI}`);
});
"""


async def test_doctor_sees_the_bedside_chats_and_switches_language(server: LiveServer) -> None:
    await server.add_user("tech.wonju", Role.TECHNICIAN, "wonju")
    await server.add_user("doctor.koriyama", Role.DOCTOR, "koriyama")
    tech = SignalingClient(server.base_url, UserCredentials("tech.wonju", PASSWORD))
    await tech.start()
    try:
        row = await tech.request_consultation("koriyama", True, "chest pain")
        async with bedside(server) as gateway, chromium() as browser:
            page = await browser.new_page(locale="en-US")
            errors: list[str] = []
            page.on("pageerror", lambda exc: errors.append(str(exc)))
            # The server's Content-Security-Policy must let the whole app work: a violation
            # is both reported to the page and logged to the console.
            await page.add_init_script(CSP_WATCH)
            page.on(
                "console",
                lambda m: errors.append(m.text) if "Content Security Policy" in m.text else None,
            )
            await sign_in(page, server.base_url, "doctor.koriyama", PASSWORD)
            # The site's language at first sign-in (a browser set to English notwithstanding),
            # until the doctor picks one.
            await expect(page.locator("html")).to_have_attribute("lang", "ja")
            await expect(page.locator("#list-title")).to_have_text("コンサルテーション")
            await page.select_option("#language", "en")

            # Wonju's request is listed; the consulting doctor accepts it and opens it.
            listed = page.locator(f"tr[data-id='{row.id}']")
            await expect(listed.locator(".state")).to_have_text("Requested")
            await expect(listed.locator(".consent")).to_have_text("Consent to cross-border data")
            await listed.locator("button[data-action='consultations.accept']").click()
            await expect(listed.locator(".state")).to_have_text("Active")
            await listed.locator("button[data-action='consultations.join']").click()
            await expect(page.locator("#room-view")).to_be_visible()

            # The gateway follows the now active consultation and offers to the browser.
            await expect(page.locator("#link-state")).to_have_attribute(
                "data-state", "link.connected", timeout=30_000
            )
            spo2 = page.locator("#num-spo2 .value")
            await expect(spo2).to_have_text(re.compile(r"^(9[2-9]|100)$"), timeout=15_000)
            await expect(page.locator("#num-pulse_rate .name")).to_have_text("Pulse rate")
            await expect(page.locator("#devices li[data-device='oximeter-1']")).to_have_attribute(
                "data-state", "connected"
            )
            await page.wait_for_function(
                "() => document.getElementById('video').videoWidth === 320", timeout=20_000
            )
            trace = page.locator(f".trace[data-mdc='{PLETH.mdc}'][data-device='oximeter-1']")
            await expect(trace.locator(".label")).to_have_text("Pleth · 60 Hz")
            # The trace fills the canvas as seconds of pleth arrive (6 s across 800 px).
            await page.wait_for_function(
                """channel => {
                    const box = document.querySelector(`.trace[data-mdc='${channel}']`);
                    const canvas = box.querySelector('canvas');
                    const data = canvas.getContext('2d').getImageData(0, 0, canvas.width,
                                                                       canvas.height).data;
                    let lit = 0;  // pixels brighter than the background: the drawn line
                    for (let k = 0; k < data.length; k += 4) if (data[k + 1] > 100) lit++;
                    return lit > 600;
                }""",
                arg=PLETH.mdc,
                timeout=15_000,
            )

            # Chat both ways, through the server, with the sender's name and site.
            await tech.join(row.id)
            await tech.send(Chat(text="血圧を測りました"))
            log = page.locator("#chat-log li")
            await expect(log.last.locator(".text")).to_have_text("血圧を測りました")
            await expect(log.last.locator(".who")).to_contain_text("tech.wonju · Wonju")
            await page.fill("#chat-text", "<b>Thank you</b>")
            await page.click("#chat-form button")
            heard = await next_of_type(tech.recv, Chat, timeout=10)
            while heard.sender_name != "doctor.koriyama":
                heard = await next_of_type(tech.recv, Chat, timeout=10)
            assert heard.text == "<b>Thank you</b>" and heard.sender_site == "koriyama"
            await expect(log.last.locator(".text")).to_have_text("<b>Thank you</b>")  # not HTML

            # The gateway scores the pleth every second; a clean trace is not "poor signal".
            await expect(trace).to_have_attribute(
                "data-quality", re.compile(r"^(0\.[3-9]\d*|1)$"), timeout=15_000
            )

            # Japanese, then Korean: labels, numerics and device states follow.
            await page.select_option("#language", "ja")
            await expect(page.locator("#num-pulse_rate .name")).to_have_text("脈拍数")
            await expect(page.locator("#devices li").first).to_contain_text("接続済み")
            await expect(trace.locator(".label")).to_have_text("脈波 · 60 Hz")
            await expect(page.locator("h3[data-i18n='room.video']")).to_have_text(
                "ベッドサイドカメラ"
            )
            await page.select_option("#language", "ko")
            await expect(page.locator("#num-pulse_rate .name")).to_have_text("맥박수")
            await expect(page.locator("#link-state")).to_have_text("병상에서 실시간 전송 중")

            # The doctor ends the consultation: the page says so, the gateway lets go.
            await page.click("#close-consultation")
            await page.click("#confirm-end button[value=end]")  # asked first, then ended
            await expect(page.locator("#room-ended")).to_be_visible()
            await expect(page.locator("#room-ended-text")).to_contain_text("종료되었습니다")
            async with asyncio.timeout(10):
                while gateway.consultation_id is not None:
                    await asyncio.sleep(0.05)
            assert errors == []
            assert await page.evaluate("window.cspViolations") == []
    finally:
        await tech.close()


async def test_browser_wire_decoder_matches_the_python_encoder(server: LiveServer) -> None:
    """clinic_ui/static/js/wire.js reads what media/rtc/wire.py writes, gaps included, and
    rejects what it must."""
    samples = np.array([0.5, -1.25, np.nan, 3.0, np.nan, 0.0, 2.5, -3.0, 1.0], np.float32)
    packet = encode(WirePacket(131330, 4_000_000_000, 500.0, 1795000000.125, samples))
    async with chromium() as browser:
        page = await browser.new_page()
        await page.goto(server.base_url)
        result = await page.evaluate(
            """async (bytes) => {
                const wire = await import('/js/wire.js');
                const p = wire.decode(new Uint8Array(bytes).buffer);
                const bad = [];
                for (const cut of [10, bytes.length - 1]) {
                    try { wire.decode(new Uint8Array(bytes.slice(0, cut)).buffer); }
                    catch (e) { bad.push(e instanceof wire.WireError); }
                }
                const v1 = bytes.slice(); v1[0] = 1;
                try { wire.decode(new Uint8Array(v1).buffer); } catch (e) { bad.push(e.message); }
                return {channel: p.channel, sequence: p.sequence, rate: p.sampleRate,
                        first: p.firstTime,
                        samples: Array.from(p.samples, x => isNaN(x) ? null : x), bad};
            }""",
            list(packet),
        )
    assert result["channel"] == 131330 and result["sequence"] == 4_000_000_000
    assert result["rate"] == 500.0 and result["first"] == 1795000000.125
    expected = [None if np.isnan(x) else float(x) for x in samples]
    assert [r is None for r in result["samples"]] == [e is None for e in expected]
    got = np.array([0.0 if r is None else r for r in result["samples"]])
    want = np.array([0.0 if e is None else e for e in expected])
    assert np.allclose(got, want, atol=3.0 / 32767)
    assert result["bad"] == [True, True, "wire format version 1; this page speaks 2"], json.dumps(
        result["bad"]
    )


async def test_a_present_doctor_stays_signed_in_and_an_absent_one_is_signed_out(
    tmp_path: Path,
) -> None:
    """Watching is not idling: a doctor moving the mouse keeps the session, though only
    pings and media flow on the socket. Nobody at the screen: signed out, and told why."""
    idle_s = 3.0
    async with run_server(make_config(tmp_path, inactivity_timeout_s=idle_s)) as server:
        await server.add_user("tech.wonju", Role.TECHNICIAN, "wonju")
        await server.add_user("doctor.koriyama", Role.DOCTOR, "koriyama")
        tech = SignalingClient(server.base_url, UserCredentials("tech.wonju", PASSWORD))
        await tech.login()
        row = await tech.request_consultation("koriyama", False)
        await tech.close()
        async with bedside(server), chromium() as browser:
            page = await browser.new_page(locale="en-US")

            async def present() -> None:  # a doctor at the screen: the mouse moves now and then
                for k in itertools.count():
                    await page.mouse.move(100 + 10 * (k % 2), 100)
                    await asyncio.sleep(idle_s / 8)

            hand = asyncio.create_task(present())
            try:
                await sign_in(page, server.base_url, "doctor.koriyama", PASSWORD)
                listed = page.locator(f"tr[data-id='{row.id}']")
                await listed.locator("button[data-action='consultations.accept']").click()
                await listed.locator("button[data-action='consultations.join']").click()
                badge = page.locator("#link-state")
                await expect(badge).to_have_attribute(
                    "data-state", "link.connected", timeout=30_000
                )
                await asyncio.sleep(2 * idle_s)  # two idle timeouts, watching
                await expect(page.locator("#room-view")).to_be_visible()
                await expect(badge).to_have_attribute("data-state", "link.connected")
            finally:
                await cancel_and_wait([hand])
            # Nobody at the screen: within the timeout (and the server's check) it ends.
            await expect(page.locator("#login-view")).to_be_visible(timeout=15_000)
            await expect(page.locator("#login-error")).to_have_text(  # in the site's language
                "一定時間操作がなかったため、セッションが終了しました。もう一度ログインしてください。"
            )
