"""One live waveform channel as the other site sees it: conditioned samples, beats, rate and
signal quality, chunk by chunk.

Gaps (NaN samples) stay gaps in the output. The filters and detectors run through them on the
last value held (a filter fed NaN would output NaN for ever), and the gap is marked again in
the output samples.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from media.waveform.filters import EcgConditioner
from media.waveform.pleth import PulseDetector
from media.waveform.qrs import QrsDetector
from media.waveform.quality import Kind, QualityScore, SignalQuality


@dataclass(frozen=True, eq=False)
class ChannelOutput:
    #: What to display: conditioned samples (float32), NaN where the input had none.
    samples: NDArray[np.float32]
    #: Stream-absolute sample indices of the beats (R peaks, pulse peaks) decided in this call.
    beats: list[int]
    #: Beats a minute after this chunk, or None while too few beats are known.
    rate: float | None
    #: Quality windows completed in this call (0 = unusable, 1 = clean).
    quality: list[QualityScore]


class _HoldGaps:
    """Replaces NaN with the last finite value (0 before any)."""

    def __init__(self) -> None:
        self._last = 0.0

    def fill(self, x: NDArray[np.float64]) -> tuple[NDArray[np.float64], NDArray[np.bool_]]:
        gaps = np.isnan(x)
        if not gaps.any():
            self._last = float(x[-1]) if len(x) else self._last
            return x, gaps
        # Forward fill: each gap sample takes the latest finite value before it.
        index = np.where(gaps, 0, np.arange(len(x)))
        np.maximum.accumulate(index, out=index)
        filled = x[index]
        filled[np.isnan(filled)] = self._last  # leading gap: the previous chunk's last value
        self._last = float(filled[-1])
        return filled, gaps


class EcgChannel:
    """An ECG lead: baseline, mains (the site's 50 or 60 Hz) and high frequencies removed for
    display; QRS detection and heart rate on the raw lead (the detector has its own band)."""

    def __init__(self, fs: float, mains_hz: float) -> None:
        self.fs = fs
        self._holes = _HoldGaps()
        self._conditioner = EcgConditioner(fs, mains_hz)
        self._qrs = QrsDetector(fs)
        self._quality = SignalQuality(fs, Kind.ECG)

    def process(self, x: NDArray[np.floating]) -> ChannelOutput:
        filled, gaps = self._holes.fill(np.asarray(x, dtype=np.float64))
        shown = self._conditioner.process(filled).astype(np.float32)
        shown[gaps] = np.nan
        beats = [b.index for b in self._qrs.process(filled)]
        quality = self._quality.process(np.where(gaps, np.nan, filled))
        return ChannelOutput(shown, beats, self._qrs.heart_rate(), quality)


class PlethChannel:
    """A pleth (PPG) trace: shown as the device sent it; pulses and pulse rate detected."""

    def __init__(self, fs: float) -> None:
        self.fs = fs
        self._holes = _HoldGaps()
        self._pulses = PulseDetector(fs)
        self._quality = SignalQuality(fs, Kind.PLETH)

    def process(self, x: NDArray[np.floating]) -> ChannelOutput:
        raw = np.asarray(x, dtype=np.float64)
        filled, _ = self._holes.fill(raw)
        beats = self._pulses.process(filled)
        quality = self._quality.process(raw)
        return ChannelOutput(raw.astype(np.float32), beats, self._pulses.pulse_rate(), quality)
