"""A streaming QRS detector (Pan-Tompkins features, decisions within 300 ms of the R peak).

Per chunk, vectorised: band-pass 5-15 Hz, five-point derivative, square, 150 ms moving
integration. Candidates are integration peaks that are also the largest within +-110 ms
(a stateless non-maximum suppression, so candidates never depend on chunking). The R peak of
a candidate is placed at the first strong band-passed deflection before its integration peak
(for paced and wide beats, the spike and upstroke where annotators mark them).

Candidates are decided one at a time in stream order, against adaptive signal and noise
levels (Pan-Tompkins):

- a strong candidate (at least ``HOLD_BELOW`` of the signal level) is decided ``LOOKAHEAD_S``
  after its integration peak;
- a weaker one is held until ``HOLD_S`` after its R peak, and dropped as noise if a larger
  integration peak comes meanwhile: a tall P wave or a noise spike just before a small QRS
  (MIT-BIH 108) is then not taken for the beat;
- the threshold is lowered when a beat is overdue (1.66 median RR), T waves are rejected by
  slope within 360 ms of the last beat (so rhythms up to 166 beats a minute are never taken
  for T waves), and in noise (noise level above ``NOISY_LEVEL`` of the signal level) a weak
  candidate (under ``NOISY_WEAK``) sooner than ``NOISY_EARLY`` of the median RR is noise:
  premature ectopic beats are large in this feature, muscle artefact is not (MIT-BIH 105).

The integration peak trails the R peak by about 90 ms (up to 190 ms for a wide QRS), so every
beat is reported at most 300 ms after its R peak. Decisions wait for ``LEARN_S`` of signal to
set the first levels.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from media.waveform.filters import bandpass
from media.waveform.peaks import new_candidates

#: Candidates must be the largest integration peak within +-this: also the decision delay.
LOOKAHEAD_S = 0.11
REFRACTORY_S = 0.20
#: Where between the noise and signal levels the detection threshold sits.
THRESHOLD_FRACTION = 0.2
#: Within T_WAVE_S of a beat, a candidate needs this share of its slope (else: a T wave).
T_SLOPE = 0.5
T_WAVE_S = 0.36
#: The R peak is the first deflection reaching this share of the largest one.
LOCATE_FRACTION = 0.4
#: How far before the integration peak the R peak is searched (wide and paced QRS need it).
R_SEARCH_S = 0.19
#: Candidates below this share of the signal level wait until HOLD_S after their R peak
#: for a larger integration peak (measured: the same accuracy from 0.7 to 2.0; 236 ms median
#: latency at 0.8, 300 ms when every candidate waits).
HOLD_BELOW = 0.8
HOLD_S = 0.30
#: In noise, weak premature candidates are noise (see the module docstring).
NOISY_LEVEL = 0.05
NOISY_WEAK = 0.5
NOISY_EARLY = 0.6
LEARN_S = 2.0
_HISTORY_S = 3.0


@dataclass(frozen=True)
class Beat:
    #: Sample index of the R peak in the stream (0 is the first sample ever processed).
    index: int
    #: Sample index at which the beat was decided (its latency is ``decided_at - index``).
    decided_at: int


class QrsDetector:
    """Feed chunks of one ECG channel (mV) to :meth:`process`; get the beats decided so far."""

    def __init__(self, fs: float) -> None:
        self.fs = fs
        self._bp = bandpass(fs, 5.0, 15.0)
        self._window = max(1, round(0.150 * fs))
        self._nms = round(LOOKAHEAD_S * fs)
        self._delay = self._nms
        self._refractory = round(REFRACTORY_S * fs)
        self._t_wave = round(T_WAVE_S * fs)
        self._learn = round(LEARN_S * fs)
        self._keep = round(_HISTORY_S * fs)
        # History, with the absolute index of its first sample.
        self._start = 0
        self._band = np.zeros(0)
        self._feat = np.zeros(0)
        self._sq_tail = np.zeros(self._window - 1)
        self._bp_tail = np.zeros(4)
        self._scanned = 1  # next absolute index that may be a candidate
        self._pending: list[tuple[int, int, int]] = []  # candidate indices awaiting their decision
        self._spk = 0.0
        self._npk = 0.0
        self._signal_peaks: list[float] = []
        self._noise_peaks: list[float] = []
        self._learned = False
        self._last_beat: int | None = None
        self._last_slope = 0.0
        self._rr: list[int] = []
        self.beats: list[Beat] = []

    @property
    def _n(self) -> int:
        return self._start + len(self._feat)

    def heart_rate(self) -> float | None:
        """Beats a minute over the last eight RR intervals (median), if there are some."""
        if len(self._rr) < 2:
            return None
        return 60.0 * self.fs / statistics.median(self._rr[-8:])

    def process(self, x: NDArray[np.float64]) -> list[Beat]:
        x = np.asarray(x, dtype=np.float64)
        if len(x) == 0:
            return []
        band = self._bp.process(np.nan_to_num(x) if np.isnan(x).any() else x)
        ext = np.concatenate([self._bp_tail, band])
        deriv = (2 * ext[4:] + ext[3:-1] - ext[1:-3] - 2 * ext[:-4]) / 8.0
        self._bp_tail = ext[-4:]
        sq = np.concatenate([self._sq_tail, deriv * deriv])
        csum = np.cumsum(sq)
        feat = (
            csum[self._window - 1 :] - np.concatenate([[0.0], csum[: -self._window]])
        ) / self._window
        self._sq_tail = sq[len(sq) - (self._window - 1) :] if self._window > 1 else np.zeros(0)
        self._band = np.concatenate([self._band, band])
        self._feat = np.concatenate([self._feat, feat])
        self._find_candidates()
        out = self._decide()
        self._trim()
        return out

    def _find_candidates(self) -> None:
        found, self._scanned = new_candidates(self._feat, self._start, self._scanned, self._nms)
        for j in found:
            lo = max(self._start, j - round(R_SEARCH_S * self.fs))
            r = lo + self._locate(np.abs(self._band[lo - self._start : j - self._start + 1]))
            self._pending.append((j, r, r + round(HOLD_S * self.fs)))

    def _decide(self) -> list[Beat]:
        n = self._n
        if not self._learned:
            if n < self._learn:
                return []
            learn = self._feat[: self._learn - self._start]
            # Median of half-second maxima: one artefact cannot set the signal level.
            halves = learn[: len(learn) // 4 * 4].reshape(4, -1).max(axis=1)
            self._spk = float(np.median(halves)) / 2.0
            self._npk = float(np.median(learn)) / 2.0
            self._signal_peaks = [self._spk]
            self._noise_peaks = [self._npk]
            self._learned = True
        out: list[Beat] = []
        while self._pending:
            j, r, hold_until = self._pending[0]
            if j + self._delay > n - 1:
                break
            value = float(self._feat[j - self._start])
            decided_at = j + self._delay
            if value < HOLD_BELOW * self._spk and hold_until > decided_at:
                # Weak: wait (while later candidates queue behind) for a larger peak that
                # would make this one a P wave or a spike before the real QRS.
                if hold_until > n - 1:
                    break
                decided_at = hold_until
                later = self._feat[j + 1 - self._start : hold_until + 1 - self._start]
                if float(later.max()) > value:
                    self._pending.pop(0)
                    self._noise(value)
                    continue
            self._pending.pop(0)
            beat = self._judge(j, r, decided_at=decided_at)
            if beat is not None:
                out.append(beat)
        self.beats.extend(out)
        return out

    def _judge(self, j: int, r: int, decided_at: int) -> Beat | None:
        value = float(self._feat[j - self._start])
        threshold = self._npk + THRESHOLD_FRACTION * (self._spk - self._npk)
        last = self._last_beat
        overdue = False
        if last is not None:
            rr = self._rr_typical() if self._rr else self.fs
            late = (j - last) / rr - 1.66
            if late > 0:
                # A beat is due: halve the threshold, and again for every further interval
                # (Pan-Tompkins search back, made causal), never below the noise level.
                overdue = True
                threshold = max(self._npk, threshold * 0.5 ** (1.0 + late))
        if value <= threshold or (last is not None and j - last < self._refractory):
            self._noise(value)
            return None
        # The QRS lies before the integration peak: search the band-passed signal there.
        lo = max(self._start, j - round(R_SEARCH_S * self.fs))
        seg = self._band[lo - self._start : j - self._start + 1]
        slope = float(np.max(np.abs(np.diff(seg)))) if len(seg) > 1 else 0.0
        if last is not None and j - last < self._t_wave and slope < T_SLOPE * self._last_slope:
            self._noise(value)  # a T wave
            return None
        if (
            last is not None
            and self._rr
            and j - last < NOISY_EARLY * self._rr_typical()
            and value < NOISY_WEAK * self._spk
            and self._npk > NOISY_LEVEL * self._spk
        ):
            self._noise(value)  # weak, premature and in noise: artefact
            return None
        if overdue:
            # Found by the lowered threshold: let it pull the signal level down at once.
            self._signal_peaks.append(value)
        self._signal_peaks.append(value)
        del self._signal_peaks[:-8]
        self._spk = statistics.median(self._signal_peaks)
        if last is not None:
            self._rr.append(j - last)
            del self._rr[:-16]
        self._last_beat, self._last_slope = j, slope
        return Beat(r, decided_at)

    def _rr_typical(self) -> float:
        # The median: one interval spanning a signal loss must not hold the threshold up.
        return float(statistics.median(self._rr[-8:]))

    def _locate(self, magnitude: NDArray[np.float64]) -> int:
        """Offset of the R peak in a stretch of rectified band-passed signal."""
        # The first strong deflection, then its local peak: for a paced or wide beat that is
        # the spike and upstroke where annotators mark it, not the later deep trough.
        first = int(np.argmax(magnitude >= LOCATE_FRACTION * float(magnitude.max())))
        near = round(0.02 * self.fs)
        return first + int(np.argmax(magnitude[first : first + near + 1]))

    def _noise(self, value: float) -> None:
        self._noise_peaks.append(value)
        del self._noise_peaks[:-8]
        self._npk = statistics.median(self._noise_peaks)

    def _trim(self) -> None:
        excess = len(self._feat) - self._keep
        oldest_needed = min([*(p[0] for p in self._pending), self._n]) - round(R_SEARCH_S * self.fs)
        excess = min(excess, oldest_needed - self._start - self._nms - 2)
        if excess > 0:
            self._band = self._band[excess:]
            self._feat = self._feat[excess:]
            self._start += excess
