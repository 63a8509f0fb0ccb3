"""A signal-quality index per channel, over fixed windows of the stream.

Each completed window (``window_s`` long, one every ``hop_s``, aligned to the stream's first
sample so chunking never matters) gets a score in [0, 1], the product of:

- *flat*: a flat line or a lost lead (no variation) scores 0;
- *clipped*: samples stuck at the window's extremes (ADC saturation) lower the score;
- *shape*: ECG is spiky (kurtosis well above 3; Physiol Meas 29:15, 2008), pleth is skewed
  (skewness above 0; Bioengineering 3:21, 2016); noise is neither.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray


class Kind(enum.StrEnum):
    ECG = "ecg"
    PLETH = "pleth"


@dataclass(frozen=True)
class QualityScore:
    #: Sample index (stream-absolute) where the scored window ends.
    end: int
    score: float


def score_window(x: NDArray[np.float64], kind: Kind) -> float:
    x = x[~np.isnan(x)]
    if len(x) < 16:
        return 0.0
    spread = float(np.std(x))
    if spread < 1e-6 * max(1.0, float(np.max(np.abs(x)))) or np.ptp(x) == 0:
        return 0.0
    lo, hi = float(np.min(x)), float(np.max(x))
    clipped = float(np.mean((x == lo) | (x == hi)))
    clip_score = float(np.clip(1.0 - (clipped - 0.01) * 10, 0.0, 1.0))
    z = (x - x.mean()) / spread
    if kind is Kind.ECG:
        kurtosis = float(np.mean(z**4))
        shape = float(np.clip((kurtosis - 3.0) / 5.0, 0.0, 1.0))
    else:
        skewness = float(np.mean(z**3))
        shape = float(np.clip(skewness / 0.5 + 0.5, 0.0, 1.0))
    return clip_score * shape


class SignalQuality:
    def __init__(self, fs: float, kind: Kind, window_s: float = 5.0, hop_s: float = 1.0) -> None:
        self.kind = kind
        self._window = round(window_s * fs)
        self._hop = round(hop_s * fs)
        self._buffer = np.zeros(0)
        self._start = 0  # stream index of _buffer[0]
        self._next_end = self._window  # stream index where the next window ends

    def process(self, x: NDArray[np.float64]) -> list[QualityScore]:
        self._buffer = np.concatenate([self._buffer, np.asarray(x, dtype=np.float64)])
        out = []
        while self._start + len(self._buffer) >= self._next_end:
            lo = self._next_end - self._window - self._start
            window = self._buffer[lo : lo + self._window]
            out.append(QualityScore(self._next_end, score_window(window, self.kind)))
            self._next_end += self._hop
        keep_from = self._next_end - self._window - self._start
        if keep_from > 0:
            self._buffer = self._buffer[keep_from:]
            self._start += keep_from
        return out
