"""Glass-to-glass where the doctor looks: the bedside video and waveforms in headless Chromium,
through the real server and gateway on 127.0.0.1, next to aiortc -> aiortc in the same run.

The server (as the tests serve it), a Wonju gateway in this process (a simulated CMS50
oximeter on a real pty for the pleth, the synthetic camera at 480p or 720p, 30 fps, each frame
stamped with its capture time on the gateway's wall clock: media/video/stamp.py) and the
Koriyama doctor's room in Chromium (Debian's, through Playwright). The page measures what its
engineer's overlay shows (clinic_ui/static/js/latency.js, opened with its key, F9: one code
path, so the overlay and this benchmark read the same figures): each presented frame's stamp
read at requestVideoFrameCallback against the frame's expected display time (also its
presentation time and its last packet's arrival: last packet -> display is Chromium's own
share, apart from the gateway's), the newest waveform sample drawn on each
animation frame against the draw, and the receiver's jitter-buffer and decode shares per
frame from getStats. Frames are counted once the video arrives at the size asked for (the
gateway's adaptation starts lower and climbs: the warm-up waits for it).

Each size runs three viewers in turn (a new connection each), so the gain is a ratio from one
run: ``default`` (the page refuses the playout-delay extension, stripping it from the offer,
and jitterBufferTarget is never set: Chromium as it comes), ``playout-delay`` (the extension,
min = max = 0; no target set), ``playout-delay+target`` (the extension and the app's
jitterBufferTarget tuning: the app as it ships). Then aiortc -> aiortc at the same size
(benchmarks.latency: stamp to decoded frame, marker-bit release).

One machine: the page's wall clock is the gateway's. Figures on a loaded machine are noisy:
compare the ratios of one run.

    telemed bench browser [--seconds 15] [--sizes 480,720] [--json out.json] [--plot out.png]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import statistics
import sys
import tempfile
import time
from collections.abc import AsyncIterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, cast

from playwright.async_api import Browser, expect

from benchmarks.latency import Result, plot, video_latency
from devices.simulation.patient import Patient, PatientParameters
from devices.simulation.pty_link import PtyLink
from devices.simulation.registry import SIMULATORS
from media.rtc import adapt
from media.rtc.shared_encoder import FrameTiming, SharedFrames
from media.video.encoder import REALTIME, EncoderSettings, with_settings
from media.video.processing import ProcessingSettings
from runtime.tasks import cancel_and_wait, spawn
from signaling.client import SignalingClient, UserCredentials
from signaling.schema import ConsultationAction, Role
from telemed.gateway.runner import DeviceSpec, Gateway, GatewayConfig
from tests.e2e.browser import chromium, in_english, sign_in
from tests.helpers import PASSWORD, LiveServer, make_config, run_server

SIZES = {480: (640, 480), 720: (1280, 720)}
GATEWAY, GATEWAY_KEY = "bed-1.wonju", "bed-1-key-for-bench-0123456789abcdef"
#: What the page does to the app per variant: (strip the extension, keep the target unset).
VARIANTS = {
    "default": (True, True),
    "playout-delay": (False, True),
    "playout-delay+target": (False, False),
}
#: The overlay's window (clinic_ui/static/js/latency.js WINDOW_MS).
WINDOW_MS = 5000
#: How long a viewer may take to get the video at the size asked for.
WARMUP_TIMEOUT_S = 120.0
#: Where a frame's time goes, capture to display, in order: each stage's share per frame
#: (the gateway's stamps, :class:`media.rtc.shared_encoder.FrameTiming`, matched by frame id
#: with the page's record of the same frame).
STAGES = (
    "capture->processed",  # the frames worker, and the hops to the layer
    "processed->encoding",  # waiting for the layer's encoder thread
    "encode",  # the encoder's thread: scaling, colour conversion, the codec
    "encoded->track",  # back on the event loop, handed to the viewer's track
    "track->sender",  # the sender's recv takes it
    "sender->received",  # aiortc packetises, SRTP, loopback, Chromium's last packet
    "received->presented",  # Chromium: jitter buffer, decode, to the compositor
    "presented->display",  # the compositor's wait for the frame it shows in
)

_VARIANT_SCRIPT = """
(([strip, untargeted]) => {
  if (strip) {
    const native = RTCPeerConnection.prototype.setRemoteDescription;
    RTCPeerConnection.prototype.setRemoteDescription = function (description) {
      if (description && description.sdp) {
        const sdp = description.sdp.split("\\r\\n")
          .filter((line) => !line.includes("rtp-hdrext/playout-delay")).join("\\r\\n");
        description = { type: description.type, sdp };
      }
      return native.call(this, description);
    };
  }
  if (untargeted) {
    for (const name of ["jitterBufferTarget", "playoutDelayHint"]) {
      const property = Object.getOwnPropertyDescriptor(RTCRtpReceiver.prototype, name);
      if (property) {
        Object.defineProperty(RTCRtpReceiver.prototype, name, {
          get: property.get, set() {}, configurable: true,
        });
      }
    }
  }
})(%s);
"""


@dataclass
class ViewerRun:
    """One variant's measured seconds at one size (every round pooled)."""

    size: int
    variant: str
    video: Result  # capture -> expected display
    presented: Result  # capture -> presentation (handed to the compositor)
    received: Result  # capture -> the frame's last packet here
    browser: Result  # the frame's last packet here -> expected display: Chromium's own share
    waveform: Result  # sample -> draw
    jitter_buffer_ms: float | None  # median of the overlay's 5-s figures
    decode_ms: float | None
    #: The overlay's 5-s median against this benchmark's median of the same 5 s of frames
    #: (the largest difference seen): the overlay and the benchmark read one code path.
    overlay_difference_ms: float | None
    target_max_ms: float | None
    frames_dropped: int
    #: Callbacks whose picture was already a later frame (page under load), not counted.
    mismatched: int
    negotiated: bool
    warmup_s: float
    #: Each of :data:`STAGES`: its median share per frame (ms; frames the gateway's stamps
    #: were matched for).
    stages_ms: dict[str, float] = field(default_factory=dict)
    #: Frames whose stages were matched.
    staged: int = 0


