"""A doctor's freeze-and-keep over a real link: an aiortc viewer sends ``keep-frame`` on the
events channel, the gateway keeps the frame of its (synthetic) ultrasound it names, on the
real imaging path to the real server, and answers ``kept-frame`` on that connection only."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from devices.dicom.deidentify import BURNED_IN_REASON
from devices.dicom.scp import ScpSettings
from devices.dicom.stow import StowAnswer
from media.rtc.events import FrameKept, HoldFrameRequest, KeepFrameRequest, encode_event
from media.rtc.peer import MediaPeer, PeerEventKind
from media.video.capture import CaptureThread, LatestFrame, UltrasoundSource
from media.video.recent import KEEP_S, RecentFrames
from runtime.clock import ManualClock
from runtime.tasks import cancel_and_wait, spawn
from signaling.schema import Peer, PrincipalKind, Role
from telemed.gateway.imaging import NO_CONSULTATION, GatewayImaging, ImagingConfig
from telemed.gateway.keep import (
    BURST,
    HOLD_BURST,
    NOT_CLINICIAN,
    TOO_OFTEN,
    GatewayKeep,
    KeepSource,
)
from tests.devices.dicom.dicom_helpers import STORESCU
from tests.helpers import eventually
from tests.telemed.imaging_gateway import imaging_gateway

DOCTOR = Peer(
    peer_id="p-dk", kind=PrincipalKind.USER, principal_id=7, name="dk", role=Role.DOCTOR,
    site="koriyama",
)  # fmt: skip
ENGINEER_PEER = DOCTOR.model_copy(update={"peer_id": "p-ew", "name": "ew", "role": Role.ENGINEER})


@dataclass
class Link:
    """The gateway's side of a viewer's connection and the viewer's (real aiortc peers),
    the gateway's keeping running, and what the viewer received."""

    keep: GatewayKeep
    viewer: MediaPeer
    recent: RecentFrames
    answers: dict[str, FrameKept]

    def ask(self, request: str, frame_id: int | None = None) -> None:
        message = KeepFrameRequest(request=request, camera="ultrasound", frame_id=frame_id)
        assert self.viewer.send_event(encode_event(message))

    def hold(self, frame_id: int) -> None:
        message = HoldFrameRequest(camera="ultrasound", frame_id=frame_id)
        assert self.viewer.send_event(encode_event(message))

    async def answer(self, request: str) -> FrameKept:
        answer: FrameKept = await eventually(lambda: self.answers.get(request), timeout=30)
        return answer


@contextlib.asynccontextmanager
async def link(imaging: GatewayImaging, clock: ManualClock | None = None) -> AsyncIterator[Link]:
    loop = asyncio.get_running_loop()
    recent = RecentFrames()
    capture = CaptureThread(
        UltrasoundSource(160, 120, 30.0), LatestFrame(loop), name="capture-us", recent=recent
    )
    bedside, viewer = MediaPeer([]), MediaPeer([])
    media_of: Callable[[str], MediaPeer | None] = lambda peer_id: (  # noqa: E731
        bedside if peer_id in (DOCTOR.peer_id, ENGINEER_PEER.peer_id) else None
    )
    sources = {"ultrasound": KeepSource(recent, "HDMI capture")}
    keep = GatewayKeep(imaging, sources, media_of, **({"clock": clock} if clock else {}))
    answers: dict[str, FrameKept] = {}

    async def gateway_reads() -> None:  # as the peer set passes a viewer's messages on
        while True:
            event = await bedside.events.get()
            if isinstance(event.message, KeepFrameRequest):
                asker = ENGINEER_PEER if event.message.request.startswith("engineer") else DOCTOR
                keep.request(asker, event.message)
            elif isinstance(event.message, HoldFrameRequest):
                keep.hold(DOCTOR, event.message)

    async def viewer_reads() -> None:
        while True:
            event = await viewer.events.get()
            if event.kind is PeerEventKind.MESSAGE and isinstance(event.message, FrameKept):
                answers[event.message.request] = event.message

    capture.start()
    tasks = []
    try:
        await bedside.accept_answer(await viewer.accept_offer(await bedside.create_offer()))
        await eventually(lambda: bedside.channel.readyState == "open", timeout=20)
        bedside.start()
        viewer.start()
        tasks = [
            spawn(keep.run(), "keep"),
            spawn(gateway_reads(), "gw"),
            spawn(viewer_reads(), "v"),
        ]
        await eventually(lambda: len(recent) >= 3)
        yield Link(keep, viewer, recent, answers)
    finally:
        await cancel_and_wait(tasks)
        await bedside.close()
        await viewer.close()
        await capture.stop()


