"""Audio sources and sinks: the test tone, the wall-clock click train, WAV files (looped,
resampled, round trip), real ALSA devices through PyAV (ALSA's own ``file`` plugin stands in
for a sound card: capture reads a file, playback writes one), the capture thread's bounded
hand-over, and clear errors for what cannot be opened."""

from __future__ import annotations

import asyncio
import logging
import time
from pathlib import Path

import numpy as np
import pytest
from numpy.typing import NDArray

from media.audio import capture
from media.audio.capture import BLOCK_SAMPLES, AudioBlock, AudioCaptureThread, AudioMailbox
from media.audio.errors import AudioDeviceError
from media.audio.sinks import AlsaSink, SinkThread, WavSink, open_audio_sink
from media.audio.sources import (
    CLICK_PERIOD_S,
    ClickSource,
    ToneSource,
    WavSource,
    open_audio_source,
)
from media.errors import MediaError
from tests.media.audio_signals import FS, dominant_hz, read_wav, write_wav


def _blocks(source: capture.AudioSource, count: int) -> NDArray[np.float32]:
    out = []
    for _ in range(count):
        block = source.read()
        assert block is not None
        assert block.shape == (BLOCK_SAMPLES,) and block.dtype == np.float32
        out.append(block)
    return np.concatenate(out)


def test_the_tone_is_continuous_across_blocks() -> None:
    samples = _blocks(ToneSource(440.0, 0.25), 10)
    n = np.arange(len(samples))
    assert np.allclose(samples, 0.25 * np.sin(2 * np.pi * 440 * n / FS), atol=1e-6)


def test_clicks_start_on_the_wall_clock_multiples_of_their_period() -> None:
    source = ClickSource()
    samples = _blocks(source, round(1.3 / 0.02))
    loud = np.flatnonzero(np.abs(samples) > 0.1)
    onsets = loud[np.insert(np.diff(loud) > 480, 0, True)]
    assert len(onsets) >= 2
    for onset in onsets:
        when = source.wall_start + onset / FS
        phase = when % CLICK_PERIOD_S
        # A click starts on the period; the first loud sample is within its 0.25 ms rise.
        assert min(phase, CLICK_PERIOD_S - phase) < 0.001, phase


def test_a_wav_file_loops_without_a_gap(tmp_path: Path) -> None:
    content = np.sin(2 * np.pi * 300 * np.arange(5 * BLOCK_SAMPLES) / FS) * 0.5
    content[:10] = 0.9  # a mark at the start of each loop
    path = write_wav(tmp_path / "loop.wav", content)
    source = WavSource(path)
    try:
        samples = _blocks(source, 12)
    finally:
        source.close()
    expected = np.tile(content, 3)[: len(samples)]
    assert np.max(np.abs(samples - expected)) < 2 / 32768
    assert source.loops == 2


def test_a_wav_file_at_another_rate_is_resampled_to_48_khz(tmp_path: Path) -> None:
    rate = 16_000
    path = write_wav(
        tmp_path / "16k.wav", 0.3 * np.sin(2 * np.pi * 500 * np.arange(rate) / rate), rate
    )
    source = WavSource(path)
    try:
        samples = _blocks(source, 25)
    finally:
        source.close()
    assert abs(dominant_hz(samples[4800:]) - 500.0) < 2.0