@dataclass
class _Collected:
    """What one viewer's page measured (raw, pooled across rounds)."""

    frames: list[dict[str, Any]] = field(default_factory=list)
    ages: list[float] = field(default_factory=list)
    figures: list[dict[str, Any]] = field(default_factory=list)
    differences: list[float] = field(default_factory=list)
    dropped: int = 0
    mismatched: int = 0
    negotiated: bool = True
    warmups: list[float] = field(default_factory=list)
    stages: dict[str, list[float]] = field(default_factory=lambda: {s: [] for s in STAGES})


@dataclass
class SizeResult:
    size: int
    aiortc: Result
    viewers: list[ViewerRun] = field(default_factory=list)


def _result(name: str, values: list[float]) -> Result:
    ordered = sorted(values)
    if not ordered:
        return Result(name, 0, float("nan"), float("nan"), float("nan"), [])
    p95 = ordered[min(len(ordered) - 1, int(0.95 * len(ordered)))]
    return Result(name, len(ordered), statistics.median(ordered), p95, ordered[-1], ordered)


def _median(values: list[float]) -> float | None:
    return statistics.median(values) if values else None


def _summarized(size: int, variant: str, got: _Collected) -> ViewerRun:
    name = f"{size}p Chromium {variant}"
    frames, figures = got.frames, got.figures
    return ViewerRun(
        size=size,
        variant=variant,
        video=_result(f"{name}: capture->display", [f["latencyMs"] for f in frames]),
        presented=_result(f"{name}: capture->presented", [f["presentedMs"] for f in frames]),
        received=_result(
            f"{name}: capture->received",
            [f["receivedMs"] for f in frames if f["receivedMs"] is not None],
        ),
        browser=_result(
            f"{name}: received->display",
            [f["latencyMs"] - f["receivedMs"] for f in frames if f["receivedMs"] is not None],
        ),
        waveform=_result(f"{name}: sample->draw", got.ages),
        jitter_buffer_ms=_median(
            [f["jitterBufferMs"] for f in figures if f["jitterBufferMs"] is not None]
        ),
        decode_ms=_median([f["decodeMs"] for f in figures if f["decodeMs"] is not None]),
        overlay_difference_ms=max(got.differences, default=None),
        target_max_ms=max(
            (f["targetMs"] for f in figures if f["targetMs"] is not None), default=None
        ),
        frames_dropped=got.dropped,
        mismatched=got.mismatched,
        negotiated=got.negotiated,
        warmup_s=max(got.warmups, default=0.0),
        stages_ms={k: statistics.median(v) for k, v in got.stages.items() if v},
        staged=min((len(v) for v in got.stages.values()), default=0),
    )


