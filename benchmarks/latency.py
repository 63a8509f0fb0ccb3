"""Glass-to-glass video latency and waveform latency between two aiortc peers on 127.0.0.1.

Video: a synthetic camera at 30 fps -> capture thread -> processing (stamp with frame id and
capture time) -> aiortc encoder -> RTP on loopback -> decoder -> the stamp is read back; the
latency is receipt time minus capture time (one process, one clock). Every resolution and
codec runs twice in the same run: with aiortc's jitter buffer (a frame leaves when the next
one starts) and with ours (a frame leaves on its marker bit). Waveforms: 500 Hz ECG and
125 Hz pleth in 20 ms / 40 ms chunks on the unordered channel; latency is receipt time minus
the time of the chunk's last sample.

    telemed bench latency [--seconds 8] [--json out.json] [--plot out.png]
"""

from __future__ import annotations

import asyncio
import json
import statistics
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import cv2
import numpy as np
from aiortc import RTCPeerConnection, RTCRtpSender
from aiortc.mediastreams import MediaStreamError

from media.rtc.jitter import use_marker_release
from media.rtc.peer import MediaPeer, PeerEventKind
from media.rtc.tracks import PipelineVideoTrack
from media.rtc.wire import WirePacket
from media.video.capture import CaptureThread, LatestFrame, SyntheticSource
from media.video.processing import FrameProcessor, ProcessingSettings
from media.video.stamp import read_stamp
from runtime.tasks import cancel_and_wait


@dataclass
class Result:
    name: str
    samples: int
    median_ms: float
    p95_ms: float
    max_ms: float
    values_ms: list[float]


def _summary(name: str, values: list[float]) -> Result:
    ordered = sorted(values)
    if not ordered:
        return Result(name, 0, float("nan"), float("nan"), float("nan"), [])
    p95 = ordered[min(len(ordered) - 1, int(0.95 * len(ordered)))]
    return Result(name, len(ordered), statistics.median(ordered), p95, ordered[-1], ordered)


def _prefer(pc: RTCPeerConnection, mime: str) -> None:
    codecs = [c for c in RTCRtpSender.getCapabilities("video").codecs if c.mimeType == mime]
    for transceiver in pc.getTransceivers():
        if transceiver.kind == "video":
            transceiver.setCodecPreferences(codecs)


async def video_latency(
    width: int, height: int, mime: str, marker: bool, seconds: float, warmup: float = 2.0
) -> list[float]:
    loop = asyncio.get_running_loop()
    mailbox = LatestFrame(loop)
    capture = CaptureThread(SyntheticSource(width, height, 30.0), mailbox)
    processor = FrameProcessor(ProcessingSettings(width, height))
    sender, receiver = RTCPeerConnection(), RTCPeerConnection()
    sender.addTrack(PipelineVideoTrack(mailbox, processor))
    _prefer(sender, mime)
    latencies: list[float] = []
    reader_task: asyncio.Task[None] | None = None

    @receiver.on("track")
    def on_track(track: object) -> None:
        nonlocal reader_task

        async def read() -> None:
            while True:
                frame = await track.recv()  # type: ignore[attr-defined]
                now_ms = time.time() * 1000
                image = frame.to_ndarray(format="bgr24")
                stamp = read_stamp(image)
                if stamp is not None and now_ms > start_ms + warmup * 1000:
                    latencies.append((now_ms - stamp[1]) % 2**32)

        reader_task = asyncio.create_task(read())

    capture.start()
    start_ms = time.time() * 1000
    try:
        await sender.setLocalDescription(await sender.createOffer())
        await receiver.setRemoteDescription(sender.localDescription)
        if marker:
            for r in receiver.getReceivers():
                if r.track is not None and r.track.kind == "video":
                    use_marker_release(r)
        await receiver.setLocalDescription(await receiver.createAnswer())
        await sender.setRemoteDescription(receiver.localDescription)
        await asyncio.sleep(warmup + seconds)
    finally:
        if reader_task is not None:
            # The track ends with MediaStreamError if the link closed before the cancel.
            await cancel_and_wait([reader_task], MediaStreamError)
        await sender.close()
        await receiver.close()
        await capture.stop()
        processor.close()
    return latencies


async def waveform_latency(seconds: float) -> tuple[list[float], list[float]]:
    a, b = MediaPeer([]), MediaPeer([])
    offer = await a.create_offer()
    await a.accept_answer(await b.accept_offer(offer))
    async with asyncio.timeout(15):
        while a.waveforms.readyState != "open" or b.waveforms.readyState != "open":
            await asyncio.sleep(0.01)
    a.start()
    b.start()
    ecg: list[float] = []
    pleth: list[float] = []

    async def receive() -> None:
        while True:
            event = await b.events.get()
            if event.kind is PeerEventKind.WAVEFORM and event.packet is not None:
                p = event.packet
                (ecg if p.channel == 131330 else pleth).append((time.time() - p.end_time) * 1000)

    task = asyncio.create_task(receive())
    try:
        seq = {131330: 0, 150452: 0}
        t0 = time.time()
        k = 0
        while time.time() - t0 < seconds:
            k += 1
            now = t0 + k * 0.020
            await asyncio.sleep(max(0.0, now - time.time()))
            a.send_waveform(
                WirePacket(131330, seq[131330], 500.0, now - 0.020, np.zeros(10, np.float32))
            )
            seq[131330] += 1
            if k % 2 == 0:
                a.send_waveform(
                    WirePacket(150452, seq[150452], 125.0, now - 0.040, np.zeros(5, np.float32))
                )
                seq[150452] += 1
        await asyncio.sleep(0.3)
    finally:
        await cancel_and_wait([task])
        await a.close()
        await b.close()
    return ecg, pleth


