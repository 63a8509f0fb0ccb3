"""The video track fed by the frame pipeline."""

from __future__ import annotations

import asyncio
import fractions
import logging

import av
import cv2
import numpy as np
from aiortc import MediaStreamTrack
from aiortc.mediastreams import MediaStreamError
from numpy.typing import NDArray

from media.rtc.adapt import VideoAdapter
from media.video.capture import CapturedFrame, LatestFrame
from media.video.processing import FrameProcessor

log = logging.getLogger(__name__)

CLOCK_RATE = 90_000
TIME_BASE = fractions.Fraction(1, CLOCK_RATE)


class _CaptureClockTrack(MediaStreamTrack):
    """A video track whose timestamps follow capture times, so frames dropped for being
    stale leave no drift.

    With an :attr:`adapter` (set by the peer that sends it, :mod:`media.rtc.bandwidth`),
    frames are sent at the adapter's rung: scaled down to its height, thinned to its frame
    rate, none while it is paused. :attr:`diagnostic` (an imaging modality's video, see
    media.video.processing) asks the peer for a diagnostic camera's adapter."""

    kind = "video"
    diagnostic = False

    def __init__(self) -> None:
        super().__init__()
        self._start: float | None = None
        self._last_sent: float | None = None
        self.sent = 0
        #: Frames not sent because the rung's frame rate or a pause left them out.
        self.thinned = 0
        self.adapter: VideoAdapter | None = None

    def _wanted(self, captured: CapturedFrame) -> bool:
        """Whether the adapter's rung sends this frame (always, without an adapter)."""
        if self.adapter is None:
            return True
        rung = self.adapter.rung
        if rung.fps <= 0:
            self.thinned += 1
            return False
        # 10 % early is on time: a 30 fps camera thinned to 15 keeps every other frame.
        if (
            self._last_sent is not None
            and captured.capture_time - self._last_sent < 0.9 / rung.fps
            and captured.capture_time >= self._last_sent
        ):
            self.thinned += 1
            return False
        return True

    async def _frame(self, captured: CapturedFrame, image: NDArray[np.uint8]) -> av.VideoFrame:
        if self._start is None:
            self._start = captured.capture_time
        self._last_sent = captured.capture_time
        height, width = image.shape[:2]
        size = (width, height) if self.adapter is None else self.adapter.frame_size(width, height)
        # The copy into a new frame (and a scaling) runs off the event loop: the copy alone
        # measured 0.5 ms at 640x480 and 1.9 ms at 1280x720, per frame and per viewer,
        # which would delay waveform packets.
        frame = await asyncio.to_thread(_to_frame, image, size)
        frame.pts = round((captured.capture_time - self._start) * CLOCK_RATE)
        frame.time_base = TIME_BASE
        self.sent += 1
        return frame


class PipelineVideoTrack(_CaptureClockTrack):
    """Each ``recv`` hands the encoder the newest captured frame, processed off the event
    loop. For one viewer; :class:`ProcessedFrames` serves several."""

    def __init__(self, mailbox: LatestFrame, processor: FrameProcessor) -> None:
        super().__init__()
        self.mailbox = mailbox
        self.processor = processor
        self.diagnostic = processor.settings.diagnostic

    async def recv(self) -> av.VideoFrame:
        while True:
            captured = await self.mailbox.get()
            if captured is None:
                self.stop()
                raise MediaStreamError(self.mailbox.ended_because())
            if self._wanted(captured):
                return await self._frame(captured, await self.processor.process(captured))


