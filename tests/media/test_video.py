"""The frame pipeline: the newest-frame mailbox, capture threads, processing, and the latency
stamp through real codecs."""

from __future__ import annotations

import asyncio
import fractions
import logging
import time
from pathlib import Path

import av
import cv2
import numpy as np
import pytest
from aiortc.codecs.h264 import H264Decoder, H264Encoder, h264_depayload
from aiortc.codecs.vpx import Vp8Decoder, Vp8Encoder, vp8_depayload
from aiortc.jitterbuffer import JitterFrame
from aiortc.mediastreams import MediaStreamError
from hypothesis import given, settings
from hypothesis import strategies as st
from numpy.typing import NDArray

from media.rtc.tracks import PipelineVideoTrack, ProcessedFrames
from media.video.capture import (
    CapturedFrame,
    CaptureThread,
    LatestFrame,
    OpenCvSource,
    SyntheticSource,
)
from media.video.processing import FrameProcessor, ProcessingSettings, process_frame
from media.video.stamp import draw_stamp, read_stamp
from runtime.tasks import cancel_and_wait, spawn
from tests.helpers import eventually


def _through_codec(image: np.ndarray, codec: str) -> np.ndarray:
    frame = av.VideoFrame.from_ndarray(image, format="bgr24")
    frame.pts, frame.time_base = 0, fractions.Fraction(1, 90000)
    decoder: Vp8Decoder | H264Decoder
    if codec == "vp8":
        payloads, ts = Vp8Encoder().encode(frame)
        data, decoder = b"".join(vp8_depayload(p) for p in payloads), Vp8Decoder()
    else:
        payloads, ts = H264Encoder().encode(frame)
        data, decoder = b"".join(h264_depayload(p) for p in payloads), H264Decoder()
    (decoded,) = decoder.decode(JitterFrame(data=data, timestamp=ts))
    assert isinstance(decoded, av.VideoFrame)
    return np.asarray(decoded.to_ndarray(format="bgr24"))


@pytest.mark.parametrize("codec", ["vp8", "h264"])
@settings(max_examples=8, deadline=None)
@given(st.integers(0, 2**32 - 1), st.integers(0, 2**32 - 1), st.integers(0, 255))
def test_stamp_survives_real_codecs(codec: str, frame_id: int, ms: int, background: int) -> None:
    rng = np.random.default_rng(frame_id % 1000)
    image = np.clip(rng.normal(background, 40, (480, 640, 3)), 0, 255).astype(np.uint8)
    draw_stamp(image, frame_id, ms)
    assert read_stamp(_through_codec(image, codec)) == (frame_id, ms)


def test_a_damaged_or_missing_stamp_reads_as_none() -> None:
    for level in (0, 128, 255):
        assert read_stamp(np.full((240, 320, 3), level, np.uint8)) is None
    image = np.full((240, 320, 3), 128, np.uint8)
    draw_stamp(image, 7, 8)
    image[10:18, 10:18] = 255 - image[10:18, 10:18]  # flip one whole block (row 1, col 1)
    assert read_stamp(image) is None


async def test_slow_consumer_gets_the_newest_frame_and_drops_are_counted() -> None:
    mailbox = LatestFrame(asyncio.get_running_loop())
    image = np.zeros((4, 4, 3), np.uint8)
    for k in range(1, 6):
        mailbox.put(CapturedFrame(k, time.time(), image))
    newest = await mailbox.get()
    assert newest is not None
    assert newest.frame_id == 5
    assert mailbox.dropped == 4
    mailbox.put(None)
    assert await mailbox.get() is None


async def test_the_end_of_a_source_never_replaces_its_last_frame() -> None:
    mailbox = LatestFrame(asyncio.get_running_loop())
    image = np.zeros((4, 4, 3), np.uint8)
    mailbox.put(CapturedFrame(1, time.time(), image))
    mailbox.put(CapturedFrame(2, time.time(), image))
    mailbox.put(None)  # the source ended before the loop took frame 2
    last = await mailbox.get()
    assert last is not None and last.frame_id == 2
    assert mailbox.dropped == 1
    assert await mailbox.get() is None
    assert await mailbox.get() is None  # and stays ended


