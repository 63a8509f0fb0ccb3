"""What the bedside gateway costs as viewers are added: its CPU and the video frame rate each
viewer gets, for 1, 2, 4 and 8 viewers of a 1280x720, 30 fps camera, with the camera encoded
once per layer for every viewer (``shared``, media.rtc.shared_encoder) and, in the same run,
with aiortc encoding for each connection (``per-viewer``, what it replaced) as the baseline.

The gateway runs as its own process (a real ``telemed.gateway.runner.Gateway`` with a
synthetic 720p room camera and an oximeter simulated on a pty), so the figure is its CPU
alone: user + system time per second of wall time, as a share of one core, median and p90
over 1 s windows. The server and the oximeter's simulator run in this process, each viewer in
a process of its own (one Python process receiving eight 720p streams was itself the
bottleneck): a doctor's aiortc peer with its own signaling connection, answering the
gateway's offer. A viewer's frame rate counts the complete frames its marker-bit jitter
buffer released (frames delivered); the viewers do not decode (aiortc's decoder is replaced
by a counter here: eight 720p decoders would take a core from the gateway on a 2-core
machine; ``tests/media/test_shared_encoder.py`` shows the pictures decode). ``--decode``
decodes anyway.

On a machine shared with other work the figures move from run to run: compare the two
encodings within one run.

    python -m benchmarks.bedside_load [--seconds 10] [--viewers 1,2,4,8]
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiortc.rtcrtpreceiver
from pydantic import SecretStr

from clinic_ui import STATIC_DIR
from devices.simulation.patient import Patient, PatientParameters
from devices.simulation.pty_link import PtyLink
from devices.simulation.registry import SIMULATORS
from media.rtc.peer import MediaPeer
from media.video.processing import ProcessingSettings
from runtime.tasks import cancel_and_wait, spawn
from signaling.client import SignalingClient, UserCredentials
from signaling.config import ServerConfig
from signaling.schema import Answer, ConsultationAction, Offer, Role
from signaling.server.app import create_app
from signaling.storage import accounts
from signaling.storage.database import Database, sqlite_url
from telemed.gateway.cameras import Encoding, LiveCamera
from telemed.gateway.runner import DeviceSpec, Gateway, GatewayConfig
from telemed.serve import listening_socket, start_server

WIDTH, HEIGHT, FPS = 1280, 720, 30
KEY = "bed-1-key-for-the-bench-0123456789abcdef"
PASSWORD = "bedside-bench-strong-pass-8Kd"  # noqa: S105 (a throwaway server)
#: The longest wait for the gateway to start and every viewer to get video.
START_TIMEOUT_S = 180.0
ENCODINGS: tuple[Encoding, ...] = ("per-viewer", "shared")
_TICKS = os.sysconf("SC_CLK_TCK")


def _cpu_s(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / _TICKS  # utime + stime


class _CountingDecoder:
    """Takes the encoded frames aiortc's receiver would decode, and decodes none."""

    def decode(self, encoded_frame: object) -> list[Any]:
        return []


def _frames_delivered(media: MediaPeer) -> int:
    return sum(b.released_on_marker + b.released_on_next_frame for b in media.jitter_buffers)


class _Viewer:
    """A doctor's browser tab: its own signaling connection, answering every offer."""

    def __init__(self, base: str) -> None:
        self.client = SignalingClient(base, UserCredentials("dk", PASSWORD))
        self.media: MediaPeer | None = None
        self._before = 0  # frames of connections closed before this one

    def frames(self) -> int:
        return self._before + (0 if self.media is None else _frames_delivered(self.media))

    async def run(self, consultation_id: str) -> None:
        await self.client.start()
        await self.client.join(consultation_id)
        drain: asyncio.Task[None] | None = None
        try:
            while True:
                message = await self.client.recv()
                if isinstance(message, Offer) and message.sender is not None:
                    if self.media is not None:
                        self._before = self.frames()
                        await self.media.close()
                    self.media = MediaPeer([], receive_video=True)
                    sdp = await self.media.accept_offer(message.sdp)
                    await self.client.send(Answer(to=message.sender, sdp=sdp))
                    if drain is None:
                        drain = spawn(self._drain(), "viewer-drain")
        finally:
            if drain is not None:
                await cancel_and_wait([drain])
            if self.media is not None:
                await self.media.close()
            await self.client.close()

    async def _drain(self) -> None:
        """Read what arrives (waveforms, events, decoded frames) so nothing piles up."""
        while True:
            media = self.media
            if media is not None:
                while not media.events.empty():
                    media.events.get_nowait()
                while not media.video_frames.empty():
                    media.video_frames.get_nowait()
            await asyncio.sleep(0.1)