def test_wav_round_trip_through_the_sink_and_the_source(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    written = [(rng.uniform(-0.8, 0.8, BLOCK_SAMPLES)).astype(np.float32) for _ in range(4)]
    sink = WavSink(tmp_path / "out.wav")
    for block in written:
        sink.write(block)
    sink.close()
    data, rate = read_wav(tmp_path / "out.wav")
    assert rate == FS and len(data) == 4 * BLOCK_SAMPLES
    source = WavSource(tmp_path / "out.wav")
    try:
        read = _blocks(source, 4)
    finally:
        source.close()
    assert np.max(np.abs(read - np.concatenate(written))) <= 1 / 32768


def test_what_cannot_be_opened_says_what_and_why(tmp_path: Path) -> None:
    with pytest.raises(AudioDeviceError, match="no such audio file"):
        open_audio_source(str(tmp_path / "missing.wav"))
    (tmp_path / "notes.txt").write_text("not a sound")
    with pytest.raises(AudioDeviceError, match=r"notes\.txt"):
        open_audio_source(str(tmp_path / "notes.txt"))
    with pytest.raises(AudioDeviceError, match=r"ALSA capture device 'hw:7,0'"):
        open_audio_source("alsa:hw:7,0")
    with pytest.raises(AudioDeviceError, match=r"ALSA playback device 'hw:7,0'"):
        open_audio_sink("alsa:hw:7,0")
    with pytest.raises(AudioDeviceError, match="PulseAudio"):
        open_audio_source("pulse:default")
    with pytest.raises(ValueError, match="synthetic"):
        open_audio_source("synthetic:noise")
    assert issubclass(AudioDeviceError, MediaError) and issubclass(AudioDeviceError, OSError)


@pytest.fixture
def alsa_card(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An ALSA PCM ``tap`` made of ALSA's ``file`` plugin over the ``null`` device: capture
    reads ``in.raw`` (1 s of 440 Hz, s16 mono 48 kHz), playback writes ``out.raw``. The
    configuration is the system's plus this PCM."""
    tone = (0.3 * np.sin(2 * np.pi * 440 * np.arange(FS) / FS) * 32767).astype("<i2")
    (tmp_path / "in.raw").write_bytes(tone.tobytes())
    config = tmp_path / "asound.conf"
    config.write_text(
        "<confdir:alsa.conf>\n"
        "pcm.tap {\n"
        "  type file\n"
        '  slave.pcm "null"\n'
        f'  file "{tmp_path / "out.raw"}"\n'
        f'  infile "{tmp_path / "in.raw"}"\n'
        '  format "raw"\n'
        "}\n"
    )
    monkeypatch.setenv("ALSA_CONFIG_DIR", "/usr/share/alsa")
    monkeypatch.setenv("ALSA_CONFIG_PATH", str(config))
    return tmp_path


def test_an_alsa_device_is_captured_through_pyav(alsa_card: Path) -> None:
    source = open_audio_source("alsa:tap")
    try:
        samples = _blocks(source, 10)
    finally:
        source.close()
    assert abs(dominant_hz(samples) - 440.0) < 2.0
    assert 0.25 < np.max(np.abs(samples)) < 0.35


def test_talk_back_is_played_on_an_alsa_device(alsa_card: Path) -> None:
    sink = open_audio_sink("alsa:tap")
    assert isinstance(sink, AlsaSink)
    for k in range(10):
        n = np.arange(k * BLOCK_SAMPLES, (k + 1) * BLOCK_SAMPLES)
        sink.write((0.25 * np.sin(2 * np.pi * 700 * n / FS)).astype(np.float32))
    sink.close()
    played = np.frombuffer((alsa_card / "out.raw").read_bytes(), dtype="<i2") / 32768
    assert len(played) == 10 * BLOCK_SAMPLES
    assert abs(dominant_hz(played) - 700.0) < 2.0


def _block(index: int) -> AudioBlock:
    return AudioBlock(index, time.time(), np.full(BLOCK_SAMPLES, index, np.float32))


async def test_the_mailbox_keeps_order_and_drops_the_oldest_when_the_loop_falls_behind() -> None:
    mailbox = AudioMailbox(asyncio.get_running_loop(), maxsize=3)

    def produce() -> None:
        for k in range(5):
            mailbox.put(_block(k))

    await asyncio.to_thread(produce)
    await asyncio.to_thread(mailbox.put, None)
    taken = []
    while (block := await mailbox.get()) is not None:
        taken.append(block.index)
    assert taken == [2, 3, 4]
    assert mailbox.dropped == 2


class _Unplugged:
    """A device that delivers two blocks and is then unplugged (read fails)."""

    def __init__(self) -> None:
        self.reads = 0
        self.closed = False

    def read(self) -> NDArray[np.float32] | None:
        self.reads += 1
        if self.reads > 2:
            raise OSError("No such device")
        return np.zeros(BLOCK_SAMPLES, np.float32)

    def close(self) -> None:
        self.closed = True


async def test_a_lost_device_is_logged_and_opened_again(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(capture, "REOPEN_S", 0.05)
    first, second = _Unplugged(), _Unplugged()
    attempts: list[_Unplugged | None] = [None, second]  # None: still absent

    def reopen() -> capture.AudioSource:
        attempt = attempts.pop(0) if attempts else None
        if attempt is None:
            raise AudioDeviceError("absent")
        return attempt

    mailbox = AudioMailbox(asyncio.get_running_loop(), maxsize=10)
    thread = AudioCaptureThread(first, mailbox, reopen, name="stethoscope")
    with caplog.at_level(logging.WARNING, logger="media.audio.capture"):
        thread.start()
        indexes: list[int] = []
        while len(indexes) < 4:
            block = await mailbox.get()
            assert block is not None
            indexes.append(block.index)
        await thread.stop()
    assert await mailbox.get() is None  # stopped while the second device was away
    # Two blocks from each device, numbered on.
    assert indexes == [0, 1, 2, 3]
    assert first.closed and second.closed and thread.reopened == 1
    assert "audio source stethoscope lost" in caplog.text
    assert "audio source stethoscope is back" in caplog.text


async def test_the_sink_thread_writes_in_order_and_stops_after_the_queue(tmp_path: Path) -> None:
    sink = SinkThread(WavSink(tmp_path / "talk.wav"), maxsize=50)
    sink.start()
    for k in range(20):
        sink.put(np.full(BLOCK_SAMPLES, k / 40, np.float32))
    sink.put(None)
    await asyncio.to_thread(sink.join)
    data, _ = read_wav(tmp_path / "talk.wav")
    levels = data.reshape(20, BLOCK_SAMPLES)[:, 0]
    assert np.allclose(levels, np.arange(20) / 40, atol=1 / 32768)
    assert sink.written == 20 and sink.dropped == 0
