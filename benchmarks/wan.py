"""The call across a WAN built like the real one: ``telemed bench wan``.

Everything runs on this machine, with every media packet forced through a real coturn
(relay-only ICE on both sides) and, on the way to it, through one userspace impairment
relay per site (:mod:`benchmarks.impair`; this kernel has no netem): Wonju's (the bedside
gateway's access line) and Koriyama's (the consulting doctor's). The signaling server runs
in this process on a socket of its own, so it can be killed and brought back on the same
port. The bedside is a real gateway reading a simulated oximeter on a pty and a synthetic
640x480 camera whose frames carry a capture stamp; the doctor is an aiortc peer answering
its offers, as the browser does.

For each profile (:data:`benchmarks.impair.PROFILES`, applied to Wonju's uplink and
downlink; Koriyama's line is the wired one):

- video: glass-to-glass (capture stamp to decoded frame), frames per second, and the
  longest gap between two decoded frames (a freeze);
- waveforms: sample time to arrival (the packet's last sample), and packets lost (gaps in
  each channel's sequence numbers);
- numerics: the gateway's receive time to arrival;
- how often the link was declared dead and rebuilt.

Then the outages, on the wired profile: blackouts of both sites' lines (5, 20, 40 and 120 s
by default), coturn killed for 10 s, the signaling server killed for 20 s; for each, the
time from the path's return to the first new waveform packet and video frame, and the
longest media gap during a server outage (media does not pass through the server, so it
should be the steady figure).

Figures print as a table, and go to ``--json`` and ``--plot`` (PNG) when asked::

    python -m benchmarks.wan [--profiles wired,wifi] [--seconds 20] [--blackouts 5,20]
    telemed bench wan --help
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import json
import logging
import math
import statistics
import tempfile
import time
from collections.abc import AsyncIterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import av
import cv2
import numpy as np
from aiortc import RTCIceServer
from pydantic import SecretStr

from benchmarks.coturn import TURN_SECRET, Coturn
from benchmarks.impair import PROFILES, Impairment, UdpImpairmentRelay
from clinic_ui import STATIC_DIR
from devices.simulation.patient import Patient, PatientParameters
from devices.simulation.pty_link import PtyLink
from devices.simulation.registry import SIMULATORS
from media.rtc.events import Numeric
from media.rtc.peer import MediaPeer, PeerEventKind
from media.video.processing import ProcessingSettings
from media.video.stamp import read_stamp
from runtime.tasks import cancel_and_wait, spawn
from signaling.client import SignalingClient, UserCredentials
from signaling.config import ServerConfig, TurnConfig
from signaling.schema import Answer, ConsultationAction, Offer, Role
from signaling.server.app import create_app
from signaling.storage import accounts
from signaling.storage.database import Database, sqlite_url
from telemed.gateway.runner import DeviceSpec, Gateway, GatewayConfig
from telemed.serve import listening_socket, start_server

log = logging.getLogger(__name__)

PASSWORD = "benchmark-password-0123"  # noqa: S105 (a throwaway account in a temporary database)
_T = TypeVar("_T")
KEY = "benchmark-gateway-key-0123456789abcdef"
WIDTH, HEIGHT = 640, 480
#: A gap between two decoded frames longer than this is a freeze.
FREEZE_S = 1.0


@dataclass
class Viewer:
    """The consulting doctor: answers every offer with a relay-only aiortc peer whose TURN
    server is reached through Koriyama's relay, and records what arrives and when."""

    client: SignalingClient
    relay_port: int
    media: MediaPeer | None = None
    offers: int = 0
    #: (arrival, latency ms) of each waveform packet / numeric / decoded frame.
    waveforms: list[tuple[float, float]] = field(default_factory=list)
    numerics: list[tuple[float, float]] = field(default_factory=list)
    #: Every decoded frame: when it arrived, and its glass-to-glass latency when its stamp
    #: could be read (a frame the adaptation scaled down may blur it past reading).
    frames: list[tuple[float, float | None]] = field(default_factory=list)
    #: Sequence numbers seen per waveform channel.
    sequences: dict[int, list[int]] = field(default_factory=dict)
    sizes: set[tuple[int, int]] = field(default_factory=set)

    async def _ice_servers(self) -> list[RTCIceServer]:
        body = await self.client.ice_servers()
        servers = []
        for server in body.ice_servers:
            urls = [_via(url, self.relay_port) for url in server.urls]
            servers.append(
                RTCIceServer(urls=urls, username=server.username, credential=server.credential)
            )
        return servers

    async def answer_offers(self) -> None:
        while True:
            message = await self.client.recv()
            if isinstance(message, Offer) and message.sender is not None:
                old, self.media = self.media, None
                if old is not None:
                    spawn(_close_soon(old), "viewer-close")
                media = MediaPeer(await self._ice_servers(), receive_video=True, relay_only=True)
                self.media = media
                self.offers += 1
                sdp = await media.accept_offer(message.sdp)
                await self.client.send(Answer(to=message.sender, sdp=sdp))

    async def collect(self) -> None:
        """Drain the current connection's events and frames (the stamp read off the loop)."""
        while True:
            media = self.media
            if media is None:
                await asyncio.sleep(0.01)
                continue
            while not media.events.empty():
                event = media.events.get_nowait()
                now = time.time()
                if event.kind is PeerEventKind.WAVEFORM and event.packet is not None:
                    packet = event.packet
                    self.waveforms.append((now, (now - packet.end_time) * 1000))
                    self.sequences.setdefault(packet.channel, []).append(packet.sequence)
                elif isinstance(event.message, Numeric):
                    self.numerics.append((now, (now - event.message.time) * 1000))
            while not media.video_frames.empty():
                frame = media.video_frames.get_nowait()
                now = time.time()
                self.sizes.add((frame.width, frame.height))
                latency = await asyncio.to_thread(_stamp_latency, frame, now)
                self.frames.append((now, latency))
            await asyncio.sleep(0.005)