class _ViewerProcess:
    """A viewer in a process of its own (so that the viewers' receiving, in Python, is not
    one process's bottleneck): it prints its frame count twice a second."""

    def __init__(self, base: str, consultation_id: str, decode: bool) -> None:
        self._argv = ["-m", "benchmarks.bedside_load", "--viewer", base, consultation_id]
        if decode:
            self._argv.append("--decode")
        self._count = 0
        self._proc: asyncio.subprocess.Process | None = None
        self._reader: asyncio.Task[None] | None = None

    def frames(self) -> int:
        return self._count

    async def start(self) -> None:
        self._proc = await asyncio.create_subprocess_exec(
            sys.executable, *self._argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE
        )
        self._reader = spawn(self._read(self._proc), "viewer-counts")

    async def _read(self, proc: asyncio.subprocess.Process) -> None:
        assert proc.stdout is not None
        async for line in proc.stdout:
            word, _, number = line.decode().partition(" ")
            if word == "frames":
                self._count = int(number)

    async def stop(self) -> None:
        if self._reader is not None:
            await cancel_and_wait([self._reader])
        if self._proc is not None and self._proc.returncode is None:
            self._proc.terminate()
            try:
                async with asyncio.timeout(20):
                    await self._proc.wait()
            except TimeoutError:
                self._proc.kill()
                await self._proc.wait()


async def _viewer_process(base: str, consultation_id: str) -> None:
    """The viewer process's own loop (see :class:`_ViewerProcess`)."""
    viewer = _Viewer(base)
    running = spawn(viewer.run(consultation_id), "viewer")
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    try:
        while not stop.is_set() and not running.done():
            print(f"frames {viewer.frames()}", flush=True)
            await asyncio.sleep(0.5)
    finally:
        await cancel_and_wait([running])


@dataclass
class Result:
    encoding: str
    viewers: int
    cpu: list[float] = field(default_factory=list)
    fps: list[float] = field(default_factory=list)


async def _setup(workdir: Path) -> ServerConfig:
    config = ServerConfig(
        database_url=sqlite_url(workdir / "db.sqlite3"), secret_key=SecretStr("b" * 40)
    )
    db = Database(config.database_url)
    await db.migrate()
    await accounts.sync_sites(db, config.sites)
    await accounts.add_user(db, "dk", PASSWORD, Role.DOCTOR, "koriyama", "dk")
    await accounts.add_user(db, "tw", PASSWORD, Role.TECHNICIAN, "wonju", "tw")
    await accounts.add_gateway(db, "bed-1", "wonju", KEY)
    await db.close()
    return config


def _start_gateway(encoding: Encoding, base: str, consultation_id: str, pty: str) -> Any:
    argv = ["--gateway", encoding, base, consultation_id, pty]
    return subprocess.Popen(
        [sys.executable, "-m", "benchmarks.bedside_load", *argv], stdin=subprocess.DEVNULL
    )


async def _measure(
    pid: int, viewers: list[_ViewerProcess], seconds: float
) -> tuple[list[float], list[float]]:
    shares = []
    frames0 = [v.frames() for v in viewers]
    start = time.monotonic()
    for _ in range(round(seconds)):
        c0, t0 = _cpu_s(pid), time.monotonic()
        await asyncio.sleep(1.0)
        shares.append((_cpu_s(pid) - c0) / (time.monotonic() - t0))
    wall = time.monotonic() - start
    fps = [(v.frames() - f) / wall for v, f in zip(viewers, frames0, strict=True)]
    return shares, fps


async def run(
    seconds: float,
    counts: list[int],
    settle_s: float,
    decode: bool,
    encodings: tuple[Encoding, ...] = ENCODINGS,
) -> list[Result]:
    results: list[Result] = []
    with tempfile.TemporaryDirectory() as tmp:
        config = await _setup(Path(tmp))
        server, serving, port = await start_server(
            create_app(config, static_dir=STATIC_DIR),
            config,
            sock=listening_socket("127.0.0.1", 0),
            log_level="error",
        )
        base = f"http://127.0.0.1:{port}"
        link = PtyLink()
        patient = Patient(PatientParameters(spo2=97, heart_rate=72))
        simulator = spawn(SIMULATORS["cms50"](link, patient).run(), "oximeter")
        try:
            await asyncio.sleep(0)
            tech = SignalingClient(base, UserCredentials("tw", PASSWORD))
            row = await tech.request_consultation("koriyama", False, "bedside load")
            await tech.close()
            doctor = SignalingClient(base, UserCredentials("dk", PASSWORD))
            await doctor.consultation_action(row.id, ConsultationAction.ACCEPT)
            await doctor.close()
            for encoding in encodings:
                gateway = _start_gateway(encoding, base, row.id, link.path)
                viewers: list[_ViewerProcess] = []
                try:
                    for count in counts:
                        while len(viewers) < count:
                            viewers.append(_ViewerProcess(base, row.id, decode))
                            await viewers[-1].start()
                        # Every viewer connected (the processes take a while to start on a
                        # loaded machine), then the encoders warmed up.
                        async with asyncio.timeout(START_TIMEOUT_S):
                            while not all(v.frames() > 0 for v in viewers):
                                await asyncio.sleep(0.2)
                        await asyncio.sleep(settle_s)
                        cpu, fps = await _measure(gateway.pid, viewers, seconds)
                        results.append(Result(encoding, count, cpu, fps))
                        _print_row(results[-1])
                finally:
                    for viewer in viewers:
                        await viewer.stop()
                    gateway.send_signal(signal.SIGTERM)
                    try:
                        await asyncio.to_thread(gateway.wait, 30)
                    except subprocess.TimeoutExpired:
                        gateway.kill()
        finally:
            await cancel_and_wait([simulator])
            server.should_exit = True
            await serving
    return results


