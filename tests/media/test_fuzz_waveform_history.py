"""The waveform history against a plain model: random packets (any order, overlapping, far
jumps, gaps) into a small ring, then random ranges read back; each sample is what the last
write of its index said, if that index is within the window, else not held."""

from __future__ import annotations

import random

import numpy as np

from media.waveform.history import HistorySettings, WaveformHistory
from tests.fuzzing import budget

RUNS = budget(50)


def test_the_history_matches_a_model_of_the_last_n_indices() -> None:
    rng = random.Random(12)
    for _ in range(RUNS):
        seconds, rate = rng.choice([(1.0, 50.0), (0.5, 64.0), (2.0, 10.0)])
        capacity = int(np.ceil(seconds * rate))
        history = WaveformHistory(HistorySettings(seconds=seconds))
        model: dict[int, float] = {}
        end = 0
        cursor = 0
        for _ in range(rng.randint(1, 40)):
            move = rng.random()
            if move < 0.6:
                first = cursor
            elif move < 0.8:
                first = max(0, cursor - rng.randint(0, 3 * capacity))  # late, overlapping
            else:
                first = cursor + rng.randint(0, 4 * capacity)  # a jump forward
            n = rng.randint(1, 2 * capacity)
            values = np.array([rng.uniform(-5, 5) for _ in range(n)], np.float32)
            values[[rng.random() < 0.1 for _ in range(n)]] = np.nan
            history.add(0, first, values, rate)
            end = max(end, first + n)
            for k, v in enumerate(values):
                if first + k >= end - capacity:
                    model[first + k] = float(v)
            cursor = max(cursor, first + n)
        start = max(0, end - capacity)
        for _ in range(5):
            lo = rng.randint(0, end + capacity)
            count = rng.randint(0, 3 * capacity)
            segment = history.segment(0, lo, count)
            assert segment is not None
            assert segment.first == max(lo, start)
            expected = [
                model.get(i, float("nan")) if i >= start else float("nan")
                for i in range(segment.first, min(lo + count, end))
            ]
            np.testing.assert_array_equal(segment.samples, np.array(expected, np.float32))