#: A stamp that reads as older than this was misread (its CRC is 8 bits: 1 in 256 passes).
_PLAUSIBLE_MS = 60_000


def _stamp_latency(frame: av.VideoFrame, now: float) -> float | None:
    """Glass-to-glass milliseconds from a decoded frame's stamp, read at the camera's size
    (a frame sent smaller is scaled back first); None when it cannot be read."""
    image = np.asarray(frame.to_ndarray(format="bgr24"), dtype=np.uint8)
    if image.shape[1] != WIDTH:
        image = np.asarray(
            cv2.resize(image, (WIDTH, HEIGHT), interpolation=cv2.INTER_LINEAR), dtype=np.uint8
        )
    stamp = read_stamp(image)
    if stamp is None:
        return None
    latency = float((now * 1000 - stamp[1]) % 2**32)
    return latency if latency < _PLAUSIBLE_MS else None


async def _close_soon(media: MediaPeer) -> None:
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(5):
            await media.close()


def _via(url: str, port: int) -> str:
    """A ``turn:127.0.0.1:PORT?...`` URL with its port replaced by the site relay's."""
    head, _, rest = url.partition("127.0.0.1:")
    _, sep, query = rest.partition("?")
    return f"{head}127.0.0.1:{port}{sep}{query}"


class WanBed:
    """coturn, the two site relays, the server, the bedside and the doctor, in a call."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.coturn = Coturn(workdir)
        self.wonju = UdpImpairmentRelay(("127.0.0.1", self.coturn.port), seed=1)
        self.koriyama = UdpImpairmentRelay(("127.0.0.1", self.coturn.port), seed=2)
        self._server: Any = None
        self._serving: asyncio.Task[None] | None = None
        self.port = 0
        self.gateway: Gateway | None = None
        self.viewer: Viewer | None = None
        self._tasks: list[asyncio.Task[Any]] = []

    def _config(self) -> ServerConfig:
        turn = TurnConfig(
            urls=(f"turn:127.0.0.1:{self.wonju.port}?transport=udp",), secret=TURN_SECRET
        )
        return ServerConfig(
            database_url=sqlite_url(self.workdir / "db.sqlite3"),
            secret_key=SecretStr("w" * 40),
            turn=turn,
        )

    async def start_server(self) -> None:
        config = self._config()
        sock = listening_socket("127.0.0.1", self.port)
        self._server, self._serving, self.port = await start_server(
            create_app(config, static_dir=STATIC_DIR), config, sock=sock, log_level="error"
        )

    async def stop_server(self) -> None:
        if self._server is not None and self._serving is not None:
            self._server.should_exit = True
            await self._serving
            self._server = self._serving = None

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[WanBed]:
        self.coturn.start()
        await self.wonju.start()
        await self.koriyama.start()
        config = self._config()
        db = Database(config.database_url)
        await db.migrate()
        await accounts.sync_sites(db, config.sites)
        await accounts.add_user(db, "dk", PASSWORD, Role.DOCTOR, "koriyama", "dk")
        await accounts.add_user(db, "tw", PASSWORD, Role.TECHNICIAN, "wonju", "tw")
        await accounts.add_gateway(db, "bed-1", "wonju", KEY)
        await db.close()
        await self.start_server()
        base = f"http://127.0.0.1:{self.port}"
        link = PtyLink()
        simulator = spawn(
            SIMULATORS["cms50"](link, Patient(PatientParameters(spo2=97, heart_rate=72))).run(),
            "oximeter",
        )
        self._tasks.append(simulator)
        await asyncio.sleep(0)
        doctor = SignalingClient(base, UserCredentials("dk", PASSWORD))
        try:
            tech = SignalingClient(base, UserCredentials("tw", PASSWORD))
            row = await tech.request_consultation("koriyama", False, "wan")
            await tech.close()
            await doctor.start()
            await doctor.consultation_action(row.id, ConsultationAction.ACCEPT)
            self.gateway = Gateway(
                GatewayConfig(
                    server_url=base,
                    name="bed-1",
                    key=KEY,
                    mains_hz=60.0,
                    devices=(DeviceSpec("cms50", link.path, "oximeter-1"),),
                    camera="synthetic",
                    video=ProcessingSettings(WIDTH, HEIGHT),
                    consultation_id=row.id,
                    relay_only=True,
                    data_dir=self.workdir / "gateway",
                )
            )
            self._tasks.append(spawn(self.gateway.run(), "gateway"))
            self.viewer = Viewer(doctor, self.koriyama.port)
            self._tasks.append(spawn(self.viewer.answer_offers(), "viewer"))
            self._tasks.append(spawn(self.viewer.collect(), "viewer-collect"))
            await doctor.join(row.id)
            async with asyncio.timeout(60):
                while not self.viewer.frames or not self.viewer.waveforms:
                    await asyncio.sleep(0.1)
            yield self
        finally:
            await cancel_and_wait(self._tasks)
            if self.viewer is not None and self.viewer.media is not None:
                await _close_soon(self.viewer.media)
            await doctor.close()
            await self.stop_server()
            await self.koriyama.close()
            await self.wonju.close()
            self.coturn.stop()

    def set_path(self, path: Impairment) -> None:
        self.wonju.impairment = path
        self.koriyama.impairment = PROFILES["wired"]

    def blackout(self, on: bool) -> None:
        self.wonju.blackout(on)
        self.koriyama.blackout(on)

    def rung(self) -> str | None:
        """The rung the gateway's video adaptation sends the viewer now (None: no link)."""
        peers = self.gateway.peers if self.gateway is not None else None
        if peers is None:
            return None
        for peer_id in peers.open_peers:
            media = peers.media_of(peer_id)
            if media is not None and media.video_adapter is not None:
                return media.video_adapter.rung.name
        return None

    @property
    def deaths(self) -> int:
        assert self.gateway is not None
        assert self.gateway.peers is not None
        return self.gateway.peers.deaths


