"""The Wonju doctor of the WAN bed, a process run in the Wonju host's namespace:
``python -m tests.wan.doctor SERVER --tech USER --doctor USER --password P [--relay-only]``.

The Koriyama technician requests a consultation with Wonju (over HTTP, then signs out), the
doctor accepts it, joins the room and answers every offer of the bedside gateway as the
browser does: ICE servers fetched for each connection, the previous connection closed in
the background (closing one whose TURN server is gone waits a minute for nothing).

It prints JSON lines on standard output: ``{"consultation": ID}`` once; ``{"offer": N,
"theirs": [...], "ours": [...]}`` for each offer answered (the candidates of both sides);
``{"resumed": "video"|"waveform", "t": T, "gap_s": G}`` when media arrives after more than
a second without (or for the first time: ``gap_s`` null); and every 0.2 s a status line
``{"status": {...}}`` with the offers answered, connections opened, frames, waveform packets
and numerics received, the last frame's size, the connection's state and the ICE pair in use
(``["relay 203.0.113.10:50000", "srflx 100.64.1.2:40000"]``: local, remote)."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import sys
import time
from typing import Any

from aiortc import RTCIceServer

from media.rtc.events import Numeric
from media.rtc.peer import MediaPeer, PeerEventKind
from runtime.tasks import cancel_and_wait, spawn
from signaling.client import SignalingClient, UserCredentials
from signaling.schema import Answer, ConsultationAction, Offer
from tests.wan.launch import wait_for_server

#: A pause in arrivals longer than this is a gap; what comes after it is a recovery.
GAP_S = 1.0


def emit(item: dict[str, Any]) -> None:
    print(json.dumps(item), flush=True)


def ice_pair(media: MediaPeer) -> list[str] | None:
    """The pair ICE nominated, local then remote, each ``TYPE HOST:PORT`` (aiortc exposes
    no API for it: read from aioice's connection under the bundled transport)."""
    sctp = media.pc.sctp
    if sctp is None:
        return None
    try:
        connection = sctp.transport.transport._connection
        pair = next(iter(connection._nominated.values()))
    except (AttributeError, StopIteration):
        return None
    return [f"{c.type} {c.host}:{c.port}" for c in (pair.local_candidate, pair.remote_candidate)]


def candidates(sdp: str) -> list[str]:
    """An SDP's ICE candidates as ``TYPE HOST:PORT``."""
    found = []
    for line in sdp.splitlines():
        if line.startswith("a=candidate:"):
            fields = line.split()
            found.append(f"{fields[7]} {fields[4]}:{fields[5]}")
    return found


class Doctor:
    def __init__(self, client: SignalingClient, relay_only: bool) -> None:
        self.client = client
        self.relay_only = relay_only
        self.media: MediaPeer | None = None
        self.offers = 0
        self.opened = 0
        self.frames = 0
        self.waveforms = 0
        self.numerics = 0
        self.size: list[int] | None = None
        self.last: dict[str, float] = {}
        self._closing: set[asyncio.Task[None]] = set()

    async def _ice_servers(self) -> list[RTCIceServer]:
        body = await self.client.ice_servers()
        return [
            RTCIceServer(urls=s.urls, username=s.username, credential=s.credential)
            for s in body.ice_servers
        ]

    async def answer_offers(self) -> None:
        while True:
            message = await self.client.recv()
            if not isinstance(message, Offer) or message.sender is None:
                continue
            old, self.media = self.media, None
            if old is not None:
                task = spawn(_close(old), "doctor-close")
                self._closing.add(task)
                task.add_done_callback(self._closing.discard)
            media = MediaPeer(
                await self._ice_servers(), receive_video=True, relay_only=self.relay_only
            )
            media.channel.on("open", self._on_open)
            self.media = media
            self.offers += 1
            sdp = await media.accept_offer(message.sdp)
            await self.client.send(Answer(to=message.sender, sdp=sdp))
            emit({"offer": self.offers, "theirs": candidates(message.sdp), "ours": candidates(sdp)})

    def _on_open(self) -> None:
        self.opened += 1
        if self.media is not None:
            self.media.start()  # the heartbeat's replies

    def _arrived(self, kind: str, now: float) -> None:
        last = self.last.get(kind)
        if last is None or now - last > GAP_S:
            gap = None if last is None else round(now - last, 3)
            emit({"resumed": kind, "t": now, "gap_s": gap})
        self.last[kind] = now

    async def collect(self) -> None:
        while True:
            media = self.media
            now = time.time()
            if media is not None:
                while not media.events.empty():
                    event = media.events.get_nowait()
                    if event.kind is PeerEventKind.WAVEFORM:
                        self.waveforms += 1
                        self._arrived("waveform", now)
                    elif isinstance(event.message, Numeric):
                        self.numerics += 1
                while not media.video_frames.empty():
                    frame = media.video_frames.get_nowait()
                    self.frames += 1
                    self.size = [frame.width, frame.height]
                    self._arrived("video", now)
            await asyncio.sleep(0.02)

    async def report(self) -> None:
        while True:
            media = self.media
            emit(
                {
                    "status": {
                        "t": time.time(),
                        "offers": self.offers,
                        "opened": self.opened,
                        "frames": self.frames,
                        "waveforms": self.waveforms,
                        "numerics": self.numerics,
                        "size": self.size,
                        "state": None if media is None else media.pc.connectionState,
                        "pair": None if media is None else ice_pair(media),
                    }
                }
            )
            await asyncio.sleep(0.2)

    async def close(self) -> None:
        if self.media is not None:
            await _close(self.media)
        if self._closing:
            await asyncio.wait(list(self._closing))


async def _close(media: MediaPeer) -> None:
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(5):
            await media.close()


async def main(args: argparse.Namespace) -> None:
    # Started with the server, which may not be up yet.
    await asyncio.to_thread(wait_for_server, args.server)
    tech = SignalingClient(args.server, UserCredentials(args.tech, args.password))
    await tech.login()
    row = await tech.request_consultation("wonju", False)
    await tech.close()
    client = SignalingClient(args.server, UserCredentials(args.doctor, args.password))
    await client.start()
    doctor = Doctor(client, args.relay_only)
    try:
        await client.consultation_action(row.id, ConsultationAction.ACCEPT)
        await client.join(row.id)
        emit({"consultation": row.id})
        tasks = [
            spawn(doctor.answer_offers(), "doctor-answers"),
            spawn(doctor.collect(), "doctor-collect"),
            spawn(doctor.report(), "doctor-report"),
        ]
        try:
            await asyncio.wait(tasks, return_when=asyncio.FIRST_EXCEPTION)
        finally:
            await cancel_and_wait(tasks)
    finally:
        await doctor.close()
        await client.close()


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("server")
    parser.add_argument("--tech", required=True)
    parser.add_argument("--doctor", required=True)
    parser.add_argument("--password", required=True)
    parser.add_argument("--relay-only", action="store_true")
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(main(parser.parse_args()))
    sys.exit(0)