async def test_capture_thread_with_a_synthetic_source() -> None:
    mailbox = LatestFrame(asyncio.get_running_loop())
    capture = CaptureThread(SyntheticSource(320, 240, fps=100.0), mailbox)
    capture.start()
    ids = []
    try:
        for _ in range(5):
            async with asyncio.timeout(2):
                frame = await mailbox.get()
            assert frame is not None
            assert frame.image.shape == (240, 320, 3)
            ids.append(frame.frame_id)
    finally:
        await capture.stop()
    assert ids == sorted(ids)
    assert len(set(ids)) == 5


async def test_capture_from_a_video_file(tmp_path: Path) -> None:
    path = tmp_path / "grabber.avi"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter.fourcc(*"MJPG"), 25, (160, 120))
    for k in range(12):
        writer.write(np.full((120, 160, 3), k * 20, np.uint8))
    writer.release()
    mailbox = LatestFrame(asyncio.get_running_loop())
    capture = CaptureThread(OpenCvSource(str(path)), mailbox)
    capture.start()
    seen = 0
    async with asyncio.timeout(5):
        while (frame := await mailbox.get()) is not None:
            seen += 1
            assert frame.image.shape == (120, 160, 3)
    await capture.stop()
    assert capture.frames == 12
    assert seen >= 1
    with pytest.raises(OSError, match="cannot open"):
        OpenCvSource(str(tmp_path / "absent.avi"))


@pytest.mark.parametrize(
    ("fourcc", "method"),
    [("MJPG", "ISO_10918_1"), ("XVID", "ISO_14496_2"), ("FFV1", None), ("IYUV", None)],
)
def test_a_source_says_when_its_frames_come_lossy(
    tmp_path: Path, fourcc: str, method: str | None
) -> None:
    """An MJPEG capture card's frames are JPEG-compressed before we see them: a frame kept
    from it must say so (Lossy Image Compression); a raw or lossless format says nothing."""
    path = tmp_path / f"grabber-{fourcc}.avi"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter.fourcc(*fourcc), 25, (64, 48))
    assert writer.isOpened(), fourcc
    for k in range(3):
        writer.write(np.full((48, 64, 3), k * 50, np.uint8))
    writer.release()
    source = OpenCvSource(str(path))
    try:
        assert source.lossy_method == method
    finally:
        source.close()


async def test_processing_scales_enhances_overlays_and_stamps_off_the_loop() -> None:
    low_contrast = np.clip(np.random.default_rng(2).normal(120, 6, (720, 1280, 3)), 0, 255)
    frame = CapturedFrame(42, 1_795_000_000.25, low_contrast.astype(np.uint8))
    plain = process_frame(frame, ProcessingSettings(640, 480, stamp=False))
    assert plain.shape == (480, 640, 3)
    processor = FrameProcessor(
        ProcessingSettings(640, 480, clahe=True, overlay="Wonju", timezone="Asia/Seoul")
    )
    try:
        out = await processor.process(frame)
    finally:
        processor.close()
    assert out[100:, :].std() > 2 * plain[100:, :].std()  # CLAHE spread the histogram
    assert read_stamp(out) == (42, 1_795_000_000_250 & 0xFFFFFFFF)
    caption = out[-30:, :300]
    assert (caption > 240).any()  # white overlay text in the bottom-left corner


async def test_one_pipeline_serves_several_viewers_and_idles_without_them() -> None:
    mailbox = LatestFrame(asyncio.get_running_loop())
    capture = CaptureThread(SyntheticSource(160, 120, 30.0), mailbox)
    processor = FrameProcessor(ProcessingSettings(160, 120))
    frames = ProcessedFrames(mailbox, processor)
    capture.start()
    pipeline = spawn(frames.run(), "video-pipeline")
    try:
        await eventually(lambda: capture.frames >= 5)
        assert frames.processed == 0  # nobody watches: frames come, none is processed
        first, second = frames.track(), frames.track()
        a = [await first.recv() for _ in range(5)]
        b = [await second.recv() for _ in range(5)]
        assert all(isinstance(f, av.VideoFrame) for f in a + b)
        assert not any(x is y for x in a for y in b)  # each encoder gets frames of its own
        images = [f.to_ndarray(format="bgr24") for f in a if isinstance(f, av.VideoFrame)]
        stamps = [read_stamp(np.asarray(image, dtype=np.uint8)) for image in images]
        ids = [stamp[0] for stamp in stamps if stamp is not None]
        assert ids == sorted(ids) and len(set(ids)) == 5  # newer frames each time
        assert frames.processed >= 5
        first.stop()
        second.stop()
        idle, captured = frames.processed, capture.frames
        await eventually(lambda: capture.frames >= captured + 10)
        assert frames.processed <= idle + 1  # the viewers left: processing stops
    finally:
        await cancel_and_wait([pipeline])
        await capture.stop()
        processor.close()