# -- figures ----------------------------------------------------------------------------------


def _stats(values: list[float]) -> dict[str, float]:
    if not values:
        return {"n": 0}
    ordered = sorted(values)
    return {
        "n": len(values),
        "median": statistics.median(ordered),
        "p95": ordered[min(len(ordered) - 1, math.ceil(0.95 * len(ordered)) - 1)],
        "max": ordered[-1],
    }


def _since(samples: list[tuple[float, _T]], start: float) -> list[tuple[float, _T]]:
    return [s for s in samples if s[0] >= start]


def _lost(sequences: dict[int, list[int]]) -> tuple[int, int]:
    """(received, missing) packets over every channel, from the gaps in their sequences."""
    received = missing = 0
    for seqs in sequences.values():
        if not seqs:
            continue
        unique = sorted(set(seqs))
        received += len(unique)
        missing += unique[-1] - unique[0] + 1 - len(unique)
    return received, missing


async def steady(bed: WanBed, name: str, seconds: float, settle_s: float) -> dict[str, Any]:
    """Run ``seconds`` on profile ``name`` (after ``settle_s`` to settle: the adaptation
    finding the new path's rate) and measure."""
    viewer = bed.viewer
    assert viewer is not None
    bed.set_path(PROFILES[name])
    await asyncio.sleep(settle_s)
    deaths = bed.deaths
    start = time.time()
    viewer.sequences.clear()
    viewer.sizes.clear()
    rungs: list[str] = []
    while time.time() - start < seconds:
        rungs.append(bed.rung() or "none")
        await asyncio.sleep(0.5)
    frames = _since(viewer.frames, start)
    arrivals = [start, *(t for t, _ in frames), time.time()]
    gaps = [b - a for a, b in itertools.pairwise(arrivals)]
    received, missing = _lost(viewer.sequences)
    return {
        "profile": name,
        "path": asdict(PROFILES[name]),
        "seconds": seconds,
        "video_ms": _stats([ms for _, ms in frames if ms is not None]),
        "video_fps": len(frames) / seconds,
        "video_stamped_pct": 100.0 * sum(ms is not None for _, ms in frames) / max(1, len(frames)),
        "video_longest_gap_s": max(gaps),
        "video_freezes": sum(1 for g in gaps if g > FREEZE_S),
        "video_sizes": sorted(viewer.sizes),
        #: Share of the time (%) the adaptation spent on each rung.
        "video_rungs": {r: round(100.0 * rungs.count(r) / len(rungs)) for r in sorted(set(rungs))},
        "waveform_ms": _stats([ms for _, ms in _since(viewer.waveforms, start)]),
        "waveform_lost_pct": 100.0 * missing / max(1, received + missing),
        "numeric_ms": _stats([ms for _, ms in _since(viewer.numerics, start)]),
        "link_deaths": bed.deaths - deaths,
    }


