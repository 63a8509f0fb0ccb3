"""CPU the bedside side costs: `telemed demo` (server, two simulated devices, the gateway with a
640x480 synthetic camera) measured idle, then with one and two doctors receiving everything.

The demo runs as its own process; the doctors are aiortc peers in this process that answer the
gateway's offers and decode the video. The figure is the demo process's CPU (user + system)
per second of wall time, as a share of one core: median over 1 s windows, with the idle run
as the baseline of the same run.

    python -m benchmarks.bedside_load [--seconds 15]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

from media.rtc.peer import MediaPeer
from runtime.tasks import cancel_and_wait, spawn
from signaling.client import SignalingClient, UserCredentials
from signaling.schema import Answer, Offer
from telemed.serve import DEMO_ACCOUNTS

_TICKS = os.sysconf("SC_CLK_TCK")


def _cpu_s(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / _TICKS  # utime + stime


async def _windows(pid: int, seconds: float) -> list[float]:
    shares = []
    for _ in range(round(seconds)):
        c0, t0 = _cpu_s(pid), time.monotonic()
        await asyncio.sleep(1.0)
        shares.append((_cpu_s(pid) - c0) / (time.monotonic() - t0))
    return shares


class _Doctor:
    def __init__(self, base: str) -> None:
        password = next(a.password for a in DEMO_ACCOUNTS if a.username == "doctor.koriyama")
        self.client = SignalingClient(base, UserCredentials("doctor.koriyama", password))
        self.media: MediaPeer | None = None
        self.frames = 0

    async def run(self, consultation_id: str) -> None:
        await self.client.start()
        await self.client.join(consultation_id)
        video: asyncio.Task[None] | None = None
        try:
            while True:
                message = await self.client.recv()
                if isinstance(message, Offer) and message.sender is not None:
                    if self.media is not None:
                        await self.media.close()
                    self.media = MediaPeer([], receive_video=True)
                    sdp = await self.media.accept_offer(message.sdp)
                    await self.client.send(Answer(to=message.sender, sdp=sdp))
                    if video is None:
                        video = spawn(self._count_frames(), "count-frames")
        finally:
            if video is not None:
                await cancel_and_wait([video])
            if self.media is not None:
                await self.media.close()
            await self.client.close()

    async def _count_frames(self) -> None:
        while True:
            if self.media is None:
                await asyncio.sleep(0.1)
                continue
            await self.media.video_frames.get()
            self.frames += 1
            while not self.media.events.empty():
                self.media.events.get_nowait()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def _accept_demo_request(base: str) -> str:
    password = next(a.password for a in DEMO_ACCOUNTS if a.username == "doctor.koriyama")
    async with httpx.AsyncClient(base_url=base) as http:
        for _ in range(200):
            with contextlib.suppress(httpx.TransportError):
                token = (
                    await http.post(
                        "/api/auth/login",
                        json={"username": "doctor.koriyama", "password": password},
                    )
                ).json()["token"]
                headers = {"Authorization": f"Bearer {token}"}
                rows = (await http.get("/api/consultations", headers=headers)).json()
                requested = [r for r in rows if r["state"] == "requested"]
                if requested:
                    cid = str(requested[0]["id"])
                    await http.post(f"/api/consultations/{cid}/accept", headers=headers)
                    return cid
            await asyncio.sleep(0.1)
    raise RuntimeError("the demo did not come up with a request")


async def main(seconds: float) -> None:
    port = _free_port()
    base = f"http://127.0.0.1:{port}"
    with tempfile.TemporaryDirectory() as data:
        proc = subprocess.Popen(
            [sys.executable, "-m", "telemed", "demo", "--port", str(port)],
            env={**os.environ, "TELEMED_DATA_DIR": data, "TELEMED_LOG_LEVEL": "warning"},
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        doctors: list[tuple[_Doctor, asyncio.Task[None]]] = []
        try:
            cid = await _accept_demo_request(base)
            await asyncio.sleep(5)  # devices connected, gateway joined
            results = {"idle (no doctor)": await _windows(proc.pid, seconds)}
            for count in (1, 2):
                doctor = _Doctor(base)
                doctors.append((doctor, spawn(doctor.run(cid), f"doctor-{count}")))
                await asyncio.sleep(5)  # connected, encoder warmed up
                before = [d.frames for d, _ in doctors]
                label = f"{count} doctor{'s' if count > 1 else ''} receiving"
                results[label] = await _windows(proc.pid, seconds)
                fps = [(d.frames - b) / seconds for (d, _), b in zip(doctors, before, strict=True)]
                print(f"{label}: video at the doctors {', '.join(f'{f:.1f}' for f in fps)} fps")
        finally:
            await cancel_and_wait([t for _, t in doctors])
            proc.terminate()
            proc.wait(20)
    idle = statistics.median(results["idle (no doctor)"])
    print(f"\n{'demo process CPU (one core = 100 %)':42} {'median':>8} {'p90':>8} {'vs idle':>8}")
    for label, shares in results.items():
        median = statistics.median(shares)
        p90 = sorted(shares)[int(0.9 * (len(shares) - 1))]
        print(f"{label:42} {100 * median:7.1f}% {100 * p90:7.1f}% {median / idle:7.2f}x")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seconds", type=float, default=15.0)
    asyncio.run(main(parser.parse_args().seconds))
