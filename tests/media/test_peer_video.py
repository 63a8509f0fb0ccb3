"""MediaPeer with video: the frame pipeline on one side, decoded stamped frames on the other,
released by the marker-bit jitter buffer, with waveforms flowing at the same time."""

from __future__ import annotations

import asyncio
import time

import numpy as np
import pytest

from media.rtc.peer import MediaPeer, PeerEventKind
from media.rtc.tracks import PipelineVideoTrack
from media.rtc.wire import WirePacket
from media.video.capture import CaptureThread, LatestFrame, SyntheticSource
from media.video.processing import FrameProcessor, ProcessingSettings
from media.video.stamp import read_stamp
from tests.helpers import eventually

pytestmark = pytest.mark.slow


async def test_video_and_waveforms_between_two_peers() -> None:
    mailbox = LatestFrame(asyncio.get_running_loop())
    capture = CaptureThread(SyntheticSource(320, 240, 30.0), mailbox)
    processor = FrameProcessor(ProcessingSettings(320, 240, overlay="Koriyama"))
    sender = MediaPeer([], video=PipelineVideoTrack(mailbox, processor))
    receiver = MediaPeer([], receive_video=True)
    capture.start()
    try:
        await sender.accept_answer(await receiver.accept_offer(await sender.create_offer()))
        await eventually(lambda: sender.waveforms.readyState == "open", timeout=20)
        sender.start()
        receiver.start()
        stamps: list[int] = []
        async with asyncio.timeout(20):
            k = 0
            while len(stamps) < 15:
                sender.send_waveform(
                    WirePacket(131330, k, 500.0, time.time() - 0.02, np.zeros(10, np.float32))
                )
                k += 1
                frame = await receiver.video_frames.get()
                stamp = read_stamp(np.asarray(frame.to_ndarray(format="bgr24"), dtype=np.uint8))
                if stamp is not None:
                    stamps.append(stamp[0])
        assert stamps == sorted(stamps)  # frame ids only move forward
        (buffer,) = receiver.jitter_buffers
        assert buffer.released_on_marker >= 15  # frames left on their marker bit
        waves = []
        while not receiver.events.empty():
            event = receiver.events.get_nowait()
            if event.kind is PeerEventKind.WAVEFORM and event.packet is not None:
                waves.append(event.packet.sequence)
        assert waves == sorted(waves)
        assert len(waves) >= 10
    finally:
        await sender.close()
        await receiver.close()
        await capture.stop()
        processor.close()
