"""A diagnostic camera's frames: sent as captured (scaled only, the stamp in its corner), the
synthetic ultrasound it can be tested with, and the last seconds kept for a doctor's keep."""

from __future__ import annotations

import asyncio

import cv2
import numpy as np
import pytest

from media.video.capture import (
    CapturedFrame,
    CaptureThread,
    LatestFrame,
    SyntheticSource,
    UltrasoundSource,
)
from media.video.processing import ProcessingSettings, process_frame
from media.video.recent import MAX_HELD, RecentFrames
from media.video.stamp import read_stamp, stamp_size
from tests.helpers import eventually

#: Everything the room camera's processing can do to a frame, switched on.
ENHANCED = ProcessingSettings(320, 240, clahe=True, denoise=True, overlay="Wonju", stamp=False)


def _frame(width: int = 320, height: int = 240, frame_id: int = 7) -> CapturedFrame:
    rng = np.random.default_rng(frame_id)
    image = rng.integers(0, 256, (height, width, 3), dtype=np.uint8)
    return CapturedFrame(frame_id, 1_800_000_000.0 + frame_id / 30, image)


def test_a_diagnostic_frame_of_the_sent_size_is_sent_as_captured() -> None:
    frame = _frame()
    diagnostic = ENHANCED.for_diagnostic()
    assert (diagnostic.clahe, diagnostic.denoise, diagnostic.overlay) == (False, False, "")
    assert np.array_equal(process_frame(frame, diagnostic), frame.image)
    # The flag alone is enough: settings that ask for enhancement get none.
    flagged = ProcessingSettings(320, 240, clahe=True, denoise=True, overlay="x", stamp=False,
                                 diagnostic=True)  # fmt: skip
    assert np.array_equal(process_frame(frame, flagged), frame.image)
    # The room camera's processing does change it (so the assertions above can fail).
    assert not np.array_equal(process_frame(frame, ENHANCED), frame.image)


def test_a_diagnostic_frame_of_another_size_is_only_scaled() -> None:
    frame = _frame(640, 480)
    sent = process_frame(frame, ENHANCED.for_diagnostic())
    scaled = cv2.resize(frame.image, (320, 240), interpolation=cv2.INTER_AREA)
    assert np.array_equal(sent, scaled)
    small = _frame(160, 120)
    up = cv2.resize(small.image, (320, 240), interpolation=cv2.INTER_LINEAR)
    assert np.array_equal(process_frame(small, ENHANCED.for_diagnostic()), up)


def test_the_stamp_stays_in_its_corner_and_nothing_else_changes() -> None:
    frame = _frame()
    sent = process_frame(frame, ProcessingSettings(320, 240, overlay="Wonju").for_diagnostic())
    assert read_stamp(sent) == (frame.frame_id, round(frame.capture_time * 1000) & 0xFFFFFFFF)
    width, height = stamp_size()
    outside = np.ones(sent.shape[:2], bool)
    outside[:height, :width] = False
    assert np.array_equal(sent[outside], frame.image[outside])
    assert not np.array_equal(frame.image[:height, :width], sent[:height, :width])


def test_the_synthetic_ultrasound_is_a_moving_grey_sector_unlike_the_room_pattern() -> None:
    source = UltrasoundSource(320, 240, fps=1000.0)
    first, second = source.read(), source.read()
    assert first is not None and second is not None
    assert first.shape == (240, 320, 3) and first.dtype == np.uint8
    assert np.array_equal(first[:, :, 0], first[:, :, 1])  # grey, as B-mode
    assert not np.array_equal(first, second)  # it moves
    assert first[2, 2].tolist() == [0, 0, 0]  # black outside the sector
    assert first[120, 160].max() > 0  # the sector's middle shows tissue
    room = SyntheticSource(320, 240, fps=1000.0).read()
    assert room is not None
    assert float(np.abs(room.astype(int) - first.astype(int)).mean()) > 40


def test_recent_frames_are_copies_bounded_by_time_count_and_bytes() -> None:
    recent = RecentFrames(seconds=0.5, max_frames=100, max_bytes=10**9)
    frames = [_frame(32, 24, frame_id=k) for k in range(1, 31)]  # one second at 30 fps
    for frame in frames:
        recent.add(frame)
    # Half a second back from the newest (a frame exactly at the edge stays).
    held = [k for k in range(1, 31) if recent.find(k)[1]]
    assert held == list(range(15, 31))
    frames[-1].image[:] = 0  # the source reusing its buffer changes nothing kept
    kept, exact = recent.find(30)
    assert exact and kept is not None and kept.image.any()

    by_count = RecentFrames(seconds=60, max_frames=4, max_bytes=10**9)
    by_bytes = RecentFrames(seconds=60, max_frames=100, max_bytes=3 * 32 * 24 * 3)
    for frame in frames:
        by_count.add(frame)
        by_bytes.add(frame)
    assert (len(by_count), len(by_bytes)) == (4, 3)
    assert by_bytes.held_bytes == 3 * 32 * 24 * 3
    with pytest.raises(ValueError, match="positive"):
        RecentFrames(seconds=0)


def test_a_frame_not_held_gives_the_newest_and_says_so() -> None:
    recent = RecentFrames()
    assert recent.find(None) == (None, False)
    for k in (1, 2, 3):
        recent.add(_frame(8, 8, frame_id=k))
    newest, exact = recent.find(99)
    assert newest is not None and (newest.frame_id, exact) == (3, False)
    asked, exact = recent.find(2)
    assert asked is not None and (asked.frame_id, exact) == (2, True)
    # The stamp carries 32 bits of the id: an id read from it matches modulo 2^32.
    big = RecentFrames()
    big.add(_frame(8, 8, frame_id=2**32 + 5))
    found, exact = big.find(5)
    assert found is not None and exact


async def test_a_capture_thread_keeps_recent_frames_and_its_size() -> None:
    mailbox = LatestFrame(asyncio.get_running_loop())
    recent = RecentFrames()
    capture = CaptureThread(
        UltrasoundSource(160, 120, 30.0), mailbox, name="capture-ultrasound", recent=recent
    )
    capture.start()
    try:
        await eventually(lambda: len(recent) >= 3)
        assert capture.size == (160, 120)
        taken = await mailbox.get()
        assert taken is not None
        held, exact = recent.find(taken.frame_id)
        assert exact and held is not None
        assert np.array_equal(held.image, taken.image) and held.image is not taken.image
    finally:
        await capture.stop()


def test_a_frozen_frame_is_held_past_the_recent_seconds() -> None:
    recent = RecentFrames(seconds=0.5, max_frames=100, max_bytes=10**9)
    for k in range(1, 11):
        recent.add(_frame(8, 8, frame_id=k))
    assert recent.hold(5)
    assert not recent.hold(999)  # never seen: nothing to hold
    for k in range(11, 200):  # seconds later: frame 5 has left the recent frames...
        recent.add(_frame(8, 8, frame_id=k))
    assert not recent.hold(6)
    held, exact = recent.find(5)  # ...but not the hold
    assert exact and held is not None and held.frame_id == 5
    assert np.array_equal(held.image, _frame(8, 8, frame_id=5).image)
    # Holds are bounded: the oldest is dropped first.
    for k in range(190, 190 + MAX_HELD):
        assert recent.hold(k)
    assert recent.find(5) == (recent.find(None)[0], False)
    assert recent.find(190)[1]