def _stages(frame: dict[str, Any], timing: FrameTiming) -> dict[str, float]:
    """One frame's time per stage (ms), from the gateway's stamps and the page's record."""
    ms = 1000.0

    def since(t: float) -> float:
        return (t - timing.captured) * ms

    sent = since(timing.sent)
    return {
        "capture->processed": since(timing.processed),
        "processed->encoding": (timing.encode_start - timing.processed) * ms,
        "encode": (timing.encoded - timing.encode_start) * ms,
        "encoded->track": (timing.delivered - timing.encoded) * ms,
        "track->sender": (timing.sent - timing.delivered) * ms,
        "sender->received": float(frame["receivedMs"]) - sent,
        "received->presented": float(frame["presentedMs"]) - float(frame["receivedMs"]),
        "presented->display": float(frame["latencyMs"]) - float(frame["presentedMs"]),
    }


def _match_stages(frames: list[dict[str, Any]], gateway: Gateway | None, got: _Collected) -> None:
    """Add each frame's stages to ``got`` where the gateway (its room camera, encoded once
    for every viewer) still holds its timing."""
    shared = None if gateway is None else gateway.cameras[0].frames
    if not isinstance(shared, SharedFrames):
        return
    timings = {t.frame_id: t for t in list(shared.layers[0].timings)}
    for frame in frames:
        timing = timings.get(int(frame["frameId"]))
        if timing is None or frame["receivedMs"] is None:
            continue
        for stage, value in _stages(frame, timing).items():
            got.stages[stage].append(value)


@contextlib.asynccontextmanager
async def _consultation(root: Path) -> AsyncIterator[tuple[LiveServer, str]]:
    """The server, its accounts and an active Wonju -> Koriyama consultation."""
    async with run_server(make_config(root)) as server:
        await server.add_user("doctor.koriyama", Role.DOCTOR, "koriyama")
        await server.add_user("tech.wonju", Role.TECHNICIAN, "wonju")
        await server.add_gateway(GATEWAY, "wonju", GATEWAY_KEY)
        tech = SignalingClient(server.base_url, UserCredentials("tech.wonju", PASSWORD))
        doctor = SignalingClient(server.base_url, UserCredentials("doctor.koriyama", PASSWORD))
        try:
            row = await tech.request_consultation("koriyama", False, "browser latency")
            await doctor.consultation_action(row.id, ConsultationAction.ACCEPT)
            yield server, row.id
        finally:
            await doctor.close()
            await tech.close()


@contextlib.asynccontextmanager
async def _top_rung_first() -> AsyncIterator[None]:
    """Each viewer's video adaptation starts at the top rung (the size asked for) instead of
    climbing to it from 360p15: on loopback the path is not in question, and the synthetic
    picture needs too few bits for the estimate ever to earn 720p (1.5 times what is sent).
    Only where the adaptation starts changes; it still follows the path from there."""
    saved = adapt.START_BPS
    adapt.START_BPS = adapt.LADDER[0].cap_bps
    try:
        yield
    finally:
        adapt.START_BPS = saved