async def _back(bed: WanBed, restored: float, limit_s: float = 120.0) -> dict[str, float | None]:
    """Seconds from ``restored`` to the first waveform packet and video frame after it."""
    viewer = bed.viewer
    assert viewer is not None
    wave = frame = None
    deadline = time.monotonic() + limit_s
    while (wave is None or frame is None) and time.monotonic() < deadline:
        if wave is None and viewer.waveforms and viewer.waveforms[-1][0] > restored:
            wave = next(t for t, _ in viewer.waveforms if t > restored) - restored
        if frame is None and viewer.frames and viewer.frames[-1][0] > restored:
            frame = next(t for t, _ in viewer.frames if t > restored) - restored
        await asyncio.sleep(0.02)
    return {"waveforms_back_s": wave, "video_back_s": frame}


async def outage(bed: WanBed, kind: str, seconds: float) -> dict[str, Any]:
    viewer = bed.viewer
    assert viewer is not None
    bed.set_path(PROFILES["wired"])
    await asyncio.sleep(5.0)  # steady before it
    deaths = bed.deaths
    began = time.time()
    if kind == "blackout":
        bed.blackout(True)
        await asyncio.sleep(seconds)
        bed.blackout(False)
    elif kind == "turn-crash":
        bed.coturn.stop()
        await asyncio.sleep(seconds)
        bed.coturn.start()
    elif kind == "server-restart":
        await bed.stop_server()
        await asyncio.sleep(seconds)
        await bed.start_server()
    restored = time.time()
    result: dict[str, Any] = {"outage": kind, "seconds": seconds}
    if kind == "server-restart":
        await asyncio.sleep(10.0)  # and some time after it
        arrivals = [began, *(t for t, _ in viewer.frames if t >= began), time.time()]
        waves = [began, *(t for t, _ in viewer.waveforms if t >= began), time.time()]
        result["video_longest_gap_s"] = max(b - a for a, b in itertools.pairwise(arrivals))
        result["waveform_longest_gap_s"] = max(b - a for a, b in itertools.pairwise(waves))
    else:
        result |= await _back(bed, restored)
    result["link_deaths"] = bed.deaths - deaths
    return result


def _print(results: list[dict[str, Any]]) -> None:
    for r in results:
        if "profile" in r:
            v, w, n = r["video_ms"], r["waveform_ms"], r["numeric_ms"]
            print(
                f"{r['profile']:<12} video {v.get('median', math.nan):6.0f} ms median "
                f"{v.get('p95', math.nan):6.0f} p95, {r['video_fps']:4.1f} fps, longest gap "
                f"{r['video_longest_gap_s']:4.1f} s ({r['video_freezes']} freezes) | "
                f"waveforms {w.get('median', math.nan):5.0f} ms median "
                f"{w.get('p95', math.nan):5.0f} p95, {r['waveform_lost_pct']:4.1f} % lost | "
                f"numerics {n.get('median', math.nan):5.0f} ms median | "
                f"link declared dead {r['link_deaths']}x | rungs "
                + ", ".join(f"{k} {p}%" for k, p in r["video_rungs"].items())
                + f" | {r['video_stamped_pct']:.0f} % of frames stamped"
            )
        else:
            figures = ", ".join(
                f"{k} {v:.1f}" if isinstance(v, float) else f"{k} {v}"
                for k, v in r.items()
                if k not in ("outage", "seconds")
            )
            print(f"{r['outage']:<14} {r['seconds']:5.0f} s: {figures}")


