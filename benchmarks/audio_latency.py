"""Mouth-to-ear audio latency gateway -> receiver, beside the video's glass-to-glass latency
of the same run, and the gateway's CPU with one doctor receiving video + audio vs video only.

A real signaling server on 127.0.0.1 (in this process); the gateway in a process of its
own (640x480 synthetic camera, and ``synthetic:clicks``: a click every 0.5 s of wall-clock
time); one aiortc doctor here answers the gateway's offers. The click goes the whole way:
capture thread -> encoder (stethoscope: libopus lowdelay in the feed; voice: aiortc's) ->
RTP on loopback -> aiortc's jitter buffer and decoder -> onset detection. The latency of a
click is when it would be heard (the decoded frame's arrival plus the onset's place in it)
minus the wall-clock multiple of 0.5 s it was made at: one machine, one clock. Video: the
gateway stamps each frame with its capture time; latency = decoded minus captured.

Rounds, each with a new gateway process: video only; video + stethoscope sound; video +
voice sound; and video + stethoscope heard through a 1-frame receive buffer instead of
aiortc's (which holds 4 frames, 80 ms, before the first leaves: a browser's adaptive
buffer holds less on loopback). CPU: the gateway process's user + system time per second
of wall time (one core = 100 %), median over 1 s windows.

    telemed bench audio [--seconds 15]          python -m benchmarks.audio_latency
"""

from __future__ import annotations

import argparse
import asyncio
import math
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from aiortc.jitterbuffer import JitterBuffer
from numpy.typing import NDArray
from pydantic import SecretStr

from benchmarks.latency import Result, _summary
from media.audio.sources import CLICK_PERIOD_S
from media.audio.talkback import decoded_mono
from media.rtc.peer import MediaPeer
from media.video.stamp import read_stamp
from runtime.tasks import cancel_and_wait
from signaling.client import SignalingClient, UserCredentials
from signaling.config import ServerConfig
from signaling.schema import Answer, ConsultationAction, Offer
from signaling.server.app import create_app
from signaling.storage.database import sqlite_url
from telemed.serve import DEMO_ACCOUNTS, DEMO_GATEWAY, seed_demo, start_server

FS = 48_000
_TICKS = os.sysconf("SC_CLK_TCK")
#: A decoded sample louder than this is a click (clicks are made at 0.5 full scale).
ONSET_LEVEL = 0.15
#: After an onset, the rest of the click and its codec ringing are not new onsets.
REFRACTORY_S = 0.1
_RECEIVER_BUFFER = "_RTCRtpReceiver__jitter_buffer"


def _password(username: str) -> str:
    return next(a.password for a in DEMO_ACCOUNTS if a.username == username)


class OnsetDetector:
    """Decoded frames and their arrival times in; the time each click would be heard out
    (arrival of its frame + the onset's offset in it, the frame played as it arrives)."""

    def __init__(self) -> None:
        self._last_onset = -1e9

    def feed(self, samples: NDArray[np.float32], arrived: float) -> list[float]:
        heard: list[float] = []
        for index in np.flatnonzero(np.abs(samples) > ONSET_LEVEL):
            when = arrived + float(index) / FS
            if when - self._last_onset > REFRACTORY_S:
                self._last_onset = when
                heard.append(when)
        return heard


def click_latency_ms(heard: float, period: float = CLICK_PERIOD_S) -> float:
    """Latency of a click heard at ``heard``: clicks are made at the wall-clock multiples of
    ``period``, so the one heard is the latest multiple before it (latency < period)."""
    return (heard - math.floor(heard / period) * period) * 1000


@dataclass
class Round:
    name: str
    audio: str | None
    mode: str = "voice"
    min_buffer: bool = False
    video_ms: list[float] = field(default_factory=list)
    audio_ms: list[float] = field(default_factory=list)
    cpu: list[float] = field(default_factory=list)
    frames: int = 0


