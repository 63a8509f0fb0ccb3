"""Encode time per frame at 720p and 480p: aiortc's own VP8 encoder (its settings, as each
viewer's RTCRtpSender runs it) against the shared encoder's real-time settings and their
variants, on the same frames in the same run. CPU time of the encoding thread per frame
(``time.thread_time``, so other processes on a shared machine cost wall time, not this
figure), median and p95; the wall time per frame (what a frame waits for its picture: the
figure latency is made of, and the only one that counts an encoder's own threads; on a
shared machine it holds the others' load too); and the bitrate that came out.

Two scenes: ``pattern`` (the gateway's synthetic camera, processed as it is sent: overlay
and latency stamp) and ``camera`` (a textured moving scene with sensor noise, closer to a
real camera; the noise is what the denoiser and the rate control work on).

    python -m benchmarks.video_encode [--frames 150]
"""

from __future__ import annotations

import argparse
import fractions
import statistics
import time
from collections.abc import Callable, Iterator

import av
import cv2
import numpy as np
from aiortc.codecs.vpx import Vp8Encoder
from numpy.typing import NDArray

from media.video.capture import CapturedFrame, SyntheticSource
from media.video.encoder import AIORTC, REALTIME, EncoderSettings, PictureEncoder, with_settings
from media.video.processing import ProcessingSettings, process_frame

BITRATE = {720: 1_500_000, 480: 900_000}
SIZES = {720: (1280, 720), 480: (640, 480)}


def pattern_frames(width: int, height: int, count: int) -> list[NDArray[np.uint8]]:
    source = SyntheticSource(width, height, fps=1e6)  # no pacing
    settings = ProcessingSettings(width, height, overlay="Wonju", timezone="Asia/Seoul")
    frames = []
    for k in range(count):
        image = source.read()
        assert image is not None
        frames.append(process_frame(CapturedFrame(k, time.time(), image), settings))
    return frames


def camera_frames(width: int, height: int, count: int) -> list[NDArray[np.uint8]]:
    rng = np.random.default_rng(15)
    coarse = rng.integers(0, 255, (height // 12, width // 6, 3), dtype=np.uint8)
    scene = np.asarray(
        cv2.resize(coarse, (width * 2, height), interpolation=cv2.INTER_CUBIC), dtype=np.uint8
    )
    frames = []
    for k in range(count):
        x = (k * 3) % width
        image = scene[:, x : x + width].astype(np.int16) + rng.integers(-3, 4, (height, width, 3))
        frames.append(np.clip(image, 0, 255).astype(np.uint8))
    return frames


def run_aiortc(images: list[NDArray[np.uint8]], bitrate: int) -> Iterator[tuple[float, float, int]]:
    """aiortc's Vp8Encoder.encode as the sender calls it (bgr24 frame in, payloads out)."""
    encoder = Vp8Encoder()
    encoder.target_bitrate = bitrate
    for k, image in enumerate(images):
        start, wall = time.thread_time(), time.perf_counter()
        frame = av.VideoFrame.from_ndarray(image, format="bgr24")
        frame.pts = k * 3000
        frame.time_base = fractions.Fraction(1, 90_000)
        payloads, _ = encoder.encode(frame)
        yield (
            time.thread_time() - start,
            time.perf_counter() - wall,
            sum(len(p) for p in payloads),
        )


def run_shared(
    settings: EncoderSettings, images: list[NDArray[np.uint8]], bitrate: int
) -> Iterator[tuple[float, float, int]]:
    height, width = images[0].shape[:2]
    encoder = PictureEncoder(settings, (width, height))
    for image in images:
        start, wall = time.thread_time(), time.perf_counter()
        picture = encoder.encode(image, bitrate)
        yield (
            time.thread_time() - start,
            time.perf_counter() - wall,
            0 if picture is None else len(picture.data),
        )


Run = Callable[[list[NDArray[np.uint8]], int], Iterator[tuple[float, float, int]]]


def measure(
    run: Run, images: list[NDArray[np.uint8]], bitrate: int
) -> tuple[float, float, float, float, float]:
    """CPU median and p95 ms per frame, wall median and p95 (the first 10 frames, the
    encoder's start, left out), and kbit/s at 30 fps."""
    results = list(run(images, bitrate))[10:]
    times = sorted(1000 * t for t, _, _ in results)
    walls = sorted(1000 * w for _, w, _ in results)
    kbps = statistics.mean(n for _, _, n in results) * 8 * 30 / 1000
    p95 = int(0.95 * (len(times) - 1))
    return statistics.median(times), times[p95], statistics.median(walls), walls[p95], kbps


def variants() -> dict[str, Run]:
    def shared(s: EncoderSettings) -> Run:
        return lambda images, bitrate: run_shared(s, images, bitrate)

    return {
        "aiortc VP8 (per viewer today)": run_aiortc,
        "aiortc's settings, this encoder": shared(AIORTC),
        "realtime VP8 (shared: cpu-used -12, 1 thread, v1)": shared(REALTIME),
        "realtime VP8, version 0 (profile 0)": shared(with_settings(REALTIME, profile=0)),
        "realtime VP8, 2 threads": shared(with_settings(REALTIME, threads=2)),
        "realtime VP8, cpu-used -6": shared(with_settings(REALTIME, cpu_used=-6)),
        "realtime VP8, cpu-used -16": shared(with_settings(REALTIME, cpu_used=-16)),
        "realtime VP8, cpu-used -16, 2 threads": shared(
            with_settings(REALTIME, cpu_used=-16, threads=2)
        ),
        "realtime VP8, denoiser on": shared(with_settings(REALTIME, noise_sensitivity=4)),
        "H.264 x264 ultrafast zerolatency": shared(with_settings(REALTIME, codec="h264")),
        "H.264 x264 ultrafast, 2 sliced threads": shared(
            with_settings(REALTIME, codec="h264", threads=2)
        ),
    }


def main(frames: int, heights: list[int] | None = None) -> None:
    print(f"encode per frame (ms), {frames} frames each; the machine may be shared\n")
    print(
        f"{'':48} {'scene':8} {'size':5} {'cpu med':>7} {'p95':>7} {'wall med':>8} {'p95':>7} "
        f"{'kbit/s':>7} {'vs aiortc':>9}"
    )
    for height in heights or [720, 480]:
        width, _ = SIZES[height]
        for scene, make in (("pattern", pattern_frames), ("camera", camera_frames)):
            images = make(width, height, frames)
            base: float | None = None
            for name, run in variants().items():
                median, p95, wall, wall_p95, kbps = measure(run, images, BITRATE[height])
                base = base or median
                print(
                    f"{name:48} {scene:8} {height:4}p {median:7.2f} {p95:7.2f} {wall:8.2f} "
                    f"{wall_p95:7.2f} {kbps:7.0f} {median / base:8.2f}x"
                )
            print()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--frames", type=int, default=150)
    parser.add_argument("--sizes", default="720,480", help="of 720, 480")
    args = parser.parse_args()
    main(args.frames, [int(h) for h in args.sizes.split(",")])
