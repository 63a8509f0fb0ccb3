"""Mouth-to-ear audio latency in the browser: clinician → clinician (the room's call) and
bedside → clinician (the gateway's sound), on loopback, through the real paths.

A signaling server in this process, the clinic app in headless Chromium (Playwright, Debian's
``/usr/bin/chromium``), and for the bedside a gateway in this process reading
``synthetic:clicks`` (a click every 0.5 s of wall-clock time).

- Call: one Chromium process speaks a click train (its fake microphone plays a WAV made
  here: a click every 0.5 s), another listens. Both pages tap audio with WebAudio: the
  sender its own microphone track as it leaves getUserMedia (AEC, noise suppression and gain
  control included, as in a call), the receiver the remote track it plays. Each sample block
  is dated on the page's clock (``AudioContext.getOutputTimestamp`` maps context time to
  ``performance`` time; ``performance.timeOrigin`` to the epoch: one machine, one clock).
  Latency of a click = its onset at the receiver minus its onset at the sender.
- Bedside: the page taps the room's bedside audio element; a click made at a wall-clock
  multiple of 0.5 s is heard at its onset: latency = onset minus that multiple.

Both figures include the tap's own block (up to 4096 samples, 85 ms, of which the onset's
place in the block is accounted for) and the same output-timestamp mapping on both ends, so
the call's figure is end to end but for the sender's capture device (a fake file here).
Printed: medians, p95 and the number of clicks matched, and the ratio call/bedside.

    python -m benchmarks.call_latency [--seconds 20]        telemed bench call
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
from pathlib import Path

import numpy as np
from playwright.async_api import Page, async_playwright
from pydantic import SecretStr

from clinic_ui import STATIC_DIR
from media.audio import AudioMode
from runtime.tasks import cancel_and_wait
from signaling.client import SignalingClient, UserCredentials
from signaling.config import ServerConfig
from signaling.schema import ConsultationAction, Role
from signaling.server.app import create_app
from signaling.storage import accounts
from signaling.storage.database import Database, sqlite_url
from telemed.gateway.runner import Gateway, GatewayConfig
from telemed.serve import start_server

FS = 48_000
CLICK_PERIOD_S = 0.5
PASSWORD = "benchmark-password-0123"  # noqa: S105 (a throwaway account in a temporary database)
KEY = "benchmark-gateway-key-0123456789abcdef"
CHROMIUM = "/usr/bin/chromium"
ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-features=WebRtcHideLocalIpsWithMdns",
    "--use-fake-ui-for-media-stream",
    "--use-fake-device-for-media-stream",
    "--autoplay-policy=no-user-gesture-required",
]

# Records `seconds` of a stream and returns its click onsets as epoch milliseconds. The
# stream is named by a function body returning it (the page's own objects).
_ONSETS = """async ([streamOf, seconds, level]) => {
    const stream = new Function(streamOf)();
    const ctx = new AudioContext({sampleRate: 48000});
    await ctx.resume();
    const source = ctx.createMediaStreamSource(stream);
    const tap = ctx.createScriptProcessor(1024, 1, 1);
    const onsets = [];
    let quietUntil = 0;
    const done = new Promise((resolve) => setTimeout(resolve, seconds * 1000));
    tap.onaudioprocess = (e) => {
        const stamp = ctx.getOutputTimestamp();
        // The block's first sample, on the performance clock, then the epoch.
        const blockMs = stamp.performanceTime
            + (e.playbackTime - stamp.contextTime) * 1000 - 1024 / ctx.sampleRate * 1000;
        const data = e.inputBuffer.getChannelData(0);
        for (let k = 0; k < data.length; k++) {
            const at = performance.timeOrigin + blockMs + (k / ctx.sampleRate) * 1000;
            if (at >= quietUntil && Math.abs(data[k]) > level) {
                onsets.push(at);
                quietUntil = at + 150;
            }
        }
    };
    source.connect(tap);
    tap.connect(ctx.destination);
    await done;
    source.disconnect();
    tap.disconnect();
    await ctx.close();
    return onsets;
}"""


def click_train(path: Path, seconds: float = 10.0) -> Path:
    """A WAV of 2 ms clicks every 0.5 s: what the speaking browser's microphone plays."""
    import wave

    samples = np.zeros(int(seconds * FS))
    for start in range(0, samples.size, int(CLICK_PERIOD_S * FS)):
        samples[start : start + 96] = 0.8 * np.hanning(96)
    pcm = (samples * 32767).astype("<i2")
    with wave.open(str(path), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(FS)
        out.writeframes(pcm.tobytes())
    return path


def _match(sent: list[float], heard: list[float]) -> list[float]:
    """For each sent onset, the first heard onset after it within one period (ms)."""
    latencies = []
    for at in sent:
        later = [h - at for h in heard if 0 < h - at < CLICK_PERIOD_S * 1000]
        if later:
            latencies.append(min(later))
    return latencies


def _summary(name: str, values: list[float]) -> str:
    if not values:
        return f"{name:28} no clicks matched"
    values = sorted(values)
    p95 = values[min(len(values) - 1, round(0.95 * (len(values) - 1)))]
    return (
        f"{name:28} median {statistics.median(values):6.1f} ms  p95 {p95:6.1f} ms  n={len(values)}"
    )


async def _room(page: Page, base: str, user: str, cid: str) -> None:
    await page.add_init_script("localStorage.setItem('telemed.language', 'en')")
    await page.goto(f"{base}/#/consultations/{cid}")
    await page.wait_for_selector("body[data-ready=true]")
    await page.fill("#username", user)
    await page.fill("#password", PASSWORD)
    await page.click("#login-form button[type=submit]")
    await page.wait_for_selector("#room-view:not([hidden])")


async def run(seconds: float) -> None:
    with tempfile.TemporaryDirectory(prefix="telemed-bench-") as tmp:
        data = Path(tmp)
        config = ServerConfig(
            database_url=sqlite_url(data / "db.sqlite3"), secret_key=SecretStr("b" * 40)
        )
        db = Database(config.database_url)
        await db.migrate()
        await accounts.sync_sites(db, config.sites)
        await accounts.add_user(db, "dk", PASSWORD, Role.DOCTOR, "koriyama", "dk")
        technician = await accounts.add_user(db, "tw", PASSWORD, Role.TECHNICIAN, "wonju", "tw")
        await accounts.add_gateway(db, "bed-1", "wonju", KEY)
        await db.close()
        server, serving, port = await start_server(
            create_app(config, static_dir=STATIC_DIR), config, log_level="warning"
        )
        base = f"http://127.0.0.1:{port}"
        try:
            tech = SignalingClient(base, UserCredentials("tw", PASSWORD))
            row = await tech.request_consultation("koriyama", False, "latency")
            head = SignalingClient(base, UserCredentials("dk", PASSWORD))
            await head.consultation_action(row.id, ConsultationAction.ACCEPT)
            await tech.close()
            await head.close()
            gateway = Gateway(
                GatewayConfig(
                    server_url=base,
                    name="bed-1",
                    key=KEY,
                    mains_hz=60.0,
                    audio="synthetic:clicks",
                    audio_mode=AudioMode.STETHOSCOPE,
                )
            )
            running = asyncio.create_task(gateway.run(), name="gateway")
            clicks = click_train(data / "clicks.wav", 2 * seconds)
            try:
                async with async_playwright() as playwright:
                    speaker = await playwright.chromium.launch(
                        executable_path=CHROMIUM,
                        args=[*ARGS, f"--use-file-for-fake-audio-capture={clicks}"],
                    )
                    listener = await playwright.chromium.launch(executable_path=CHROMIUM, args=ARGS)
                    try:
                        talking = await speaker.new_page()
                        hearing = await listener.new_page()
                        await _room(talking, base, "tw", row.id)
                        await _room(hearing, base, "dk", row.id)
                        tech_tile = f'.participant[data-principal="user:{technician.id}"] video'
                        await hearing.wait_for_function(
                            f"document.querySelector('{tech_tile}')?.srcObject", timeout=30_000
                        )
                        await hearing.wait_for_function(
                            "document.getElementById('bedside-audio').srcObject", timeout=30_000
                        )
                        await asyncio.sleep(2.0)  # jitter buffers settle
                        sent, heard, bedside = await asyncio.gather(
                            talking.evaluate(
                                _ONSETS,
                                [
                                    "return document.querySelector('.participant video.self')"
                                    ".srcObject",
                                    seconds,
                                    0.05,
                                ],
                            ),
                            hearing.evaluate(
                                _ONSETS,
                                [
                                    f"return document.querySelector('{tech_tile}').srcObject",
                                    seconds,
                                    0.05,
                                ],
                            ),
                            hearing.evaluate(
                                _ONSETS,
                                [
                                    "return document.getElementById('bedside-audio').srcObject",
                                    seconds,
                                    0.1,
                                ],
                            ),
                        )
                    finally:
                        await speaker.close()
                        await listener.close()
            finally:
                await cancel_and_wait([running])
        finally:
            server.should_exit = True
            await serving
    call = _match(list(sent), list(heard))
    # Made at the last wall-clock multiple of the period before it was heard.
    from_bedside = [at % (CLICK_PERIOD_S * 1000) for at in bedside]
    print(_summary("call (browser -> browser)", call))
    print(_summary("bedside (gateway -> browser)", from_bedside))
    if call and from_bedside:
        ratio = statistics.median(call) / statistics.median(from_bedside)
        print(f"call / bedside median ratio: {ratio:.2f}x")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="telemed bench call", description=__doc__)
    parser.add_argument("--seconds", type=float, default=20.0, help="seconds measured")
    args = parser.parse_args(argv)
    asyncio.run(run(args.seconds))
    return 0


if __name__ == "__main__":
    sys.exit(main())