def plot(results: list[dict[str, Any]], path: Path) -> None:
    """A PNG drawn with OpenCV: per profile, the median latencies (video, waveforms,
    numerics); per outage, the seconds until video and waveforms were back."""
    rows: list[tuple[str, list[tuple[str, float]]]] = []
    for r in results:
        if "profile" in r:
            rows.append(
                (
                    f"{r['profile']} (ms)",
                    [
                        ("video", r["video_ms"].get("median", 0.0)),
                        ("waveforms", r["waveform_ms"].get("median", 0.0)),
                        ("numerics", r["numeric_ms"].get("median", 0.0)),
                    ],
                )
            )
        elif "video_back_s" in r:
            rows.append(
                (
                    f"{r['outage']} {r['seconds']:.0f}s (s to recover)",
                    [
                        ("video", r["video_back_s"] or 0.0),
                        ("waveforms", r["waveforms_back_s"] or 0.0),
                    ],
                )
            )
    width, line, margin = 1000, 18, 300
    height = 40 + sum(len(bars) * line + 12 for _, bars in rows)
    image = np.full((height, width, 3), 255, np.uint8)
    colours = {"video": (200, 0, 0), "waveforms": (0, 140, 0), "numerics": (0, 0, 200)}
    font = cv2.FONT_HERSHEY_SIMPLEX
    cv2.putText(image, "telemed bench wan", (10, 22), font, 0.6, (0, 0, 0), 1)
    y = 40
    for label, bars in rows:
        top = max([value for _, value in bars] + [1.0])
        cv2.putText(image, label, (10, y + 13), font, 0.45, (0, 0, 0), 1)
        for name, value in bars:
            length = int(value / top * (width - margin - 120))
            cv2.rectangle(
                image, (margin, y + 3), (margin + length, y + line - 3), colours[name], -1
            )
            text = f"{name} {value:.1f}"
            cv2.putText(image, text, (margin + length + 6, y + 13), font, 0.4, (0, 0, 0), 1)
            y += line
        y += 12
    cv2.imwrite(str(path), image)


async def run(
    profiles: list[str],
    seconds: float,
    blackouts: list[float],
    turn_s: float,
    server_s: float,
    settle_s: float = 10.0,
) -> list[dict[str, Any]]:
    results: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="telemed-wan-") as tmp:
        bed = WanBed(Path(tmp))
        async with bed.running():
            for name in profiles:
                results.append(await steady(bed, name, seconds, settle_s))
                _print(results[-1:])
            for length in blackouts:
                results.append(await outage(bed, "blackout", length))
                _print(results[-1:])
            if turn_s > 0:
                results.append(await outage(bed, "turn-crash", turn_s))
                _print(results[-1:])
            if server_s > 0:
                results.append(await outage(bed, "server-restart", server_s))
                _print(results[-1:])
    return results


def _floats(text: str) -> list[float]:
    return [float(x) for x in text.split(",") if x.strip()]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="telemed bench wan", description=__doc__)
    parser.add_argument(
        "--profiles", default="lan,wired,wifi,mobile,slow-uplink", help="comma-separated"
    )
    parser.add_argument("--seconds", type=float, default=20.0, help="measured per profile")
    parser.add_argument("--blackouts", default="5,20,40,120", help="seconds, comma-separated")
    parser.add_argument("--turn-crash", type=float, default=10.0, help="seconds coturn is down")
    parser.add_argument(
        "--server-down", type=float, default=20.0, help="seconds the server is down"
    )
    parser.add_argument(
        "--settle", type=float, default=10.0, help="seconds on a profile before measuring"
    )
    parser.add_argument("--json", type=Path, help="write the figures here")
    parser.add_argument("--plot", type=Path, help="write a PNG here")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    profiles = [p for p in args.profiles.split(",") if p]
    unknown = [p for p in profiles if p not in PROFILES]
    if unknown:
        parser.error(f"unknown profiles {unknown}; known: {', '.join(PROFILES)}")
    results = asyncio.run(
        run(
            profiles,
            args.seconds,
            _floats(args.blackouts),
            args.turn_crash,
            args.server_down,
            args.settle,
        )
    )
    if args.json:
        args.json.write_text(json.dumps(results, indent=2, default=list))
    if args.plot:
        plot(results, args.plot)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