def plot(results: list[Result], path: Path) -> None:
    """A PNG of each result's latency distribution (empirical CDF), drawn with OpenCV."""
    width, height, margin = 900, 500, 60
    image = np.full((height, width, 3), 255, np.uint8)
    top = max((r.max_ms for r in results if r.samples), default=100.0)
    top = max(10.0, float(np.ceil(top / 10) * 10))
    cv2.rectangle(image, (margin, 20), (width - 20, height - margin), (0, 0, 0), 1)
    for tick in np.linspace(0, top, 6):
        x = int(margin + tick / top * (width - 20 - margin))
        cv2.putText(
            image,
            f"{tick:.0f}",
            (x - 10, height - margin + 20),
            cv2.FONT_HERSHEY_SIMPLEX,
            0.4,
            (0, 0, 0),
            1,
        )
    cv2.putText(
        image,
        "latency (ms); curves: fraction of frames at or below",
        (margin, height - 15),
        cv2.FONT_HERSHEY_SIMPLEX,
        0.5,
        (0, 0, 0),
        1,
    )
    colours = [
        (200, 0, 0),
        (0, 140, 0),
        (0, 0, 200),
        (160, 0, 160),
        (0, 140, 160),
        (120, 120, 0),
        (60, 60, 60),
        (200, 120, 0),
        (0, 90, 255),
        (90, 0, 90),
    ]
    for i, r in enumerate(results):
        if not r.samples:
            continue
        xs = margin + np.asarray(r.values_ms) / top * (width - 20 - margin)
        ys = (height - margin) - np.arange(1, r.samples + 1) / r.samples * (height - margin - 20)
        points = np.stack([xs, ys], axis=1).astype(np.int32)
        colour = colours[i % len(colours)]
        cv2.polylines(image, [points], False, colour, 2)
        cv2.putText(
            image,
            f"{r.name}: median {r.median_ms:.1f} ms",
            (margin + 10, 40 + 18 * i),
            cv2.FONT_HERSHEY_SIMPLEX,
            0.45,
            colour,
            1,
        )
    cv2.imwrite(str(path), image)


async def run(seconds: float, json_path: Path | None, plot_path: Path | None) -> list[Result]:
    configs = [
        (w, h, mime, marker)
        for (w, h) in ((640, 480), (1280, 720))
        for mime in ("video/VP8", "video/H264")
        for marker in (False, True)
    ]
    results: list[Result] = []
    total = len(configs) + 1
    for i, (w, h, mime, marker) in enumerate(configs, start=1):
        name = f"{h}p {mime.split('/')[1]} {'marker' if marker else 'aiortc'}"
        print(f"[{'#' * i}{'.' * (total - i)}] {name}", file=sys.stderr, flush=True)
        results.append(_summary(name, await video_latency(w, h, mime, marker, seconds)))
    print(f"[{'#' * total}] waveforms", file=sys.stderr, flush=True)
    ecg, pleth = await waveform_latency(seconds)
    results += [_summary("ECG 500 Hz chunks", ecg), _summary("pleth 125 Hz chunks", pleth)]
    print(f"{'stream':28} {'n':>5} {'median ms':>10} {'p95 ms':>8} {'max ms':>8}")
    for r in results:
        print(f"{r.name:28} {r.samples:5d} {r.median_ms:10.1f} {r.p95_ms:8.1f} {r.max_ms:8.1f}")
    for h in (480, 720):
        for codec in ("VP8", "H264"):
            base = next(r for r in results if r.name == f"{h}p {codec} aiortc")
            ours = next(r for r in results if r.name == f"{h}p {codec} marker")
            if base.samples and ours.samples:
                print(
                    f"{h}p {codec}: marker release median {ours.median_ms:.1f} ms vs aiortc "
                    f"{base.median_ms:.1f} ms ({ours.median_ms / base.median_ms:.2f}x)"
                )
    if json_path is not None:
        json_path.write_text(
            json.dumps(
                [{k: v for k, v in asdict(r).items() if k != "values_ms"} for r in results],
                indent=2,
            )
        )
    if plot_path is not None:
        plot(results, plot_path)
    return results


def main(argv: list[str] | None = None) -> int:
    import argparse

    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seconds", type=float, default=8.0, help="measured seconds per stream")
    parser.add_argument("--json", type=Path)
    parser.add_argument("--plot", type=Path, help="PNG of the latency distributions")
    args = parser.parse_args(argv)
    asyncio.run(run(args.seconds, args.json, args.plot))
    return 0


if __name__ == "__main__":
    sys.exit(main())
