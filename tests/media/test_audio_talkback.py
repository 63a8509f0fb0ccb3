"""Talk-back at the bedside: spurts found by level (a push-to-talk microphone that is off
still sends silence), one speaker at a time, each spurt logged once, only spurts played."""

from __future__ import annotations

import asyncio
import logging
import math
from pathlib import Path

import av
import numpy as np
import pytest

from media.audio.sinks import SinkThread, WavSink
from media.audio.talkback import Spurt, SpurtDetector, TalkBack, decoded_mono, level_dbfs
from runtime.clock import ManualClock
from tests.media.audio_signals import FS, dominant_hz, read_wav


def _frame(hz: float, level: float, k: int = 0) -> av.AudioFrame:
    """A decoded frame as aiortc gives it: s16 stereo interleaved, 20 ms."""
    n = np.arange(k * 960, (k + 1) * 960)
    mono = (level * 32767 * np.sin(2 * np.pi * hz * n / FS)).astype(np.int16)
    frame = av.AudioFrame.from_ndarray(np.repeat(mono, 2).reshape(1, -1), "s16", "stereo")
    frame.sample_rate = FS
    return frame


@pytest.mark.parametrize(
    ("talking", "level", "quiet_for", "expected"),
    [
        (False, -20.0, 0.0, Spurt.STARTED),  # a word starts a spurt
        (False, -70.0, 0.0, None),  # an open microphone in a quiet room does not
        (False, -math.inf, 0.0, None),  # nor does a disabled one (digital silence)
        (True, -20.0, 0.0, None),  # talking on
        (True, -70.0, 0.3, None),  # a pause between words stays in the spurt
        (True, -70.0, 0.7, Spurt.ENDED),  # past the hangover the spurt ends
    ],
)
def test_spurt_transitions(
    talking: bool, level: float, quiet_for: float, expected: Spurt | None
) -> None:
    detector = SpurtDetector(talking=talking, last_loud=100.0)
    assert detector.feed(level, 100.0 + quiet_for) is expected


def test_levels_and_decoded_frames() -> None:
    frame = _frame(500, 0.5)
    mono = decoded_mono(frame)
    assert mono.shape == (960,) and abs(np.max(np.abs(mono)) - 0.5) < 0.01
    assert abs(level_dbfs(mono) - 20 * math.log10(0.5 / math.sqrt(2))) < 0.1
    assert level_dbfs(np.zeros(960, np.float32)) == -math.inf


async def test_one_speaker_at_a_time_each_spurt_logged_once(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    clock = ManualClock()
    sink = SinkThread(WavSink(tmp_path / "speaker.wav"))
    sink.start()
    talkback = TalkBack(sink, clock)
    with caplog.at_level(logging.INFO, logger="media.audio.talkback"):
        for k in range(50):  # 1 s: A talks (700 Hz), B talks over A (300 Hz)
            talkback.feed("A", _frame(700, 0.3, k))
            talkback.feed("B", _frame(300, 0.3, k))
            clock.advance(0.02)
        for k in range(50):  # A lets go; B, still talking, gets the floor
            talkback.feed("A", _frame(700, 0.0, k))
            talkback.feed("B", _frame(300, 0.3, 50 + k))
            clock.advance(0.02)
        talkback.forget("B")  # B's tab closed
    await asyncio.to_thread(talkback.close)
    assert talkback.floor is None
    lines = [r.getMessage() for r in caplog.records]
    assert lines.count("talk-back from A") == 1
    assert lines.count("talk-back from B not played: A is talking") == 1
    assert lines.count("talk-back from B") == 1
    assert sum(line.startswith("talk-back from A ended") for line in lines) == 1
    assert sum(line.startswith("talk-back from B ended") for line in lines) == 1
    played, _ = read_wav(tmp_path / "speaker.wav")
    # A's second and the hangover of A's silence, then B from its next spurt: never both.
    a_blocks = played[: 50 * 960]
    assert abs(dominant_hz(a_blocks) - 700) < 3
    b_part = played[-20 * 960 :]
    assert abs(dominant_hz(b_part) - 300) < 3
    assert talkback.spurts == 2