@contextlib.asynccontextmanager
async def _gateway(
    server: LiveServer, width: int, height: int, encoder: EncoderSettings = REALTIME
) -> AsyncIterator[Gateway]:
    """A gateway reading a simulated oximeter on a pty, with the synthetic camera encoded
    with ``encoder``."""
    link = PtyLink()
    oximeter = spawn(
        SIMULATORS["cms50"](link, Patient(PatientParameters(spo2=97.0, heart_rate=72.0))).run(),
        "bench-oximeter",
    )
    await asyncio.sleep(0)  # plugged in: the pty exists
    gateway = Gateway(
        GatewayConfig(
            server_url=server.base_url,
            name=GATEWAY,
            key=GATEWAY_KEY,
            mains_hz=60.0,
            devices=(DeviceSpec("cms50", link.path, "oximeter-1"),),
            camera="synthetic",
            video=ProcessingSettings(width, height, overlay="Wonju", timezone="Asia/Seoul"),
        )
    )
    for camera in gateway.cameras:
        camera.encoder = encoder
    running = spawn(gateway.run(), "bench-gateway")
    try:
        yield gateway
    finally:
        await cancel_and_wait([running, oximeter])


def _window_difference(figure: dict[str, Any], frames: list[dict[str, Any]]) -> float | None:
    """|the overlay's median - the median of the frames in its window|, in ms."""
    if not figure["video"]:
        return None
    at = figure["at"]
    window = [f["latencyMs"] for f in frames if at - WINDOW_MS <= f["at"] <= at]
    if not window:
        return None
    return abs(float(figure["video"]["median_ms"]) - float(statistics.median(window)))


async def _viewer(
    browser: Browser,
    server: LiveServer,
    cid: str,
    size: int,
    variant: str,
    seconds: float,
    got: _Collected,
    gateway: Gateway | None = None,
) -> None:
    """One doctor's page, as ``variant`` makes it, measured for ``seconds`` once the video
    arrives at ``size``, into ``got``. Raises TimeoutError when it never does, RuntimeError
    on page errors."""
    width, _ = SIZES[size]
    context = await browser.new_context(locale="en-US", viewport={"width": 1366, "height": 768})
    errors: list[str] = []
    try:
        page = await context.new_page()
        page.on("pageerror", lambda exc: errors.append(str(exc)))
        await page.add_init_script(_VARIANT_SCRIPT % json.dumps(list(VARIANTS[variant])))
        await in_english(page)
        await sign_in(page, server.base_url, "doctor.koriyama", PASSWORD, f"#/consultations/{cid}")
        await expect(page.locator("#link-state")).to_have_attribute(
            "data-state", "link.connected", timeout=60_000
        )
        await page.keyboard.press("F9")
        await expect(page.locator("#latency-overlay")).to_be_visible()
        started = time.monotonic()
        last = 0
        async with asyncio.timeout(WARMUP_TIMEOUT_S):
            while True:
                frames = await page.evaluate(f"window.telemedLatency.frames({last})")
                if frames:
                    last = frames[-1]["seq"]
                if any(f["width"] == width for f in frames[-5:]):
                    break
                await asyncio.sleep(0.5)
        got.warmups.append(time.monotonic() - started)
        waves_last = cast(
            int, await page.evaluate("window.telemedLatency.waveforms().at(-1)?.seq ?? 0")
        )
        seen: list[dict[str, Any]] = []
        first = len(got.figures)
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            await asyncio.sleep(1.0)
            # The overlay's figures first: every frame they count is then in the records read.
            figure = await page.evaluate("window.telemedLatency.figures()")
            got.figures.append(figure)
            frames = await page.evaluate(f"window.telemedLatency.frames({last})")
            if frames:
                last = frames[-1]["seq"]
                seen += frames
                got.frames += [f for f in frames if f["width"] == width]
                _match_stages([f for f in frames if f["width"] == width], gateway, got)
            waves = await page.evaluate(f"window.telemedLatency.waveforms({waves_last})")
            if waves:
                waves_last = waves[-1]["seq"]
                got.ages += [w["ageMs"] for w in waves]
            # A window wholly inside the measured time: compared with the frames seen.
            if seen and figure["at"] - WINDOW_MS >= seen[0]["at"]:
                difference = _window_difference(figure, seen)
                if difference is not None:
                    got.differences.append(difference)
        if errors:
            raise RuntimeError(f"the page reported errors: {errors}")
        figures = got.figures[first:]
        if figures:
            got.dropped += int(figures[-1]["framesDropped"] or 0)
            got.mismatched += int(figures[-1]["mismatched"])
            got.negotiated = got.negotiated and all(figures[-1]["playoutDelay"].values())
    finally:
        await context.close()


