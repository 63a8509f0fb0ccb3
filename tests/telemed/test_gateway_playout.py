"""A viewer's playout delay over a real link (issue 15): an aiortc viewer sends
``playout-delay`` on the events channel, the gateway applies it to that connection's video
(one camera's, or all), every packet on the wire then carries min 0 / max N, and the viewer's
``video`` event says the delay in force and the layer of the shared encode it is sent (a new
``video`` when the layer switches). Changes are rate-limited per clinician, and requests
the contract or the bedside refuses say why."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any, Literal

import pytest
from aiortc.rtp import RtcpReceiverInfo, RtcpRrPacket

from media.rtc.events import PlayoutDelayRequest, VideoState, encode_event
from media.rtc.peer import MediaPeer, PeerEventKind
from media.rtc.shared_encoder import SharedFrames, bind_senders
from media.video.capture import CaptureThread, LatestFrame, SyntheticSource
from media.video.processing import FrameProcessor, ProcessingSettings
from runtime.clock import ManualClock
from runtime.tasks import cancel_and_wait, spawn
from signaling.schema import Peer, PrincipalKind, Role
from telemed.gateway.playout import BURST, CLEAR_WITH_MAX, TOO_OFTEN, GatewayPlayout
from tests.helpers import eventually
from tests.media.rtp_playout import capture_rtp, extension_id, playout_delays

pytestmark = pytest.mark.slow

DOCTOR = Peer(
    peer_id="p-dk", kind=PrincipalKind.USER, principal_id=7, name="dk", role=Role.DOCTOR,
    site="koriyama",
)  # fmt: skip
CAMERAS = ["room", "ultrasound"]
Reason = Literal["loss", "jitter", "clear"]


@dataclass
class Link:
    """The gateway's side of a viewer's connection (two cameras, both shared encodes of one
    synthetic source) and the viewer's (real aiortc peers), with what crossed."""

    bedside: MediaPeer
    viewer: MediaPeer
    playout: GatewayPlayout
    #: Every RTP packet the viewer took in, and the extension's negotiated id.
    packets: list[bytes]
    ext_id: int
    #: The bedside's SSRC of each camera's video, in CAMERAS' order.
    ssrcs: list[int]
    #: What the gateway answered each request (None: applied), and the viewer's ``video``s.
    answers: list[str | None] = field(default_factory=list)
    states: list[VideoState] = field(default_factory=list)

    def ask(self, max_ms: int, reason: Reason, camera: str | None = None) -> None:
        message = PlayoutDelayRequest(camera=camera, max_ms=max_ms, reason=reason)
        assert self.viewer.send_event(encode_event(message))

    async def answered(self, count: int) -> str | None:
        await eventually(lambda: len(self.answers) >= count, timeout=10)
        return self.answers[count - 1]

    async def told(self, check: Callable[[VideoState], bool]) -> VideoState:
        state: VideoState = await eventually(
            lambda: next((s for s in reversed(self.states) if check(s)), None), timeout=20
        )
        return state

    def delays(self, start: int) -> list[tuple[int, tuple[int, int]]]:
        """(camera, delay) of each camera packet from packet ``start`` on, in arrival order."""
        found = []
        for packet in self.packets[start:]:
            ssrc = int.from_bytes(packet[8:12], "big")
            if ssrc in self.ssrcs:
                found += [(self.ssrcs.index(ssrc), d) for d in playout_delays(packet, self.ext_id)]
        return found

    async def settled(
        self, start: int, wanted: list[tuple[int, int]]
    ) -> list[set[tuple[int, int]]]:
        """Once each camera's packets after packet ``start`` carry its ``wanted`` delay (a
        packet sent before the change may still have been on its way), and 60 more packets
        have come: the delays each camera's packets carried from its first ``wanted`` on."""

        def arrived() -> int | None:
            delays = self.delays(start)
            firsts = [
                next((k for k, (c, d) in enumerate(delays) if c == camera and d == value), None)
                for camera, value in enumerate(wanted)
            ]
            return None if None in firsts else len(self.packets)

        seen_at: int = await eventually(arrived, timeout=20)
        await eventually(lambda: len(self.packets) >= seen_at + 60, timeout=20)
        delays = self.delays(start)
        seen: list[set[tuple[int, int]]] = []
        for camera, value in enumerate(wanted):
            first = next(k for k, (c, d) in enumerate(delays) if c == camera and d == value)
            seen.append({d for c, d in delays[first:] if c == camera})
        return seen


@contextlib.asynccontextmanager
async def link(clock: ManualClock | None = None) -> AsyncIterator[Link]:
    loop = asyncio.get_running_loop()
    mailbox = LatestFrame(loop)
    capture = CaptureThread(SyntheticSource(640, 360, 30.0), mailbox)
    processor = FrameProcessor(ProcessingSettings(640, 360))
    shared = SharedFrames(mailbox, processor, name="test")
    bedside = MediaPeer([], video=[shared.track(), shared.track()])
    viewer = MediaPeer([], receive_video=True)
    media_of: Callable[[str], MediaPeer | None] = lambda peer_id: (  # noqa: E731
        bedside if peer_id == DOCTOR.peer_id else None
    )
    playout = GatewayPlayout(CAMERAS, media_of, **({"clock": clock} if clock else {}))
    tasks: list[asyncio.Task[None]] = []
    capture.start()
    try:
        tasks.append(spawn(shared.run(), "shared-frames"))
        offer = await bedside.create_offer()
        bind_senders(bedside.pc)
        answer = await viewer.accept_offer(offer)
        packets = capture_rtp(viewer)
        await bedside.accept_answer(answer)
        senders: list[Any] = [t.sender for t in bedside.pc.getTransceivers() if t.kind == "video"]
        found = Link(
            bedside, viewer, playout, packets, extension_id(offer), [s._ssrc for s in senders]
        )

        async def gateway_reads() -> None:  # as the peer set passes a viewer's messages on
            while True:
                event = await bedside.events.get()
                if isinstance(event.message, PlayoutDelayRequest):
                    found.answers.append(playout.request(DOCTOR, event.message))

        async def viewer_reads() -> None:
            while True:
                event = await viewer.events.get()
                if event.kind is PeerEventKind.MESSAGE and isinstance(event.message, VideoState):
                    found.states.append(event.message)

        await eventually(lambda: bedside.channel.readyState == "open", timeout=20)
        bedside.start()
        viewer.start()
        tasks += [spawn(gateway_reads(), "gateway-reads"), spawn(viewer_reads(), "viewer-reads")]
        yield found
    finally:
        await cancel_and_wait(tasks)
        await bedside.close()
        await viewer.close()
        await capture.stop()
        processor.close()


