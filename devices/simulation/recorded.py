"""A patient replayed from a real recording (WFDB), for simulators that should show what a
real heart did: its ECG (lead II, MLII, else the first signal), its pleth when the record has
one, its heart rate from the reference beat annotations when there are some, else from the
ECG's periodicity. The recording loops. SpO2 stays synthetic (records rarely carry it).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from numpy.typing import NDArray

from devices.errors import RecordError
from devices.recordings import BEAT_SYMBOLS, Record, read_annotations, read_record
from devices.simulation.patient import Patient, PatientParameters


def _fill_gaps(x: NDArray[np.float64]) -> NDArray[np.float64]:
    bad = np.isnan(x)
    if bad.all():
        raise RecordError("signal has no valid sample")
    if bad.any():
        idx = np.arange(len(x))
        x = x.copy()
        x[bad] = np.interp(idx[bad], idx[~bad], x[~bad])
    return x


class RecordedPatient(Patient):
    def __init__(
        self, record: Record, beats_s: NDArray[np.float64] | None, params: PatientParameters
    ) -> None:
        super().__init__(params)
        self.record = record
        self.duration = len(record.adc) / record.fs
        ecg = record.index("II", "MLII", "ECG", "ECG II")
        self._ecg_signal = _fill_gaps(record.physical(0 if ecg is None else ecg))
        pleth = record.index("PLETH", "PPG")
        self._pleth: NDArray[np.float64] | None = None
        if pleth is not None:
            raw = _fill_gaps(record.physical(pleth))
            lo, hi = np.percentile(raw, [1, 99])
            self._pleth = np.clip((raw - lo) / (hi - lo or 1.0), 0.0, 1.0)
        self._beats_s = beats_s if beats_s is not None and len(beats_s) > 2 else None

    @classmethod
    def from_path(cls, base: Path, params: PatientParameters | None = None) -> RecordedPatient:
        """Read ``base.hea`` (and ``base.atr`` when present). Raises RecordError."""
        record = read_record(base)
        beats = None
        if base.with_suffix(".atr").is_file():
            samples, symbols = read_annotations(base)
            keep = [i for i, s in enumerate(symbols) if s in BEAT_SYMBOLS]
            beats = samples[keep] / record.fs
        return cls(record, beats, params or PatientParameters())

    def _sample(self, signal: NDArray[np.float64], t: NDArray[np.float64]) -> NDArray[np.float64]:
        position = (np.asarray(t) % self.duration) * self.record.fs
        return np.interp(position, np.arange(len(signal)), signal)

    def ecg_at(self, t: NDArray[np.float64]) -> NDArray[np.float64]:
        if len(t):
            self.advance_to(float(t[-1]))
        return self._sample(self._ecg_signal, t)

    def pleth_at(self, t: NDArray[np.float64]) -> NDArray[np.float64]:
        if self._pleth is None:
            return super().pleth_at(t)  # synthetic pulses (at the synthetic rate)
        if len(t):
            self.advance_to(float(t[-1]))
        return self._sample(self._pleth, t)

    def heart_rate_at(self, t: float) -> float:
        self.advance_to(t)
        t = t % self.duration
        if self._beats_s is not None:
            i = int(np.searchsorted(self._beats_s, t))
            window = self._beats_s[max(0, i - 4) : i + 4]
            return float(60.0 / np.median(np.diff(window)))
        return self._rate_from_ecg(t)

    def _rate_from_ecg(self, t: float) -> float:
        """The dominant beat period of an 8-second window (autocorrelation)."""
        fs = self.record.fs
        start = int(max(0.0, t - 8.0) * fs)
        x = self._ecg_signal[start : start + int(8 * fs)]
        x = x - x.mean()
        spectrum = np.fft.rfft(x, 2 * len(x))
        ac = np.fft.irfft(spectrum * np.conj(spectrum))[: len(x)]
        lo, hi = int(0.3 * fs), min(len(ac) - 1, int(2.0 * fs))  # 30 to 200 beats a minute
        lag = lo + int(np.argmax(ac[lo:hi]))
        return 60.0 * fs / lag