async def measure(
    seconds: float,
    sizes: list[int],
    variants: list[str],
    rounds: int,
    root: Path,
    encoder: EncoderSettings = REALTIME,
) -> list[SizeResult]:
    """Every size: each variant's viewer in turn (``rounds`` times, the order reversed every
    other round, each round ``seconds``), then aiortc -> aiortc for as long."""
    results: list[SizeResult] = []
    async with _consultation(root) as (server, cid), chromium() as browser, _top_rung_first():
        for size in sizes:
            width, height = SIZES[size]
            got = {variant: _Collected() for variant in variants}
            async with _gateway(server, width, height, encoder) as gateway:
                for k in range(rounds):
                    for variant in variants if k % 2 == 0 else variants[::-1]:
                        print(f"{size}p Chromium {variant}", file=sys.stderr, flush=True)
                        await _viewer(
                            browser, server, cid, size, variant, seconds, got[variant], gateway
                        )
            print(f"{size}p aiortc -> aiortc", file=sys.stderr, flush=True)
            base = await video_latency(width, height, "video/VP8", True, seconds * rounds)
            runs = [_summarized(size, variant, got[variant]) for variant in variants]
            results.append(SizeResult(size, _result(f"{size}p aiortc->aiortc", base), runs))
    return results


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}"


def report(results: list[SizeResult]) -> None:
    print(
        f"{'path':50} {'n':>5} {'median':>7} {'p95':>7} {'max':>7} {'x aiortc':>8} "
        f"{'x default':>9} {'jb/fr':>6} {'dec/fr':>6} {'ovl diff':>8}"
    )
    for result in results:
        base = result.aiortc
        print(
            f"{base.name:50} {base.samples:5d} {base.median_ms:7.1f} {base.p95_ms:7.1f} "
            f"{base.max_ms:7.1f} {1.0:8.2f}"
        )
        default_run = next((v for v in result.viewers if v.variant == "default"), None)
        for run in result.viewers:
            for r in (run.video, run.presented, run.received, run.browser):
                versus = r.median_ms / base.median_ms if base.samples else float("nan")
                before: Result | None = None
                if default_run is not None and r is run.video:
                    before = default_run.video
                elif default_run is not None and r is run.browser:
                    before = default_run.browser
                gain = (
                    f"{r.median_ms / before.median_ms:9.2f}"
                    if before is not None and before.samples
                    else f"{'':9}"
                )
                extra = (
                    f" {_ms(run.jitter_buffer_ms):>6} {_ms(run.decode_ms):>6} "
                    f"{_ms(run.overlay_difference_ms):>7}"
                    if r is run.video
                    else ""
                )
                print(
                    f"{r.name:50} {r.samples:5d} {r.median_ms:7.1f} {r.p95_ms:7.1f} "
                    f"{r.max_ms:7.1f} {versus:8.2f} {gain}{extra}"
                )
            w = run.waveform
            print(f"{w.name:50} {w.samples:5d} {w.median_ms:7.1f} {w.p95_ms:7.1f} {w.max_ms:7.1f}")
            print(
                f"{'':50} extension negotiated: {run.negotiated}; jitterBufferTarget asked "
                f"at most "
                f"{_ms(run.target_max_ms)} ms (set only with +target); frames dropped "
                f"{run.frames_dropped}; later frame drawn at the callback {run.mismatched}; "
                f"warm-up {run.warmup_s:.0f} s"
            )
            if run.stages_ms:
                shares = "; ".join(f"{k} {v:.1f}" for k, v in run.stages_ms.items())
                total = sum(run.stages_ms.values())
                print(
                    f"{'':50} stages, median ms per frame ({run.staged} frames; the medians "
                    f"add to {total:.1f}): {shares}"
                )


