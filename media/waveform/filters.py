"""Streaming IIR filters (second-order sections with their state carried between chunks).

The mains notch follows the site: 50 Hz in Koriyama (eastern Japan), 60 Hz in Wonju; its
harmonics below Nyquist are notched too.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray
from scipy import signal

from media.errors import WaveformError


class SosFilter:
    """``process(chunk)`` filters the next chunk of a stream; the result for a stream is the
    same whatever its chunking. The state starts at rest (zeros), as for a signal at zero;
    ``prime(x0)`` starts it as if the signal had been ``x0`` forever instead."""

    def __init__(self, sos: NDArray[np.float64]) -> None:
        self.sos = np.asarray(sos, dtype=np.float64)
        self._zi = np.zeros((self.sos.shape[0], 2))
        # The same cascade of biquads as ``sosfilt``, one ``lfilter`` a section: per call
        # scipy's sosfilt wrapper costs about 25 us, a section about 5 us, and streaming in
        # small chunks makes that the larger cost.
        self._sections = [(row[:3].copy(), row[3:].copy()) for row in self.sos]

    def prime(self, x0: float) -> None:
        self._zi = signal.sosfilt_zi(self.sos) * x0

    def process(self, x: NDArray[np.float64]) -> NDArray[np.float64]:
        y = np.asarray(x, dtype=np.float64)
        if len(y) == 0:
            return y
        for k, (b, a) in enumerate(self._sections):
            y, self._zi[k] = signal.lfilter(b, a, y, zi=self._zi[k])
        return y


def highpass(fs: float, cutoff: float = 0.5, order: int = 2) -> SosFilter:
    """Baseline-wander removal (0.5 Hz keeps the ST segment, which 0.67 Hz already bends)."""
    return SosFilter(signal.butter(order, cutoff, "highpass", fs=fs, output="sos"))


def lowpass(fs: float, cutoff: float = 40.0, order: int = 4) -> SosFilter:
    return SosFilter(signal.butter(order, min(cutoff, 0.45 * fs), "lowpass", fs=fs, output="sos"))


def bandpass(fs: float, low: float, high: float, order: int = 2) -> SosFilter:
    return SosFilter(signal.butter(order, [low, high], "bandpass", fs=fs, output="sos"))


def mains_notch(fs: float, mains_hz: float, quality: float = 30.0) -> SosFilter:
    """Notches at the mains frequency and each harmonic below Nyquist. Raises
    :class:`~media.errors.WaveformError` when there is none (``fs`` too low)."""
    sections = []
    harmonic = mains_hz
    while harmonic < 0.48 * fs:
        b, a = signal.iirnotch(harmonic, quality, fs=fs)
        sections.append(signal.tf2sos(b, a))
        harmonic += mains_hz
    if not sections:
        raise WaveformError(f"no mains harmonic below Nyquist at {fs} Hz")
    return SosFilter(np.vstack(sections))


class EcgConditioner:
    """What a monitor shows: baseline removed, mains notched, high frequencies cut."""

    def __init__(self, fs: float, mains_hz: float) -> None:
        self._stages = [highpass(fs), mains_notch(fs, mains_hz), lowpass(fs)]

    def process(self, x: NDArray[np.float64]) -> NDArray[np.float64]:
        for stage in self._stages:
            x = stage.process(x)
        return x