@pytest.mark.slow  # a real server with its accounts, real aiortc peers
async def test_a_frozen_frame_is_kept_in_the_consultation(tmp_path: Path) -> None:
    async with imaging_gateway(tmp_path, seoul=True) as (room, imaging), link(imaging) as live:
        # Without consent, a modality's screen (its header names the patient) is refused.
        live.ask("k-0")
        refused = await live.answer("k-0")
        assert (refused.outcome, refused.reason) == ("refused", BURNED_IN_REASON)
        assert imaging.spool.pending == 0

        assert (await room.consent(True)).status_code == 200
        frozen, _ = live.recent.find(None)
        assert frozen is not None
        live.ask("k-1", frame_id=frozen.frame_id)
        kept = await live.answer("k-1")
        assert (kept.outcome, kept.camera, kept.deidentified) == ("kept", "ultrasound", False)
        assert (kept.frame_id, kept.captured) == (frozen.frame_id, frozen.capture_time)
        assert kept.sop_instance_uid
        await eventually(lambda: imaging.forwarder.sent == 1, timeout=30)
        [row] = await room.indexed()
        assert (row.consultation_id, row.sop_instance_uid) == (room.cid, kept.sop_instance_uid)
        assert live.keep.kept == 1 and live.keep.refused == 1

        # A doctor who froze the picture and took their time: the held frame is kept, not
        # the newest, after the seconds of recent frames have passed.
        frozen, _ = live.recent.find(None)
        assert frozen is not None
        live.hold(frozen.frame_id)
        await eventually(
            lambda: (
                (newest := live.recent.find(None)[0]) is not None
                and newest.capture_time > frozen.capture_time + 2 * KEEP_S
            ),
            timeout=30,
            what="the frozen frame to leave the recent seconds",
        )
        live.ask("k-2", frame_id=frozen.frame_id)
        later = await live.answer("k-2")
        assert (later.outcome, later.frame_id) == ("kept", frozen.frame_id)


@pytest.mark.slow  # real aiortc peers
async def test_without_a_consultation_or_as_an_engineer_or_too_often_nothing_is_kept(
    tmp_path: Path,
) -> None:
    async def consent(_: str) -> bool:
        raise AssertionError("no consultation to ask about")

    async def never(_: str, __: str, ___: bytes) -> StowAnswer:
        raise AssertionError("nothing to send")

    settings = ScpSettings(port=0, host="127.0.0.1", allowed_calling=(STORESCU,))
    imaging = GatewayImaging(ImagingConfig(settings), tmp_path, lambda: None, consent, never)
    clock = ManualClock()  # no token comes back while the test runs
    async with link(imaging, clock) as live:
        live.ask("engineer-1")
        for k in range(BURST + 1):
            live.ask(f"k-{k}")
        assert (await live.answer("engineer-1")).reason == NOT_CLINICIAN
        answers = [await live.answer(f"k-{k}") for k in range(BURST + 1)]
        assert {a.outcome for a in answers} == {"refused"}
        assert [a.reason for a in answers] == [NO_CONSULTATION] * BURST + [TOO_OFTEN]
        assert imaging.spool.pending == 0

        # Holds too: a client freezing without end cannot push a colleague's out.
        await eventually(lambda: len(live.recent) >= HOLD_BURST + 3)
        newest, _ = live.recent.find(None)
        assert newest is not None
        wanted = [newest.frame_id - k for k in range(HOLD_BURST + 3)]
        for frame_id in wanted:
            live.hold(frame_id)
        live.ask("after-holds")  # answered after the holds: the channel keeps order
        await live.answer("after-holds")
        assert live.recent.held_ids == [f & 0xFFFFFFFF for f in wanted[:HOLD_BURST]]
        assert live.keep.holds_refused == 3