def _json(results: list[SizeResult]) -> list[dict[str, Any]]:
    def strip(r: Result) -> dict[str, Any]:
        return {k: v for k, v in asdict(r).items() if k != "values_ms"}

    return [
        {
            "size": r.size,
            "aiortc": strip(r.aiortc),
            "viewers": [
                {
                    **{k: v for k, v in asdict(v).items() if not isinstance(v, dict)},
                    **{
                        k: strip(getattr(v, k))
                        for k in ("video", "presented", "received", "browser")
                    },
                    "waveform": strip(v.waveform),
                    "stages_ms": v.stages_ms,
                }
                for v in r.viewers
            ],
        }
        for r in results
    ]


async def run(
    seconds: float,
    sizes: list[int],
    variants: list[str],
    rounds: int,
    json_path: Path | None,
    plot_path: Path | None,
    encoder: EncoderSettings = REALTIME,
) -> list[SizeResult]:
    with tempfile.TemporaryDirectory() as tmp:
        results = await measure(seconds, sizes, variants, rounds, Path(tmp), encoder)
    report(results)
    if json_path is not None:
        json_path.write_text(json.dumps(_json(results), indent=2))
    if plot_path is not None:
        plot([r for s in results for r in (s.aiortc, *(v.video for v in s.viewers))], plot_path)
    return results


def _encoder(text: str) -> EncoderSettings:
    """:data:`REALTIME` with ``name=value,...`` changed (values typed as the fields are)."""
    changes: dict[str, object] = {}
    for item in filter(None, text.split(",")):
        name, _, value = item.partition("=")
        if not hasattr(REALTIME, name):
            raise ValueError(f"no setting {name!r}")
        current = getattr(REALTIME, name)
        if isinstance(current, bool):
            changes[name] = value.lower() in ("1", "true", "yes")
        else:
            changes[name] = type(current)(value)
    return with_settings(REALTIME, **changes)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seconds", type=float, default=15.0, help="measured seconds per viewer")
    parser.add_argument("--sizes", default="480,720", help="of 480, 720")
    parser.add_argument("--variants", default=",".join(VARIANTS), help=f"of {', '.join(VARIANTS)}")
    parser.add_argument(
        "--rounds", type=int, default=1, help="each variant this many times, in turn"
    )
    parser.add_argument("--json", type=Path)
    parser.add_argument("--plot", type=Path, help="PNG of the latency distributions")
    parser.add_argument(
        "--encoder",
        default="",
        help="the gateway's encoder settings changed from the shipped ones, e.g. "
        "codec=h264,threads=2 or cpu_used=-16 (media.video.encoder.EncoderSettings)",
    )
    args = parser.parse_args(argv)
    sizes = [int(s) for s in args.sizes.split(",")]
    variants = args.variants.split(",")
    if any(s not in SIZES for s in sizes) or any(v not in VARIANTS for v in variants):
        parser.error("unknown size or variant")
    if args.rounds < 1:
        parser.error("--rounds: at least 1")
    try:
        encoder = _encoder(args.encoder)
    except (TypeError, ValueError) as exc:
        parser.error(f"--encoder: {exc}")
    asyncio.run(run(args.seconds, sizes, variants, args.rounds, args.json, args.plot, encoder))
    return 0


if __name__ == "__main__":
    sys.exit(main())