async def test_the_delay_asked_is_on_the_wire_and_told_with_the_layer_sent() -> None:
    async with link() as wire:
        first = await wire.told(lambda s: s.layer is not None)
        assert first.playout_delay_ms == 0 and first.layer == "360p" and first.height == 360
        assert len(wire.packets) > 0 and {d for _, d in wire.delays(0)} == {(0, 0)}

        # Every camera: 195 ms rounded up to the extension's 10 ms.
        wire.ask(195, "loss")
        assert await wire.answered(1) is None
        await wire.told(lambda s: s.playout_delay_ms == 200)
        start = len(wire.packets)
        assert await wire.settled(start, [(0, 200), (0, 200)]) == [{(0, 200)}, {(0, 200)}]

        # One camera cleared: the other keeps its buffer, and the largest is what is told.
        start = len(wire.packets)
        wire.ask(0, "clear", camera="ultrasound")
        assert await wire.answered(2) is None
        assert await wire.settled(start, [(0, 200), (0, 0)]) == [{(0, 200)}, {(0, 0)}]
        assert wire.states[-1].playout_delay_ms == 200

        # The path worsens: the room camera's adapter steps under 360 lines, and once the
        # small layer's key frame is sent the viewer is told so, with the delay still in force.
        sender: Any = wire.bedside.pc.getTransceivers()[0].sender
        async with asyncio.timeout(20):
            while not any(s.layer == "180p" for s in wire.states):
                lost = RtcpReceiverInfo(sender._ssrc, 200, 100, 0, 0, 0, 0)
                await sender._handle_rtcp_packet(RtcpRrPacket(ssrc=1, reports=[lost]))
                await asyncio.sleep(0.3)
        switched = next(s for s in wire.states if s.layer == "180p")
        assert switched.mode == "reduced" and switched.playout_delay_ms == 200
        assert wire.viewer.bad_events == 0 and wire.bedside.bad_events == 0


async def test_changes_are_rate_limited_and_bad_requests_refused_with_a_reason(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO)
    clock = ManualClock()
    async with link(clock) as wire:
        await wire.told(lambda s: s.playout_delay_ms == 0)
        asked = 0
        changes: list[tuple[int, Reason]] = [
            (100, "jitter"),
            (200, "loss"),
            (200, "loss"),
            (0, "clear"),
        ]
        for max_ms, reason in changes:
            wire.ask(max_ms, reason)
            asked += 1
            assert await wire.answered(asked) is None  # the repeated 200 changes nothing
        assert BURST == 3
        # The burst is spent: further changes are refused, the delay in force stays.
        for max_ms in (300, 400):
            wire.ask(max_ms, "loss")
            asked += 1
            assert await wire.answered(asked) == TOO_OFTEN
        assert wire.bedside.playout_delay_ms == 0
        assert await wire.settled(len(wire.packets), [(0, 0), (0, 0)]) == [{(0, 0)}, {(0, 0)}]
        too_often = [r for r in caplog.records if TOO_OFTEN in r.getMessage()]
        assert len(too_often) == 1  # once per spell

        clock.advance(15.0)  # one more change a quarter of a minute later
        wire.ask(300, "loss")
        asked += 1
        assert await wire.answered(asked) is None
        await wire.told(lambda s: s.playout_delay_ms == 300)

        # What the bedside refuses: a camera it does not have, a clear with a maximum.
        clock.advance(60.0)
        wire.ask(100, "loss", camera="xray")
        wire.ask(100, "loss", camera="xray")
        wire.ask(100, "clear")
        asked += 3
        assert await wire.answered(asked - 2) == "no camera named 'xray'"
        assert await wire.answered(asked - 1) == "no camera named 'xray'"
        assert await wire.answered(asked) == CLEAR_WITH_MAX
        no_camera = [r for r in caplog.records if "no camera named" in r.getMessage()]
        assert len(no_camera) == 1  # each reason once per spell
        # What the contract refuses never reaches the gateway: refused on the channel, said why.
        for text in (
            '{"type":"playout-delay","max_ms":1001,"reason":"loss"}',
            '{"type":"playout-delay","max_ms":100,"reason":"because"}',
        ):
            assert wire.viewer.send_event(text)
        await eventually(lambda: wire.bedside.bad_events == 2, timeout=10)
        refused = [r.getMessage() for r in caplog.records if "refused a message" in r.getMessage()]
        assert any("max_ms" in line for line in refused), refused
        assert any("reason" in line for line in refused), refused
        assert wire.bedside.playout_delay_ms == 300 and len(wire.answers) == asked
        assert wire.playout.applied == 4 and wire.playout.refused == 5
