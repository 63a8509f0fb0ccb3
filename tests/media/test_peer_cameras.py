"""Two cameras on one MediaPeer: a transceiver each, told apart by media id on the receiving
side, each adapted to the path (the diagnostic one with its own, higher ladder)."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest
from aiortc.rtp import RtcpReceiverInfo, RtcpRrPacket

from media.rtc.adapt import DIAGNOSTIC_LADDER, LADDER
from media.rtc.bandwidth import encoder_target
from media.rtc.peer import MediaPeer
from media.rtc.tracks import PipelineVideoTrack
from media.video.capture import CaptureThread, LatestFrame, SyntheticSource, UltrasoundSource
from media.video.processing import FrameProcessor, ProcessingSettings
from media.video.stamp import read_stamp
from tests.helpers import eventually

pytestmark = pytest.mark.slow


async def test_two_cameras_arrive_as_two_tracks_named_by_their_mids() -> None:
    loop = asyncio.get_running_loop()
    room_box, us_box = LatestFrame(loop), LatestFrame(loop)
    captures = [
        CaptureThread(SyntheticSource(320, 240, 30.0), room_box, name="capture-room"),
        CaptureThread(UltrasoundSource(320, 240, 30.0), us_box, name="capture-ultrasound"),
    ]
    settings = ProcessingSettings(320, 240, overlay="Wonju")
    processors = [FrameProcessor(settings), FrameProcessor(settings.for_diagnostic())]
    tracks = [
        PipelineVideoTrack(room_box, processors[0]),
        PipelineVideoTrack(us_box, processors[1]),
    ]
    sender = MediaPeer([], video=tracks)
    receiver = MediaPeer([], receive_video=True)
    for capture in captures:
        capture.start()
    try:
        await sender.accept_answer(await receiver.accept_offer(await sender.create_offer()))
        mids = sender.video_mids()
        assert len(mids) == 2 and None not in mids and mids[0] != mids[1]
        assert sorted(receiver.video_frames_by_mid) == sorted(m for m in mids if m)
        await eventually(lambda: sender.channel.readyState == "open", timeout=20)
        room_mid, us_mid = mids
        assert room_mid is not None and us_mid is not None
        room = await _stamped(receiver, room_mid)
        ultrasound = await _stamped(receiver, us_mid)
        # The ultrasound is grey; the room pattern is coloured (blue and green ramps).
        assert _spread(ultrasound) < 12 < _spread(room)
        ladders = [adapter.ladder for adapter, _ in sender.video_adapters]
        assert ladders == [LADDER, DIAGNOSTIC_LADDER]
        assert sender.video_adapter is sender.video_adapters[0][0]

        # Each track is adapted on its own: both encoders follow their adapter's target,
        # and a path that loses the ultrasound's packets steps the ultrasound down.
        sender.start()
        receiver.start()
        (room_adapter, _), (us_adapter, us_rtp) = adapters = sender.video_adapters
        await eventually(lambda: all(a.send_bps is not None for a, _ in adapters), timeout=10)
        await eventually(
            lambda: all(encoder_target(r) == a.target_bps for a, r in adapters), timeout=10
        )
        async with asyncio.timeout(30):
            while us_adapter.rung.name != "120p5":  # 94 % of its packets lost, each report
                lost = RtcpReceiverInfo(us_rtp._ssrc, 240, 100, 0, 0, 0, 0)
                await us_rtp._handle_rtcp_packet(RtcpRrPacket(ssrc=1, reports=[lost]))
                await asyncio.sleep(0.5)
        assert encoder_target(us_rtp) == us_adapter.target_bps <= 64_000
        assert room_adapter.rung.name != "120p5"
    finally:
        await sender.close()
        await receiver.close()
        for capture in captures:
            await capture.stop()
        for processor in processors:
            processor.close()


def _spread(image: np.ndarray) -> float:
    """How far apart a frame's colour channels are, on average (0: grey)."""
    return float(np.ptp(image[120:, 100:].astype(int), axis=2).mean())


async def _stamped(receiver: MediaPeer, mid: str) -> np.ndarray:
    """A decoded frame of the track ``mid`` carrying the bedside stamp."""
    async with asyncio.timeout(20):
        while True:
            frame = await receiver.video_frames_by_mid[mid].get()
            image = np.asarray(frame.to_ndarray(format="bgr24"), dtype=np.uint8)
            if read_stamp(image) is not None:
                return image
