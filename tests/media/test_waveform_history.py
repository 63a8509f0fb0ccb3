"""The waveform history: the last N seconds by sample index, in any order, gaps kept."""

from __future__ import annotations

import numpy as np
import pytest

from media.waveform.history import HistorySettings, WaveformHistory


def _ramp(first: int, n: int) -> np.ndarray:
    return (np.arange(first, first + n) % 100).astype(np.float32)


def _history(seconds: float = 10.0) -> WaveformHistory:
    return WaveformHistory(HistorySettings(seconds=seconds))


def test_a_range_comes_back_as_it_was_added() -> None:
    history = _history()
    for first in range(0, 500, 50):
        history.add(1, first, _ramp(first, 50), 50.0)
    segment = history.segment(1, 120, 200)
    assert segment is not None
    assert segment.first == 120 and segment.rate == 50.0
    np.testing.assert_array_equal(segment.samples, _ramp(120, 200))


def test_out_of_order_and_overlapping_packets_land_by_index() -> None:
    history = _history()
    chunks = [(0, 40), (80, 40), (40, 40), (60, 50), (120, 30)]
    for first, n in reversed(chunks):
        history.add(7, first, _ramp(first, n), 100.0)
    segment = history.segment(7, 0, 150)
    assert segment is not None
    np.testing.assert_array_equal(segment.samples, _ramp(0, 150))


def test_a_gap_stays_a_gap() -> None:
    history = _history()
    history.add(1, 0, _ramp(0, 100), 50.0)
    history.add(1, 150, _ramp(150, 50), 50.0)  # 100..149 never arrived
    device_gap = _ramp(200, 20)
    device_gap[5:10] = np.nan  # the device's own gap
    history.add(1, 200, device_gap, 50.0)
    segment = history.segment(1, 90, 130)
    assert segment is not None and segment.first == 90
    held = ~np.isnan(segment.samples)
    np.testing.assert_array_equal(np.flatnonzero(~held) + 90, [*range(100, 150), *range(205, 210)])
    np.testing.assert_array_equal(segment.samples[held], _ramp(90, 130)[held])


def test_only_the_last_n_seconds_are_kept_and_memory_is_bounded() -> None:
    history = _history(seconds=2.0)  # 200 samples at 100 Hz
    for first in range(0, 1000, 30):
        history.add(3, first, _ramp(first, 30), 100.0)
    segment = history.segment(3, 0, 2000)
    assert segment is not None
    assert segment.first == 1020 - 200  # the end is 1020; older ones are gone
    np.testing.assert_array_equal(segment.samples, _ramp(820, 200))
    # A packet older than the window changes nothing; one partly inside keeps its newer part.
    history.add(3, 0, np.full(30, -1, np.float32), 100.0)
    history.add(3, 810, np.full(20, -2, np.float32), 100.0)
    segment = history.segment(3, 800, 40)
    assert segment is not None and segment.first == 820
    np.testing.assert_array_equal(segment.samples[:10], np.full(10, -2, np.float32))
    np.testing.assert_array_equal(segment.samples[10:], _ramp(830, 10))


def test_a_jump_forward_leaves_no_sample_of_an_earlier_lap() -> None:
    history = _history(seconds=1.0)  # 100 slots
    history.add(1, 0, _ramp(0, 100), 100.0)
    history.add(1, 150, _ramp(150, 10), 100.0)  # slots of 100..149 held 0..49 before
    segment = history.segment(1, 60, 100)
    assert segment is not None and segment.first == 60
    assert np.isnan(segment.samples[40:90]).all()  # 100..149: a gap, not old samples
    np.testing.assert_array_equal(segment.samples[:40], _ramp(60, 40))
    np.testing.assert_array_equal(segment.samples[90:], _ramp(150, 10))
    # A jump further than the whole window keeps only the newest packet.
    history.add(1, 10_000, _ramp(10_000, 250), 100.0)
    segment = history.segment(1, 0, 20_000)
    assert segment is not None and segment.first == 10_150
    np.testing.assert_array_equal(segment.samples, _ramp(10_150, 100))


def test_ranges_outside_what_is_held() -> None:
    history = _history()
    assert history.segment(1, 0, 10) is None
    history.add(1, 100, _ramp(100, 10), 50.0)
    after = history.segment(1, 500, 10)
    assert after is not None and len(after.samples) == 0
    partial = history.segment(1, 105, 100)
    assert partial is not None and partial.first == 105 and len(partial.samples) == 5
    with pytest.raises(ValueError, match="range"):
        history.segment(1, -1, 10)


def test_bad_input_is_refused_with_its_reason() -> None:
    history = WaveformHistory(HistorySettings(seconds=1.0, max_channels=1))
    with pytest.raises(ValueError, match="negative"):
        history.add(1, -5, _ramp(0, 5), 50.0)
    for rate in (0.0, float("nan"), 1e9):
        with pytest.raises(ValueError, match="sample rate"):
            history.add(1, 0, _ramp(0, 5), rate)
    history.add(1, 0, _ramp(0, 5), 50.0)
    with pytest.raises(ValueError, match="channels"):
        history.add(2, 0, _ramp(0, 5), 50.0)
    with pytest.raises(ValueError, match="seconds"):
        HistorySettings(seconds=0)


def test_a_new_rate_starts_the_channel_again() -> None:
    history = _history()
    history.add(1, 0, _ramp(0, 50), 50.0)
    history.add(1, 0, _ramp(0, 10), 100.0)
    segment = history.segment(1, 0, 50)
    assert segment is not None and segment.rate == 100.0
    np.testing.assert_array_equal(segment.samples, _ramp(0, 10))