def _print_row(result: Result) -> None:
    median = statistics.median(result.cpu)
    p90 = sorted(result.cpu)[int(0.9 * (len(result.cpu) - 1))]
    fps = sorted(result.fps)
    print(
        f"{result.encoding:11} {result.viewers:7} {100 * median:8.0f}% {100 * p90:7.0f}%"
        f" {fps[0]:8.1f} {statistics.median(fps):8.1f}   {' '.join(f'{f:.0f}' for f in fps)}",
        flush=True,
    )


def _per_frame_ms(result: Result) -> float:
    """Gateway CPU per frame delivered (to any viewer): what a frame costs, whether or not
    the machine had the CPU to deliver them all."""
    return 1000 * statistics.median(result.cpu) / max(1e-9, sum(result.fps))


def _summary(results: list[Result]) -> None:
    print(
        "\nshared vs per-viewer, same run: CPU median, CPU per frame delivered, and the"
        " slowest viewer's fps"
    )
    by = {(r.encoding, r.viewers): r for r in results}
    for count in sorted({r.viewers for r in results}):
        old, new = by.get(("per-viewer", count)), by.get(("shared", count))
        if old is None or new is None:
            continue
        ratio = statistics.median(new.cpu) / max(1e-9, statistics.median(old.cpu))
        was, now = _per_frame_ms(old), _per_frame_ms(new)
        print(
            f"{count} viewer(s): CPU x{ratio:.2f}; {was:.1f} -> {now:.1f} ms a frame"
            f" (x{now / was:.2f}); fps {min(old.fps):.1f} -> {min(new.fps):.1f}"
        )


async def _gateway(encoding: Encoding, base: str, consultation_id: str, pty: str) -> None:
    """The gateway process: a real gateway, its room camera encoded ``encoding``."""
    config = GatewayConfig(
        server_url=base,
        name="bed-1",
        key=KEY,
        mains_hz=60.0,
        devices=(DeviceSpec("cms50", pty, "oximeter-1"),),
        camera="synthetic",
        video=ProcessingSettings(WIDTH, HEIGHT, overlay="Wonju", timezone="Asia/Seoul"),
        consultation_id=consultation_id,
    )
    gateway = Gateway(config)
    # The gateway's configuration has no encoding of its own: the cameras are made again
    # with the one measured (before run() starts them).
    gateway.cameras = [LiveCamera(c.spec, config.video, encoding) for c in gateway.cameras]
    running = spawn(gateway.run(), "gateway")
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    waiting = spawn(stop.wait(), "sigterm")
    try:
        await asyncio.wait([running, waiting], return_when=asyncio.FIRST_COMPLETED)
    finally:
        await cancel_and_wait([running, waiting])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seconds", type=float, default=10.0, help="measured per step")
    parser.add_argument("--settle", type=float, default=5.0, help="after adding viewers")
    parser.add_argument("--viewers", default="1,2,4,8", help="viewer counts, in order")
    parser.add_argument("--decode", action="store_true", help="the viewers decode too")
    parser.add_argument(
        "--encodings", default=",".join(ENCODINGS), help="per-viewer and/or shared, in order"
    )
    parser.add_argument("--gateway", nargs=4, help=argparse.SUPPRESS)
    parser.add_argument("--viewer", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    if args.gateway:
        encoding, base, consultation_id, pty = args.gateway
        asyncio.run(_gateway(encoding, base, consultation_id, pty))
        return 0
    if args.viewer:
        if not args.decode:
            receiver: Any = aiortc.rtcrtpreceiver
            receiver.get_decoder = lambda codec: _CountingDecoder()
        asyncio.run(_viewer_process(*args.viewer))
        return 0
    counts = [int(n) for n in args.viewers.split(",")]
    print(f"gateway CPU (one core = 100 %) and fps delivered, {WIDTH}x{HEIGHT} at {FPS} fps")
    print(f"{'encoding':11} {'viewers':>7} {'CPU med':>9} {'p90':>8} {'fps min':>8} {'median':>8}")
    encodings = tuple(e for e in ENCODINGS if e in args.encodings.split(","))
    results = asyncio.run(run(args.seconds, counts, args.settle, args.decode, encodings))
    _summary(results)
    return 0


if __name__ == "__main__":
    sys.exit(main())