class Doctor:
    """doctor.koriyama in this process: answers every offer (each round's gateway is a new
    process, so a new offer), times the stamped video and the heard clicks of the current
    round."""

    def __init__(self, base: str) -> None:
        self.client = SignalingClient(
            base, UserCredentials("doctor.koriyama", _password("doctor.koriyama"))
        )
        self.media: MediaPeer | None = None
        self.round: Round | None = None
        self.measuring = False
        self._onsets = OnsetDetector()

    async def answer(self) -> None:
        while True:
            message = await self.client.recv()
            if not isinstance(message, Offer) or message.sender is None:
                continue
            if self.media is not None:
                await self.media.close()
            self.media = MediaPeer([], receive_video=True, receive_audio=True)
            sdp = await self.media.accept_offer(message.sdp)
            if self.round is not None and self.round.min_buffer:
                # Before the answer leaves, so before any packet: release each frame when
                # the next arrives (as a browser on a clean loopback would, near enough).
                for receiver in self.media.pc.getReceivers():
                    if receiver.track is not None and receiver.track.kind == "audio":
                        setattr(receiver, _RECEIVER_BUFFER, JitterBuffer(16, prefetch=1))
            await self.client.send(Answer(to=message.sender, sdp=sdp))

    async def watch_video(self) -> None:
        while True:
            media = self.media
            if media is None:
                await asyncio.sleep(0.05)
                continue
            try:
                # A new round's gateway makes a new connection: look again now and then.
                async with asyncio.timeout(0.2):
                    frame = await media.video_frames.get()
            except TimeoutError:
                continue
            now_ms = time.time() * 1000
            image = await asyncio.to_thread(frame.to_ndarray, format="bgr24")
            stamp = await asyncio.to_thread(read_stamp, np.asarray(image, dtype=np.uint8))
            if stamp is not None and self.measuring and self.round is not None:
                self.round.video_ms.append((now_ms - stamp[1]) % 2**32)
                self.round.frames += 1

    async def listen(self) -> None:
        while True:
            media = self.media
            if media is None:
                await asyncio.sleep(0.05)
                continue
            try:
                async with asyncio.timeout(0.2):
                    frame = await media.audio_frames.get()
            except TimeoutError:
                continue
            arrived = time.time()
            heard = self._onsets.feed(decoded_mono(frame), arrived)
            if self.measuring and self.round is not None:
                self.round.audio_ms += [click_latency_ms(h) for h in heard]


