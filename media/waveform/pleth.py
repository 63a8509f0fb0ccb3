"""A streaming pleth pulse detector and pulse rate.

Per chunk, vectorised: band-pass 0.5-8 Hz, then the slope sum function (Computers in
Cardiology 2003: the sum of the rising slope over 125 ms), which peaks on each pulse's
upstroke. Candidates are
slope-sum peaks that are the largest within +-``LOOKAHEAD_S`` (stateless, so the result
never depends on chunking); each is decided ``LOOKAHEAD_S`` later against a fraction of the
median of recent pulses, lowered when a pulse is overdue. The reported instant is the
upstroke (the slope-sum peak), the fiducial least moved by the dicrotic wave.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

from media.waveform.filters import bandpass
from media.waveform.peaks import new_candidates

LOOKAHEAD_S = 0.25
REFRACTORY_S = 0.30
LEARN_S = 3.0
PULSE_FRACTION = 0.35
_HISTORY_S = 4.0


class PulseDetector:
    """Feed pleth chunks to :meth:`process`; get pulse sample indices (stream-absolute)."""

    def __init__(self, fs: float) -> None:
        self.fs = fs
        self._bp = bandpass(fs, 0.5, 8.0)
        self._window = max(1, round(0.125 * fs))
        self._nms = round(LOOKAHEAD_S * fs)
        self._refractory = round(REFRACTORY_S * fs)
        self._learn = round(LEARN_S * fs)
        self._keep = round(_HISTORY_S * fs)
        self._start = 0
        self._ssf = np.zeros(0)
        self._prev = 0.0
        self._rise_tail = np.zeros(self._window - 1)
        self._scanned = 1
        self._pending: list[int] = []
        self._peaks: list[float] = []
        self._last: int | None = None
        self._intervals: list[int] = []
        self.pulses: list[int] = []

    @property
    def _n(self) -> int:
        return self._start + len(self._ssf)

    def pulse_rate(self) -> float | None:
        if len(self._intervals) < 2:
            return None
        return 60.0 * self.fs / float(np.median(self._intervals[-8:]))

    def process(self, x: NDArray[np.float64]) -> list[int]:
        x = np.asarray(x, dtype=np.float64)
        if len(x) == 0:
            return []
        band = self._bp.process(np.nan_to_num(x))
        diff = np.diff(np.concatenate([[self._prev], band]))
        self._prev = float(band[-1])
        rise = np.concatenate([self._rise_tail, np.maximum(diff, 0.0)])
        csum = np.cumsum(rise)
        ssf = csum[self._window - 1 :] - np.concatenate([[0.0], csum[: -self._window]])
        self._rise_tail = rise[len(rise) - (self._window - 1) :]
        self._ssf = np.concatenate([self._ssf, ssf])
        self._find_candidates()
        out = self._decide()
        excess = min(
            len(self._ssf) - self._keep,
            min([*self._pending, self._n]) - self._start - self._nms - 2,
        )
        if excess > 0:
            self._ssf = self._ssf[excess:]
            self._start += excess
        return out

    def _find_candidates(self) -> None:
        found, self._scanned = new_candidates(self._ssf, self._start, self._scanned, self._nms)
        self._pending.extend(found)

    def _decide(self) -> list[int]:
        if self._n < self._learn:
            return []
        if not self._peaks:
            learn = self._ssf[: self._learn - self._start]
            halves = learn[: len(learn) // 6 * 6].reshape(6, -1).max(axis=1)
            self._peaks = [float(np.median(halves))]
        out = []
        while self._pending and self._pending[0] + self._nms <= self._n - 1:
            j = self._pending.pop(0)
            value = float(self._ssf[j - self._start])
            threshold = PULSE_FRACTION * float(np.median(self._peaks))
            if self._last is not None:
                interval = float(np.median(self._intervals[-8:])) if self._intervals else self.fs
                late = (j - self._last) / interval - 1.5
                if late > 0:
                    threshold *= 0.5 ** (1.0 + late)
                if j - self._last < self._refractory:
                    continue
            if value <= threshold:
                continue
            if self._last is not None:
                self._intervals.append(j - self._last)
                del self._intervals[:-16]
            self._last = j
            self._peaks.append(value)
            del self._peaks[:-8]
            out.append(j)
        self.pulses.extend(out)
        return out
