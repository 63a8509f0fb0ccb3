"""The bedside's stethoscope heard where the doctor hears it: a real gateway loops a recorded
heart-sound WAV (40-150 Hz bursts at 70/min over a 20-200 Hz multi-tone) in stethoscope
mode, and the consulting doctor's Chromium plays it. The sound the page receives (recorded
from the room's audio element's stream with WebAudio) keeps the 20-200 Hz band within 3 dB
of the source; the room labels it and offers headphones and volume; push-to-talk sends the
doctor's microphone (a tone) to the gateway's speaker only while the button is held."""

from __future__ import annotations

import asyncio
import base64
import json
from pathlib import Path

import numpy as np
import pytest
from playwright.async_api import expect

from media.audio import AudioMode
from signaling.client import SignalingClient, UserCredentials
from signaling.schema import ConsultationAction, Role
from tests.e2e.bedside import bedside
from tests.e2e.browser import artifacts_dir, chromium, fake_media, in_english, sign_in
from tests.helpers import PASSWORD, LiveServer, eventually
from tests.media.audio_signals import (
    BANDS_HZ,
    FS,
    align,
    band_powers,
    dominant_hz,
    heart_sounds,
    read_wav,
    write_wav,
)

pytestmark = pytest.mark.slow

RECORDING_S = 6 * 60 / 70
MICROPHONE_HZ = 700.0

# Seconds of what the bedside audio element plays, as 48 kHz float32 (base64).
_RECORD = """async (seconds) => {
    const stream = document.getElementById('bedside-audio').srcObject;
    const ctx = new AudioContext({sampleRate: 48000});
    await ctx.resume();
    const source = ctx.createMediaStreamSource(stream);
    const tap = ctx.createScriptProcessor(4096, 1, 1);
    const chunks = [];
    let wanted = Math.round(seconds * ctx.sampleRate);
    const done = new Promise((resolve) => {
        tap.onaudioprocess = (e) => {
            if (wanted <= 0) return;
            const block = e.inputBuffer.getChannelData(0).slice(0, wanted);
            chunks.push(block);
            wanted -= block.length;
            if (wanted <= 0) resolve();
        };
    });
    source.connect(tap);
    tap.connect(ctx.destination);
    await done;
    source.disconnect();
    tap.disconnect();
    await ctx.close();
    const all = new Float32Array(chunks.reduce((n, c) => n + c.length, 0));
    let at = 0;
    for (const c of chunks) { all.set(c, at); at += c.length; }
    const bytes = new Uint8Array(all.buffer);
    let text = '';
    for (let k = 0; k < bytes.length; k += 0x8000) {
        text += String.fromCharCode(...bytes.subarray(k, k + 0x8000));
    }
    return btoa(text);
}"""


async def test_the_doctor_hears_the_stethoscope_undistorted_and_talks_back(
    server: LiveServer, tmp_path: Path
) -> None:
    recording = heart_sounds(RECORDING_S)
    heart = write_wav(tmp_path / "heart.wav", recording)
    t = np.arange(6 * FS) / FS
    microphone = write_wav(tmp_path / "microphone.wav", 0.4 * np.sin(2 * np.pi * MICROPHONE_HZ * t))
    speaker = tmp_path / "talkback.wav"

    await server.add_user("tech.wonju", Role.TECHNICIAN, "wonju")
    await server.add_user("doctor.koriyama", Role.DOCTOR, "koriyama")
    tech = SignalingClient(server.base_url, UserCredentials("tech.wonju", PASSWORD))
    await tech.login()
    row = await tech.request_consultation("koriyama", False, "murmur?")
    doctor = SignalingClient(server.base_url, UserCredentials("doctor.koriyama", PASSWORD))
    await doctor.login()
    await doctor.consultation_action(row.id, ConsultationAction.ACCEPT)
    await doctor.close()
    await tech.close()
    async with (
        bedside(
            server, audio=str(heart), audio_mode=AudioMode.STETHOSCOPE, speaker=str(speaker)
        ) as gateway,
        chromium(fake_media(microphone)) as browser,
    ):
        page = await browser.new_page(locale="en-US")
        errors: list[str] = []
        page.on("pageerror", lambda exc: errors.append(str(exc)))
        await in_english(page)
        await sign_in(
            page, server.base_url, "doctor.koriyama", PASSWORD, f"#/consultations/{row.id}"
        )
        box = page.locator("#bedside-audio-box")
        await expect(box).to_be_visible(timeout=30_000)
        await expect(page.locator("#bedside-audio-label")).to_have_text("Stethoscope (unprocessed)")
        await expect(page.locator("#headphones-note")).to_be_visible()
        await expect(page.locator("#talk")).to_be_visible()
        await page.wait_for_timeout(1500)  # the jitter buffer settles

        encoded = await page.evaluate(_RECORD, 5.0)
        received = np.frombuffer(base64.b64decode(encoded), dtype=np.float32)
        assert received.size == 5 * FS and np.abs(received).max() > 0.01
        sent = align(received, recording.astype(np.float32))
        got, want = band_powers(received), band_powers(sent)
        errors_db = {
            f"{lo:g}-{hi:g} Hz": round(got[(lo, hi)] - want[(lo, hi)], 2) for lo, hi in BANDS_HZ
        }
        (artifacts_dir() / "stethoscope-browser.json").write_text(json.dumps(errors_db))
        for band, error in errors_db.items():
            assert abs(error) <= 3.0, (band, errors_db)

        # Push-to-talk: nothing reaches the bedside until the button is held.
        assert gateway.talkback is not None
        await asyncio.sleep(1.0)
        assert gateway.talkback.spurts == 0
        await page.locator("#talk").hover()
        await page.mouse.down()
        await expect(page.locator("#talk")).to_have_attribute("aria-pressed", "true")
        talkback = gateway.talkback
        await eventually(lambda: talkback.sink.written >= 100, what="talk-back at the bedside")
        await page.mouse.up()
        await expect(page.locator("#talk")).to_have_attribute("aria-pressed", "false")
        await eventually(lambda: talkback.spurts >= 1, what="the spurt ended")
        assert errors == []
    talk, rate = read_wav(speaker)
    assert rate == FS
    assert abs(dominant_hz(talk[FS // 4 :]) - MICROPHONE_HZ) < 3.0
