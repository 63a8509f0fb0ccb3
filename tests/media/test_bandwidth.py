"""The video adaptation between two real aiortc peers (media/rtc/bandwidth.py): the
receiver's reports and REMB reach the adapter through aiortc's own RTCP handling, the round
trip and bytes sent through its statistics, the encoder runs at the adapter's target, and
reports of heavy loss send smaller frames and tell the viewer. If an aiortc release moves
the internals this relies on, this fails."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import pytest
from aiortc import RTCRtpSender
from aiortc.rtp import RtcpReceiverInfo, RtcpRrPacket

from media.rtc.adapt import VideoMode
from media.rtc.bandwidth import encoder_target
from media.rtc.events import VideoState
from media.rtc.peer import MediaPeer, PeerEventKind
from media.rtc.tracks import PipelineVideoTrack
from media.video.capture import CaptureThread, LatestFrame, SyntheticSource
from media.video.processing import FrameProcessor, ProcessingSettings
from tests.helpers import eventually

pytestmark = pytest.mark.slow


async def _video_states(peer: MediaPeer, until: VideoMode, timeout: float) -> list[VideoState]:
    seen: list[VideoState] = []
    async with asyncio.timeout(timeout):
        while not seen or seen[-1].mode != until:
            event = await peer.events.get()
            if event.kind is PeerEventKind.MESSAGE and isinstance(event.message, VideoState):
                seen.append(event.message)
    return seen


async def lossy_reports(sender: RTCRtpSender, until: Callable[[], bool]) -> None:
    """Receiver reports of a path losing nearly everything, through aiortc's handler, every
    half second until ``until()``."""
    ssrc = sender._ssrc
    async with asyncio.timeout(20):
        while not until():
            report = RtcpReceiverInfo(ssrc, 240, 100, 0, 0, 0, 0)  # 94 % lost
            await sender._handle_rtcp_packet(RtcpRrPacket(ssrc=1, reports=[report]))
            await asyncio.sleep(0.5)


async def test_the_path_estimate_sets_the_encoder_and_the_frame_size() -> None:
    mailbox = LatestFrame(asyncio.get_running_loop())
    capture = CaptureThread(SyntheticSource(640, 480, 30.0), mailbox)
    processor = FrameProcessor(ProcessingSettings(640, 480))
    track = PipelineVideoTrack(mailbox, processor)
    sender = MediaPeer([], video=track)
    receiver = MediaPeer([], receive_video=True)
    capture.start()
    try:
        await sender.accept_answer(await receiver.accept_offer(await sender.create_offer()))
        await eventually(lambda: sender.channel.readyState == "open", timeout=20)
        sender.start()
        receiver.start()
        adapter = sender.video_adapter
        assert adapter is not None
        assert track.adapter is adapter
        # 300 kbit/s to start: 360p15 until the path is known to take more.
        first, *_ = await _video_states(receiver, VideoMode.REDUCED, timeout=10)
        assert (first.height, first.fps) == (360, 15.0)
        # The receiver's own REMB and the sender's statistics reach the adapter.
        await eventually(lambda: adapter.remb_bps is not None, timeout=15)
        await eventually(lambda: adapter.send_bps is not None, timeout=5)
        await eventually(lambda: adapter._min_rtt is not None, timeout=10)
        (rtp_sender,) = [t.sender for t in sender.pc.getTransceivers() if t.kind == "video"]
        await eventually(lambda: encoder_target(rtp_sender) == adapter.target_bps, timeout=5)
        async with asyncio.timeout(5):
            frame = await receiver.video_frames.get()
        assert frame.height in (360, 480)

        # The path collapses: the receiver reports losing almost everything.
        await lossy_reports(rtp_sender, lambda: adapter.rung.name == "120p5")
        assert encoder_target(rtp_sender) == adapter.target_bps <= 64_000

        async def told_120p() -> VideoState:
            while True:
                (state, *_) = await _video_states(receiver, VideoMode.REDUCED, timeout=5)
                if state.height == 120:
                    return state

        state = await told_120p()
        assert state.fps == 5.0
        assert state.estimate_bps is not None
        assert state.estimate_bps < 80_000

        async def small_frame() -> None:
            while True:
                frame = await receiver.video_frames.get()
                if (frame.width, frame.height) == (160, 120):
                    return

        async with asyncio.timeout(5):
            await small_frame()
        assert track.thinned > 0  # 30 fps thinned to 5
    finally:
        await sender.close()
        await receiver.close()
        await capture.stop()
        processor.close()