class ProcessedFrames:
    """One frame pipeline for any number of viewers.

    Each peer connection needs its own track, and each track must hand its encoder its own
    ``av.VideoFrame``: aiortc encodes in worker threads, and two encoders working on one
    shared frame (what ``MediaRelay`` hands out) crashed the process (segmentation fault, two
    viewers). So frames are captured and processed once here, and every :meth:`track` wraps
    the newest processed image in a frame of its own.

    :meth:`run` is the pipeline; run it in a task you own. It processes frames only while at
    least one track is live. It ends (without raising) when the source ends or fails; every
    track then ends with a ``MediaStreamError`` that says which (:attr:`failure`). A frame
    that cannot be processed is skipped and counted (:attr:`skipped`); the first of a run of
    such frames is logged with its traceback, and the return to normal too.
    """

    def __init__(self, mailbox: LatestFrame, processor: FrameProcessor) -> None:
        self.mailbox = mailbox
        self.processor = processor
        self._latest: tuple[int, CapturedFrame, NDArray[np.uint8]] | None = None
        self._ended = False
        self._changed = asyncio.Condition()
        self._viewers = 0
        self.processed = 0
        self.skipped = 0

    @property
    def viewers(self) -> int:
        """The tracks currently live."""
        return self._viewers

    @property
    def failure(self) -> BaseException | None:
        """What the source failed with, once it has (None while it runs, or if it ended)."""
        return self.mailbox.failure

    def track(self) -> MediaStreamTrack:
        return _ViewerTrack(self)

    async def run(self) -> None:
        sequence = 0
        failing = False
        while True:
            async with self._changed:
                await self._changed.wait_for(lambda: self._viewers > 0)
            captured = await self.mailbox.get()
            if captured is None:
                async with self._changed:
                    self._ended = True
                    self._changed.notify_all()
                return
            try:
                image = await self.processor.process(captured)
            except Exception:  # a frame the processing cannot take: skip it, go on
                if not failing:
                    log.exception(
                        "frame %d cannot be processed; skipping such frames", captured.frame_id
                    )
                failing = True
                self.skipped += 1
                continue
            if failing:
                log.info("frames are processed again (%d skipped)", self.skipped)
                failing = False
            sequence += 1
            self.processed += 1
            async with self._changed:
                self._latest = (sequence, captured, image)
                self._changed.notify_all()

    async def next_after(
        self, sequence: int
    ) -> tuple[int, CapturedFrame, NDArray[np.uint8]] | None:
        """The newest processed frame after ``sequence`` (its sequence number, the frame as
        captured and the processed image), waited for; None once the source has ended."""
        async with self._changed:
            await self._changed.wait_for(
                lambda: self._ended or (self._latest is not None and self._latest[0] > sequence)
            )
            return None if self._ended else self._latest

    def detach_now(self) -> None:
        """One consumer fewer, from code that cannot await (a track's ``stop``): no waiter
        needs waking for fewer."""
        self._viewers -= 1

    async def attach(self, delta: int) -> None:
        """``delta`` more (or fewer) consumers of the processed frames: frames are processed
        only while there is at least one."""
        async with self._changed:
            self._viewers += delta
            self._changed.notify_all()


class _ViewerTrack(_CaptureClockTrack):
    def __init__(self, source: ProcessedFrames) -> None:
        super().__init__()
        self._source = source
        self.diagnostic = source.processor.settings.diagnostic
        self._seen = 0
        self._attached = False

    async def recv(self) -> av.VideoFrame:
        if not self._attached:
            self._attached = True
            await self._source.attach(+1)
        while True:
            latest = await self._source.next_after(self._seen)
            if latest is None:
                self.stop()
                raise MediaStreamError(self._source.mailbox.ended_because())
            self._seen, captured, image = latest
            if self._wanted(captured):
                return await self._frame(captured, image)

    def stop(self) -> None:
        if self._attached:
            self._attached = False
            self._source.detach_now()
        super().stop()


def _to_frame(image: NDArray[np.uint8], size: tuple[int, int]) -> av.VideoFrame:
    """A new frame of ``image`` at ``size`` (width, height); area-averaged when smaller."""
    if size != (image.shape[1], image.shape[0]):
        scaled: NDArray[np.uint8] = np.asarray(
            cv2.resize(image, size, interpolation=cv2.INTER_AREA), dtype=np.uint8
        )
        return av.VideoFrame.from_ndarray(scaled, format="bgr24")
    return av.VideoFrame.from_ndarray(image, format="bgr24")