class _FailingSource:
    """A grabber that delivers ``good`` frames and then fails, as an unplugged one does."""

    def __init__(self, good: int) -> None:
        self.good = good
        self.reads = 0
        self.closed = False
        self.error = OSError(5, "grabber unplugged")

    def read(self) -> NDArray[np.uint8] | None:
        self.reads += 1
        if self.reads > self.good:
            raise self.error
        time.sleep(0.01)  # a camera's pace
        return np.full((120, 160, 3), self.reads * 20, np.uint8)

    def close(self) -> None:
        self.closed = True


def _logged(caplog: pytest.LogCaptureFixture, error: BaseException) -> list[logging.LogRecord]:
    return [
        r
        for r in caplog.records
        if r.levelno >= logging.ERROR and r.exc_info is not None and r.exc_info[1] is error
    ]


async def test_a_source_failing_mid_stream_is_logged_and_reported_to_every_viewer(
    caplog: pytest.LogCaptureFixture,
) -> None:
    source = _FailingSource(good=3)
    mailbox = LatestFrame(asyncio.get_running_loop())
    capture = CaptureThread(source, mailbox)
    processor = FrameProcessor(ProcessingSettings(160, 120))
    frames = ProcessedFrames(mailbox, processor)
    viewer = frames.track()
    pipeline = spawn(frames.run(), "video-pipeline")
    capture.start()
    try:
        with pytest.raises(MediaStreamError, match="grabber unplugged"):
            async with asyncio.timeout(10):
                while True:
                    await viewer.recv()
        async with asyncio.timeout(10):
            await asyncio.wait([pipeline])
        assert pipeline.exception() is None  # the pipeline ends; it does not fail its owner
        assert frames.failure is source.error
        assert capture.failure is source.error
        assert mailbox.failure is source.error
        assert len(_logged(caplog, source.error)) == 1
        assert source.closed
        late = frames.track()  # a viewer who comes later is told too
        with pytest.raises(MediaStreamError, match="grabber unplugged"):
            await late.recv()
    finally:
        await cancel_and_wait([pipeline])
        await capture.stop()
        processor.close()


async def test_a_source_failing_is_reported_by_the_single_viewer_track() -> None:
    source = _FailingSource(good=1)
    mailbox = LatestFrame(asyncio.get_running_loop())
    capture = CaptureThread(source, mailbox)
    processor = FrameProcessor(ProcessingSettings(160, 120))
    track = PipelineVideoTrack(mailbox, processor)
    capture.start()
    try:
        with pytest.raises(MediaStreamError, match="grabber unplugged"):
            async with asyncio.timeout(10):
                while True:
                    await track.recv()
    finally:
        await capture.stop()
        processor.close()


async def test_a_frame_that_cannot_be_processed_is_skipped_logged_and_the_video_goes_on(
    caplog: pytest.LogCaptureFixture,
) -> None:
    mailbox = LatestFrame(asyncio.get_running_loop())
    processor = FrameProcessor(ProcessingSettings(160, 120))
    frames = ProcessedFrames(mailbox, processor)
    viewer = frames.track()
    pipeline = spawn(frames.run(), "video-pipeline")
    receiving = spawn(viewer.recv(), "viewer")  # a viewer waits for a frame
    try:
        await eventually(lambda: frames.viewers == 1)
        mailbox.put(CapturedFrame(1, time.time(), np.zeros((0, 0, 3), np.uint8)))  # unusable
        await eventually(lambda: frames.skipped == 1)
        assert not pipeline.done()
        mailbox.put(CapturedFrame(2, time.time(), np.full((120, 160, 3), 90, np.uint8)))
        async with asyncio.timeout(10):
            frame = await receiving
        assert isinstance(frame, av.VideoFrame)
        stamp = read_stamp(np.asarray(frame.to_ndarray(format="bgr24"), dtype=np.uint8))
        assert stamp is not None and stamp[0] == 2
        errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
        assert [r.name for r in errors] == ["media.rtc.tracks"]  # logged once, with the cause
        assert errors[0].exc_info is not None
    finally:
        viewer.stop()
        await cancel_and_wait([receiving, pipeline])
        processor.close()
