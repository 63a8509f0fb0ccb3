"""The video adaptation between two real aiortc peers (media/rtc/bandwidth.py): the
receiver's REMB and reports reach the adapter through aiortc's own RTCP handling, the
encoder runs at the adapter's target, and a collapse of the path's estimate sends smaller
frames and tells the viewer. If an aiortc release moves the internals this relies on, this
fails."""

from __future__ import annotations

import asyncio

import pytest
from aiortc.rtp import RTCP_PSFB_APP, RtcpPsfbPacket, pack_remb_fci

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
        (first,) = await _video_states(receiver, VideoMode.FULL, timeout=10)
        assert (first.height, first.fps) == (480, 30.0)
        # The receiver's own REMB and reports reach the adapter through aiortc.
        await eventually(lambda: adapter.remb_bps is not None, timeout=15)
        await eventually(lambda: adapter.send_bps is not None, timeout=5)
        (rtp_sender,) = [t.sender for t in sender.pc.getTransceivers() if t.kind == "video"]
        await eventually(lambda: encoder_target(rtp_sender) == adapter.target_bps, timeout=5)
        frame = await asyncio.wait_for(receiver.video_frames.get(), 5)
        assert (frame.width, frame.height) == (640, 480)

        # The path collapses: a REMB far under what is sent, through aiortc's handler.
        ssrc = rtp_sender._ssrc
        remb = RtcpPsfbPacket(
            fmt=RTCP_PSFB_APP, ssrc=1, media_ssrc=0, fci=pack_remb_fci(140_000, [ssrc])
        )
        await rtp_sender._handle_rtcp_packet(remb)
        assert adapter.rung.name == "240p10"
        assert encoder_target(rtp_sender) == adapter.target_bps <= 140_000
        states = await _video_states(receiver, VideoMode.REDUCED, timeout=5)
        assert (states[-1].height, states[-1].fps) == (240, 10.0)
        assert states[-1].estimate_bps is not None
        assert states[-1].estimate_bps < 140_000

        async def small_frame() -> None:
            while True:
                frame = await receiver.video_frames.get()
                if (frame.width, frame.height) == (320, 240):
                    return

        await asyncio.wait_for(small_frame(), 5)
        assert track.thinned > 0  # 30 fps thinned to 10
    finally:
        await sender.close()
        await receiver.close()
        await capture.stop()
        processor.close()
