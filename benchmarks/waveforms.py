"""Waveform timing and drawing: what the sample clock gives, and what the browser spends.

``clock``: the gateway's sample clock (media/waveform/clock.py) against the times a trace got
before it (each read's arrival, back by the read's length), on reads generated as a serial
device delivers them (a device drifting 150 ppm against the gateway; each read 0-40 ms late
above a floor, or not late at all). Errors against each sample's true time plus the floor,
once settled (after 40 s); the worst of five seeds.

``browser``: headless Chromium (the Debian package, through Playwright) running the page's
own modules (wire.js, traces.js) on packets the Python encoder wrote: the CPU per packet to
decode and place it, and per animation frame to draw a monitor's three traces (ECG 500 Hz in
packets of 128 samples, two pleths) 766 x 84 CSS px each, sweeping at 25 mm/s.

    python -m benchmarks.waveforms [clock|browser|all]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shutil
import sys
from pathlib import Path
from typing import Any

import numpy as np

from media.rtc.wire import WirePacket, encode
from media.waveform.clock import SampleTimeline

STATIC = Path(__file__).parents[1] / "clinic_ui" / "static"
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"


# -- the sample clock --------------------------------------------------------------------------


def _errors(
    rate: float, read_every: tuple[float, float], jitter_s: float, seed: int, seconds: float
) -> tuple[list[float], list[float]]:
    """(clock errors, arrival-based errors) in s, after 40 s."""
    rng = np.random.default_rng(seed)
    true_rate = rate * (1 + 150e-6)
    line = SampleTimeline(rate)
    waiting: list[tuple[int, int, float]] = []
    clock, naive = [], []
    sent, t = 0, 0.0
    while t < seconds:
        t += rng.uniform(*read_every)
        newest = int(t * true_rate)
        if newest < sent:
            continue
        n = newest - sent + 1
        arrival = 1.8e9 + newest / true_rate + 0.003 + rng.uniform(0, jitter_s)
        waiting.append((sent, n, arrival))
        for placed in line.place(n, arrival):
            first, count, at = waiting.pop(0)
            truth = 1.8e9 + first / true_rate + 0.003
            if first / true_rate > 40.0:
                clock.append(line.stamp(placed.first_index) - truth)
                naive.append(at - (count - 1) / rate - truth)
            else:
                line.stamp(placed.first_index)
        sent = newest + 1
    return clock, naive


def clock_figures(seconds: float = 180.0) -> dict[str, Any]:
    cases = {
        "oximeter 60 Hz, reads every 16-50 ms": (60.0, (0.016, 0.050)),
        "monitor pleth 125 Hz, a reply every 256 ms": (125.0, (0.256, 0.256)),
        "monitor ECG 500 Hz, a reply every 256 ms": (500.0, (0.256, 0.256)),
    }
    out: dict[str, Any] = {}
    for name, (rate, every) in cases.items():
        for jitter in (0.0, 0.040):
            clock: list[float] = []
            naive: list[float] = []
            for seed in range(5):
                c, n = _errors(rate, every, jitter, seed, seconds)
                clock += c
                naive += n
            c_ms, n_ms = np.abs(clock) * 1000, np.asarray(naive) * 1000
            out[f"{name}, jitter {jitter * 1000:.0f} ms"] = {
                "clock_p50_ms": round(float(np.percentile(c_ms, 50)), 3),
                "clock_p95_ms": round(float(np.percentile(c_ms, 95)), 3),
                "clock_max_ms": round(float(c_ms.max()), 3),
                "arrival_based_spread_ms": round(float(np.ptp(n_ms)), 1),
            }
    return out


# -- the browser ---------------------------------------------------------------------------------

_PAGE = """<!doctype html><meta charset="utf-8"><body style="margin:0;background:#000">
<div id="box" style="width:766px"></div></body>"""

_RUN = """async (input) => {
  const wire = await import('/js/wire.js');
  const traces = await import('/js/traces.js');
  const bytes = (hex) => {
    const a = new Uint8Array(hex.length / 2);
    for (let i = 0; i < a.length; i++) a[i] = parseInt(hex.substr(2 * i, 2), 16);
    return a.buffer;
  };
  const view = { speed: 25, gain: 1, mode: 'sweep' };
  const made = input.channels.map((channel) => {
    const canvas = document.createElement('canvas');
    canvas.style.cssText = 'width:766px;height:84px;display:block';
    document.getElementById('box').append(canvas);
    const trace = new traces.Trace(canvas, { unit: channel.unit, sample_rate: channel.rate }, view);
    return { trace, packets: channel.packets.map((p) => ({ data: bytes(p.hex), at: p.at })) };
  });
  const perPacket = {};
  input.channels.forEach((channel, k) => {
    const { trace, packets } = made[k];
    const start = performance.now();
    for (const p of packets) trace.push(wire.decode(p.data), p.at);
    perPacket[channel.name] = (performance.now() - start) * 1000 / packets.length;
  });
  const end = Math.min(...input.channels.map((c) => c.packets.at(-1).at));
  const frames = input.frames;
  const perTrace = {};
  let total = 0;
  input.channels.forEach((channel, k) => {
    const { trace } = made[k];
    const start = performance.now();
    for (let f = 0; f < frames; f++) trace.draw(end - (frames - f) / 60);
    trace.canvas.getContext('2d').getImageData(0, 0, 1, 1); // the drawing done
    const ms = (performance.now() - start) / frames;
    perTrace[channel.name] = ms;
    total += ms;
  });
  return { perPacketUs: perPacket, perFrameMsByTrace: perTrace, perFrameMs: total };
}"""


def _channel(name: str, unit: str, rate: float, sizes: list[int], seconds: float) -> dict[str, Any]:
    t0 = 1.8e9
    packets: list[dict[str, Any]] = []
    index, rng = 0, np.random.default_rng(1)
    while index / rate < seconds:
        n = sizes[int(rng.integers(len(sizes)))]
        values = np.sin(2 * np.pi * 1.2 * (index + np.arange(n)) / rate).astype(np.float32)
        first_time = t0 + index / rate
        packet = WirePacket(1, len(packets), rate, first_time, values, index)
        at = first_time + n / rate + 0.05 + float(rng.uniform(0, 0.02))
        packets.append({"hex": encode(packet).hex(), "at": at})
        index += n
    return {"name": name, "unit": unit, "rate": rate, "packets": packets}


async def browser_figures(seconds: float = 20.0, frames: int = 600) -> dict[str, Any]:
    from playwright.async_api import Route, async_playwright

    channels = [
        _channel("ecg 500 Hz, 128-sample packets", "mV", 500.0, [128], seconds),
        _channel("pleth 125 Hz, 32-sample packets", "{1}", 125.0, [32], seconds),
        _channel("pleth 60 Hz, 1-3 sample packets", "{1}", 60.0, [1, 2, 3], seconds),
    ]

    async def serve(route: Route) -> None:
        path = route.request.url.split("bench.local", 1)[1].split("?")[0]
        if path == "/":
            await route.fulfill(body=_PAGE, content_type="text/html")
            return
        await route.fulfill(path=str(STATIC / path.lstrip("/")), content_type="text/javascript")

    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(
            executable_path=CHROMIUM, headless=True, args=["--no-sandbox", "--disable-gpu"]
        )
        try:
            page = await browser.new_page(device_scale_factor=1)
            await page.route("http://bench.local/**", serve)
            await page.goto("http://bench.local/")
            result: dict[str, Any] = await page.evaluate(
                _RUN, {"channels": channels, "frames": frames}
            )
        finally:
            await browser.close()
    result["perPacketUs"] = {k: round(v, 1) for k, v in result["perPacketUs"].items()}
    result["perFrameMs"] = round(result["perFrameMs"], 3)
    result["perFrameMsByTrace"] = {k: round(v, 3) for k, v in result["perFrameMsByTrace"].items()}
    result["at 60 frames/s, share of one core"] = f"{result['perFrameMs'] * 60 / 10:.1f} %"
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("what", nargs="?", choices=["clock", "browser", "all"], default="all")
    args = parser.parse_args()
    figures: dict[str, Any] = {}
    if args.what in ("clock", "all"):
        figures["clock"] = clock_figures()
    if args.what in ("browser", "all"):
        figures["browser"] = asyncio.run(browser_figures())
    json.dump(figures, sys.stdout, indent=2, ensure_ascii=False)
    print()
    return 0


if __name__ == "__main__":
    sys.exit(main())