def _cpu_s(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / _TICKS


async def _cpu_windows(pid: int, seconds: float) -> list[float]:
    shares = []
    for _ in range(round(seconds)):
        c0, t0 = _cpu_s(pid), time.monotonic()
        await asyncio.sleep(1.0)
        shares.append((_cpu_s(pid) - c0) / (time.monotonic() - t0))
    return shares


def _gateway_process(base: str, key_file: Path, rnd: Round) -> subprocess.Popen[bytes]:
    command = [sys.executable, "-m", "benchmarks.audio_latency", "--gateway", base]
    command += ["--key-file", str(key_file)]
    if rnd.audio is not None:
        command += ["--audio", rnd.audio, "--audio-mode", rnd.mode]
    return subprocess.Popen(
        command,
        env={**os.environ, "PYTHONASYNCIODEBUG": ""},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


async def run(seconds: float, warmup: float = 6.0) -> list[Round]:
    rounds = [
        Round("video only", None),
        Round("video + stethoscope", "synthetic:clicks", "stethoscope"),
        Round("video + voice", "synthetic:clicks", "voice"),
        Round("video + stethoscope, 1-frame rx buffer", "synthetic:clicks", "stethoscope", True),
    ]
    with tempfile.TemporaryDirectory(prefix="telemed-bench-") as tmp:
        config = ServerConfig(
            database_url=sqlite_url(Path(tmp) / "bench.sqlite3"),
            secret_key=SecretStr("benchmark-secret-key-0123456789-abcdef-0123"),
        )
        await seed_demo(config)
        app = create_app(config)
        server, server_task, port = await start_server(app, config, log_level="warning")
        base = f"http://127.0.0.1:{port}"
        key_file = Path(tmp) / "gateway.key"
        key_file.write_text(DEMO_GATEWAY[2])
        tech = SignalingClient(base, UserCredentials("tech.wonju", _password("tech.wonju")))
        doctor = Doctor(base)
        tasks: list[asyncio.Task[None]] = []
        try:
            await tech.start()
            await doctor.client.start()
            row = await tech.request_consultation("koriyama", False)
            await doctor.client.consultation_action(row.id, ConsultationAction.ACCEPT)
            await doctor.client.join(row.id)
            tasks = [
                asyncio.create_task(doctor.answer()),
                asyncio.create_task(doctor.watch_video()),
                asyncio.create_task(doctor.listen()),
            ]
            for i, rnd in enumerate(rounds, start=1):
                print(f"[{i}/{len(rounds)}] {rnd.name}", file=sys.stderr, flush=True)
                doctor.round = rnd
                gateway = _gateway_process(base, key_file, rnd)
                try:
                    await asyncio.sleep(warmup)  # joined, offered, connected, warmed up
                    doctor.measuring = True
                    rnd.cpu = await _cpu_windows(gateway.pid, seconds)
                    doctor.measuring = False
                finally:
                    gateway.terminate()
                    await asyncio.to_thread(gateway.wait, 20)
                await asyncio.sleep(1.0)
        finally:
            await cancel_and_wait(tasks)
            if doctor.media is not None:
                await doctor.media.close()
            await doctor.client.close()
            await tech.close()
            server.should_exit = True
            await server_task
    _print(rounds, seconds)
    return rounds


def _print(rounds: list[Round], seconds: float) -> None:
    print(f"\n{'round':42} {'stream':6} {'n':>5} {'median ms':>10} {'p95 ms':>8} {'max ms':>8}")
    for rnd in rounds:
        for stream, values in (("video", rnd.video_ms), ("audio", rnd.audio_ms)):
            if not values:
                continue
            r: Result = _summary(stream, values)
            print(
                f"{rnd.name:42} {stream:6} {r.samples:5d} {r.median_ms:10.1f} "
                f"{r.p95_ms:8.1f} {r.max_ms:8.1f}"
            )
    base = rounds[0]
    base_video = statistics.median(base.video_ms) if base.video_ms else float("nan")
    base_cpu = statistics.median(base.cpu) if base.cpu else float("nan")
    print(f"\n{'gateway process (one core = 100 %)':42} {'CPU':>7} {'vs video':>9} {'fps':>6}")
    for rnd in rounds:
        cpu = statistics.median(rnd.cpu) if rnd.cpu else float("nan")
        print(f"{rnd.name:42} {100 * cpu:6.1f}% {cpu / base_cpu:8.2f}x {rnd.frames / seconds:6.1f}")
    print("\nvideo glass-to-glass, median, against the video-only round:")
    for rnd in rounds[1:]:
        if rnd.video_ms:
            median = statistics.median(rnd.video_ms)
            print(f"  {rnd.name:40} {median:6.1f} ms ({median / base_video:.2f}x)")


# -- the gateway process of a round ----------------------------------------------------------


async def _gateway(base: str, key: str, audio: str | None, mode: str) -> None:
    from media.audio import AudioMode
    from media.video.processing import ProcessingSettings
    from telemed.gateway.runner import Gateway, GatewayConfig

    name, _, _ = DEMO_GATEWAY
    gateway = Gateway(
        GatewayConfig(
            server_url=base,
            name=name,
            key=key,
            mains_hz=60.0,
            camera="synthetic",
            video=ProcessingSettings(640, 480, overlay="Wonju"),
            audio=audio,
            audio_mode=AudioMode(mode),
        )
    )
    main = asyncio.create_task(gateway.run())
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, main.cancel)
    await asyncio.wait([main])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seconds", type=float, default=15.0, help="measured seconds a round")
    parser.add_argument("--gateway", metavar="URL", help=argparse.SUPPRESS)
    parser.add_argument("--key-file", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--audio", help=argparse.SUPPRESS)
    parser.add_argument("--audio-mode", default="voice", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.gateway:
        key = args.key_file.read_text().strip()
        asyncio.run(_gateway(args.gateway, key, args.audio, args.audio_mode))
        return 0
    asyncio.run(run(args.seconds))
    return 0


if __name__ == "__main__":
    sys.exit(main())
