"""Audio sources: a test tone, a click train, a WAV file (looped), an ALSA device.

Each :meth:`read` returns one block of :data:`~media.audio.capture.BLOCK_SAMPLES` mono
float32 samples at 48 kHz. Synthetic sources and files sleep until their next block is due
(they are read in the capture thread, never on the event loop); a device is paced by its own
clock. Which source a spec names: :func:`open_audio_source`.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Generator
from pathlib import Path

import av
import numpy as np
from numpy.typing import NDArray

from media.audio import alsa
from media.audio.capture import BLOCK_SAMPLES, SAMPLE_RATE, AudioSource
from media.audio.errors import AudioDeviceError

#: A late paced source skips ahead rather than catching up past this (a suspended machine).
_MAX_LAG_S = 0.2
#: The click train's period and each click's length: one click every 0.5 s of wall-clock
#: time, 4 ms of 1 kHz with a 0.25 ms rise, so a receiver on the same clock can tell the
#: latency of each click from its onset alone.
CLICK_PERIOD_S = 0.5
CLICK_S = 0.004
CLICK_HZ = 1000.0


class _Paced:
    """A source with no clock of its own: block ``n`` is due once its last sample's time
    has come. ``wall_start`` is the wall-clock time of sample 0."""

    def __init__(self) -> None:
        self._n = 0  # samples handed out so far
        self._mono_start: float | None = None
        self.wall_start = 0.0

    def _next_block_start(self) -> int:
        """Sleep until the next block is due; the index of its first sample."""
        now = time.monotonic()
        if self._mono_start is None:
            self._mono_start, self.wall_start = now, time.time()
        due = self._mono_start + (self._n + BLOCK_SAMPLES) / SAMPLE_RATE
        if now - due > _MAX_LAG_S:  # far behind: skip ahead, never a burst of old blocks
            self._n = int((now - self._mono_start) * SAMPLE_RATE) - BLOCK_SAMPLES
        elif due > now:
            time.sleep(due - now)
        first = self._n
        self._n += BLOCK_SAMPLES
        return first

    def close(self) -> None:
        pass


class ToneSource(_Paced):
    """A sine tone at ``hz``, amplitude ``level`` (full scale 1.0)."""

    def __init__(self, hz: float = 440.0, level: float = 0.25) -> None:
        super().__init__()
        self.hz, self.level = hz, level

    def read(self) -> NDArray[np.float32]:
        first = self._next_block_start()
        n = np.arange(first, first + BLOCK_SAMPLES)
        return (self.level * np.sin(2 * np.pi * self.hz * n / SAMPLE_RATE)).astype(np.float32)


def click_waveform(level: float = 0.5) -> NDArray[np.float32]:
    """One click: ``CLICK_S`` of ``CLICK_HZ`` at ``level``, with short ramps at each end."""
    n = round(CLICK_S * SAMPLE_RATE)
    click = level * np.sin(2 * np.pi * CLICK_HZ * np.arange(n) / SAMPLE_RATE)
    ramp = np.linspace(0.0, 1.0, 12)
    click[:12] *= ramp
    click[-12:] *= ramp[::-1]
    return click.astype(np.float32)


class ClickSource(_Paced):
    """A click at every multiple of ``period`` s of wall-clock time (``time.time()``), silence
    between: a receiver on the same clock knows when each click it hears was made."""

    def __init__(self, period: float = CLICK_PERIOD_S, level: float = 0.5) -> None:
        super().__init__()
        self.period = period
        self.click = click_waveform(level)
        self.clicks = 0

    def read(self) -> NDArray[np.float32]:
        first = self._next_block_start()
        block = np.zeros(BLOCK_SAMPLES, np.float32)
        t0 = self.wall_start + first / SAMPLE_RATE
        # Every click that overlaps this block (one may have started in the previous one).
        k = math.floor((t0 - CLICK_S) / self.period) + 1
        while (start_t := k * self.period) < t0 + BLOCK_SAMPLES / SAMPLE_RATE:
            offset = round((start_t - t0) * SAMPLE_RATE)
            lo, hi = max(0, offset), min(BLOCK_SAMPLES, offset + len(self.click))
            if hi > lo:
                block[lo:hi] += self.click[lo - offset : hi - offset]
                if offset >= 0:
                    self.clicks += 1
            k += 1
        return block


class _Decoded:
    """Frames from a PyAV container turned into mono 48 kHz blocks of ``BLOCK_SAMPLES``."""

    def __init__(self) -> None:
        self._resampler = av.AudioResampler(
            format="flt", layout="mono", rate=SAMPLE_RATE, frame_size=BLOCK_SAMPLES
        )
        self._ready: list[NDArray[np.float32]] = []

    def _take(self, frame: av.AudioFrame) -> None:
        for out in self._resampler.resample(frame):
            samples = np.asarray(out.to_ndarray(), dtype=np.float32).reshape(-1)
            if len(samples) == BLOCK_SAMPLES:
                self._ready.append(samples)


class WavSource(_Paced, _Decoded):
    """An audio file (WAV, or anything FFmpeg decodes), played in real time and looped
    without a gap. Raises :class:`AudioDeviceError` when it cannot be opened or has no
    audio."""

    def __init__(self, path: Path) -> None:
        _Paced.__init__(self)
        _Decoded.__init__(self)
        self.path = path
        self.loops = 0
        self._frames = self._open()

    def _open(self) -> Generator[av.AudioFrame, None, None]:
        try:
            container = av.open(str(self.path))
        except (av.FFmpegError, OSError) as exc:
            raise AudioDeviceError(f"cannot open audio file {self.path}: {exc}") from None
        if not container.streams.audio:
            container.close()
            raise AudioDeviceError(f"{self.path} has no audio stream")
        return _frames_of(container)

    def read(self) -> NDArray[np.float32]:
        self._next_block_start()
        for _ in range(2):  # at most one wrap to the start per block
            while not self._ready:
                frame = next(self._frames, None)
                if frame is None:
                    break
                self._take(frame)
            if self._ready:
                return self._ready.pop(0)
            self.loops += 1
            self._frames = self._open()
        raise AudioDeviceError(f"{self.path} has no samples")

    def close(self) -> None:
        self._frames.close()  # the generator closes the file


def _frames_of(container: av.container.InputContainer) -> Generator[av.AudioFrame, None, None]:
    try:
        yield from container.decode(audio=0)
    finally:
        container.close()


class AlsaSource(_Decoded):
    """An ALSA capture device through FFmpeg (``hw:1,0``, ``plughw:1,0``, ``default``...),
    asked for 48 kHz mono (else stereo, downmixed). Raises :class:`AudioDeviceError` naming
    the device when it cannot be opened."""

    def __init__(self, device: str) -> None:
        super().__init__()
        self.device = device
        alsa.use_system_config()
        self._container = _open_alsa_input(device)
        self._frames = self._container.decode(audio=0)

    def read(self) -> NDArray[np.float32] | None:
        try:
            while not self._ready:
                self._take(next(self._frames))
        except (StopIteration, av.FFmpegError, OSError):
            return None  # unplugged or failed: the capture thread decides what next
        return self._ready.pop(0)

    def close(self) -> None:
        self._container.close()


def _open_alsa_input(device: str) -> av.container.InputContainer:
    error: Exception | None = None
    for channels in ("1", "2"):  # a stereo-only card refuses mono
        try:
            return av.open(
                device,
                format="alsa",
                options={"sample_rate": str(SAMPLE_RATE), "channels": channels},
            )
        except (av.FFmpegError, OSError) as exc:
            error = exc
    raise AudioDeviceError(
        f"cannot open ALSA capture device {device!r}: {error} "
        "(is it plugged in? `arecord -l` lists the cards)"
    )


def open_audio_source(spec: str) -> AudioSource:
    """The source a spec names. Raises :class:`AudioDeviceError` when it cannot be opened,
    ValueError for a spec that names nothing known.

    - ``synthetic`` or ``synthetic:tone[:HZ]``: a test tone (440 Hz);
    - ``synthetic:clicks``: a click every 0.5 s of wall-clock time (latency measurement);
    - ``alsa:NAME``: an ALSA capture device, e.g. ``alsa:hw:1,0``;
    - anything else: an audio file (a WAV), looped.
    """
    kind, _, rest = spec.partition(":")
    if kind == "synthetic":
        what, _, arg = rest.partition(":")
        if what in ("", "tone"):
            try:
                return ToneSource(float(arg) if arg else 440.0)
            except ValueError:
                raise ValueError(f"{spec!r}: synthetic:tone:HZ takes a frequency") from None
        if what == "clicks" and not arg:
            return ClickSource()
        raise ValueError(f"{spec!r}: synthetic, synthetic:tone[:HZ] or synthetic:clicks")
    if kind in ("alsa", "pulse"):
        return AlsaSource(alsa.device_name(spec))
    path = Path(spec)
    if not path.is_file():
        raise AudioDeviceError(
            f"{spec!r}: no such audio file (sources: synthetic, synthetic:clicks, "
            "alsa:DEVICE, or a WAV file)"
        )
    return WavSource(path)


def reopener(spec: str) -> Callable[[], AudioSource] | None:
    """How to open the source again after it was lost: only a device can come back."""
    if spec.startswith("alsa:"):
        return lambda: open_audio_source(spec)
    return None
