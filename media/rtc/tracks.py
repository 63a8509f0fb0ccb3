"""The video track fed by the frame pipeline."""

from __future__ import annotations

import fractions

import av
from aiortc import MediaStreamTrack
from aiortc.mediastreams import MediaStreamError

from media.video.capture import LatestFrame
from media.video.processing import FrameProcessor

CLOCK_RATE = 90_000
TIME_BASE = fractions.Fraction(1, CLOCK_RATE)


class PipelineVideoTrack(MediaStreamTrack):
    """Each ``recv`` hands the encoder the newest captured frame, processed off the event
    loop. Timestamps follow capture times, so frames dropped for being stale leave no drift."""

    kind = "video"

    def __init__(self, mailbox: LatestFrame, processor: FrameProcessor) -> None:
        super().__init__()
        self.mailbox = mailbox
        self.processor = processor
        self._start: float | None = None
        self.sent = 0

    async def recv(self) -> av.VideoFrame:
        captured = await self.mailbox.get()
        if captured is None:
            self.stop()
            raise MediaStreamError("the video source ended")
        image = await self.processor.process(captured)
        if self._start is None:
            self._start = captured.capture_time
        frame = av.VideoFrame.from_ndarray(image, format="bgr24")
        frame.pts = round((captured.capture_time - self._start) * CLOCK_RATE)
        frame.time_base = TIME_BASE
        self.sent += 1
        return frame
