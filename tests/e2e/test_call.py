"""Two clinicians hold a call in two real browsers (Chromium with fake cameras and each its
own microphone tone): each hears the other's tone and sees their video, mute silences the
sender, and each sees the other's state and link quality."""

from __future__ import annotations

import json
import math
import time
import wave
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from playwright.async_api import ConsoleMessage, Page, expect

from signaling.client import SignalingClient, UserCredentials
from signaling.schema import ConsultationAction, Role
from tests.e2e.browser import artifacts_dir, chromium, fake_media, in_english, sign_in
from tests.helpers import PASSWORD, LiveServer, eventually

pytestmark = pytest.mark.slow

RATE = 48_000


def tone_wav(path: Path, hz: float, seconds: float = 4.0) -> Path:
    """A sine at ``hz`` as 16-bit mono: what one browser's fake microphone plays."""
    t = np.arange(int(seconds * RATE)) / RATE
    samples = (0.5 * 32767 * np.sin(2 * math.pi * hz * t)).astype("<i2")
    with wave.open(str(path), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(RATE)
        out.writeframes(samples.tobytes())
    return path


# The dominant frequency and level of what a remote participant's element plays, measured
# with WebAudio in the page (the track the browser received and decoded).
_LISTEN = """async (principal) => {
    const tile = document.querySelector(`.participant[data-principal="${principal}"] video`);
    const stream = tile && tile.srcObject;
    if (!stream || !stream.getAudioTracks().length) return null;
    window.__ctx ??= new AudioContext();
    await window.__ctx.resume();
    const source = window.__ctx.createMediaStreamSource(stream);
    const analyser = window.__ctx.createAnalyser();
    analyser.fftSize = 8192;
    source.connect(analyser);
    await new Promise((r) => setTimeout(r, 400));
    const spectrum = new Float32Array(analyser.frequencyBinCount);
    analyser.getFloatFrequencyData(spectrum);
    const wave = new Float32Array(analyser.fftSize);
    analyser.getFloatTimeDomainData(wave);
    source.disconnect();
    let peak = 0;
    for (let k = 1; k < spectrum.length; k++) if (spectrum[k] > spectrum[peak]) peak = k;
    let sum = 0;
    for (const v of wave) sum += v * v;
    return {hz: peak * window.__ctx.sampleRate / analyser.fftSize,
            rms: Math.sqrt(sum / wave.length)};
}"""


def _printer(user: str) -> Callable[[ConsoleMessage], None]:
    def show(message: ConsoleMessage) -> None:
        print(f"[{user}] {message.type}: {message.text}")

    return show


async def _listen(page: Page, principal: str) -> dict[str, float] | None:
    result = await page.evaluate(_LISTEN, principal)
    return None if result is None else dict(result)


async def test_two_clinicians_hear_and_see_each_other_and_mute_silences(
    server: LiveServer, tmp_path: Path
) -> None:
    doctor = await server.add_user("doctor.koriyama", Role.DOCTOR, "koriyama")
    tech = await server.add_user("tech.wonju", Role.TECHNICIAN, "wonju")
    client = SignalingClient(server.base_url, UserCredentials("tech.wonju", PASSWORD))
    await client.login()
    row = await client.request_consultation("koriyama", True, "second opinion")
    accepting = SignalingClient(server.base_url, UserCredentials("doctor.koriyama", PASSWORD))
    await accepting.login()
    await accepting.consultation_action(row.id, ConsultationAction.ACCEPT)
    await client.close()
    await accepting.close()
    room = f"#/consultations/{row.id}"
    doctor_key, tech_key = f"user:{doctor.id}", f"user:{tech.id}"
    figures: dict[str, object] = {}

    low = tone_wav(tmp_path / "doctor.wav", 523.0)
    high = tone_wav(tmp_path / "tech.wav", 1209.0)
    async with (
        chromium(fake_media(low)) as koriyama_browser,
        chromium(fake_media(high)) as wonju_browser,
    ):
        errors: list[str] = []
        pages = []
        for browser, user in ((koriyama_browser, "doctor.koriyama"), (wonju_browser, "tech.wonju")):
            page = await browser.new_page(locale="en-US")
            page.on("pageerror", lambda exc: errors.append(str(exc)))
            # Shown with a failure: what each page said about its negotiation.
            page.on("console", _printer(user))
            await in_english(page)
            # Straight to the room's address: signing in leads there.
            await sign_in(page, server.base_url, user, PASSWORD, path=room)
            pages.append(page)
        koriyama, wonju = pages

        # Each sees both participants, the other's video playing.
        for page, other in ((koriyama, tech_key), (wonju, doctor_key)):
            await expect(page.locator(".participant")).to_have_count(2, timeout=20_000)
            await page.wait_for_function(
                """key => {
                    const v = document.querySelector(`.participant[data-principal="${key}"] video`);
                    return v && v.videoWidth > 0 && !v.hidden;
                }""",
                arg=other,
                timeout=30_000,
            )

        # Each hears the other's tone (not their own): the received track's dominant
        # frequency within two analyser bins (5.9 Hz each).
        heard_by_koriyama = await eventually(
            lambda: _listen(koriyama, tech_key), what="Wonju's audio at Koriyama"
        )
        heard_by_wonju = await eventually(
            lambda: _listen(wonju, doctor_key), what="Koriyama's audio at Wonju"
        )
        assert abs(heard_by_koriyama["hz"] - 1209.0) < 12, heard_by_koriyama
        assert abs(heard_by_wonju["hz"] - 523.0) < 12, heard_by_wonju
        assert heard_by_koriyama["rms"] > 0.01 and heard_by_wonju["rms"] > 0.01

        # Talking shows: the speaker's tile is marked at the other end.
        await expect(koriyama.locator(f'.participant[data-principal="{tech_key}"]')).to_have_class(
            "participant speaking", timeout=10_000
        )
        # Link quality from getStats: a loopback link is good.
        await expect(
            koriyama.locator(f'.participant[data-principal="{tech_key}"]')
        ).to_have_attribute("data-quality", "good", timeout=10_000)

        # Wonju mutes: Koriyama hears silence, and sees that Wonju is muted.
        muted_at = time.monotonic()
        await wonju.click("#mute")
        await expect(wonju.locator("#mute")).to_have_attribute("aria-pressed", "true")

        async def silent() -> bool:
            level = await _listen(koriyama, tech_key)
            return level is not None and level["rms"] < 0.005

        await eventually(silent, what="silence at Koriyama after Wonju muted")
        figures["mute_to_silence_s"] = round(time.monotonic() - muted_at, 2)
        await expect(
            koriyama.locator(f'.participant[data-principal="{tech_key}"] .status')
        ).to_contain_text("muted", timeout=5_000)
        # Unmute: the tone is back.
        await wonju.click("#mute")

        async def loud() -> bool:
            level = await _listen(koriyama, tech_key)
            # The sender's gain control has settled meanwhile: some level, the right tone.
            return level is not None and level["rms"] > 0.01 and abs(level["hz"] - 1209) < 12

        await eventually(loud, what="Wonju's audio again after unmuting")
        for page, name in ((koriyama, "call-koriyama"), (wonju, "call-wonju")):
            await page.set_viewport_size({"width": 1366, "height": 768})
            await page.screenshot(path=artifacts_dir() / f"{name}-1366x768.png")
        assert errors == []
    (artifacts_dir() / "call.json").write_text(json.dumps(figures))
