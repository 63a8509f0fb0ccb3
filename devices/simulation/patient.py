"""A synthetic patient: heart rate, SpO2 and respiration that drift as in a person, and ECG
and pleth waveforms drawn from the same beats.

Deterministic for a given seed, cheap enough to run simulators at device rate without a data
file. Heart rate follows a mean-reverting random walk with respiratory sinus arrhythmia;
SpO2 a slower one, clipped to 0-100. Each beat yields an ECG complex (P, Q, R, S and T waves
as Gaussians at their usual offsets from the R peak, after the morphology of McSharry's
ECGSYN) and, one pulse transit time later, a pleth pulse (systolic peak and dicrotic wave).
Waveforms are functions of absolute time, so several consumers at different sample rates
see the same patient.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
from numpy.typing import NDArray

_DRIFT_STEP_S = 0.1

# (offset from the R peak in s, amplitude in mV, width in s): P, Q, R, S, T.
_ECG_WAVES = (
    (-0.20, 0.15, 0.025),
    (-0.035, -0.12, 0.010),
    (0.0, 1.20, 0.010),
    (0.035, -0.25, 0.012),
    (0.28, 0.30, 0.045),
)


@dataclass
class PatientParameters:
    heart_rate: float = 72.0
    spo2: float = 97.0
    resp_rate: float = 14.0
    #: Peak-to-peak heart-rate swing with breathing (respiratory sinus arrhythmia).
    rsa_bpm: float = 3.0
    pulse_transit_s: float = 0.22
    seed: int = 7


@dataclass
class Patient:
    """Query waveforms with :meth:`ecg_at`/:meth:`pleth_at` (absolute seconds), or stream
    pleth with :meth:`pleth`; numerics (:attr:`heart_rate`, :attr:`spo2`) drift as time
    advances."""

    params: PatientParameters = field(default_factory=PatientParameters)

    def __post_init__(self) -> None:
        self._rng = np.random.default_rng(self.params.seed)
        self.time = 0.0  # the stream cursor of pleth()
        self._clock = 0.0  # how far the numerics have drifted
        self._ticks = 0
        self._hr_offset = 0.0
        self._spo2 = self.params.spo2
        self._next_beat = 0.3
        self._beats: list[float] = []

    @property
    def heart_rate(self) -> float:
        breath = math.sin(2 * math.pi * self.params.resp_rate / 60 * self._clock)
        return self.params.heart_rate + self._hr_offset + self.params.rsa_bpm / 2 * breath

    @property
    def spo2(self) -> float:
        return self._spo2

    @property
    def resp_rate(self) -> float:
        return self.params.resp_rate

    def advance_to(self, t: float) -> None:
        """Drift the numerics to time ``t`` and lay out the beats a little beyond it."""
        # Drift on a fixed grid, so that the same patient results however time is queried.
        dt = _DRIFT_STEP_S
        while self._ticks < math.floor(t / dt):
            # Ornstein-Uhlenbeck steps: wander, but come back to the set point.
            noise = self._rng.normal(size=2)
            self._hr_offset += -0.05 * self._hr_offset * dt + 0.6 * math.sqrt(dt) * noise[0]
            self._spo2 += (
                -0.02 * (self._spo2 - self.params.spo2) * dt + 0.08 * math.sqrt(dt) * noise[1]
            )
            self._spo2 = min(100.0, max(0.0, self._spo2))
            self._ticks += 1
            self._clock = self._ticks * dt
        while self._next_beat < t + 1.5:
            self._beats.append(self._next_beat)
            self._next_beat += 60.0 / max(30.0, self.heart_rate)
        # Older beats no longer shape any sample a consumer can still ask for.
        self._beats = [b for b in self._beats if b > t - 10.0]

    def _beats_near(self, t: NDArray[np.float64]) -> list[float]:
        if not len(t):
            return []
        self.advance_to(float(t[-1]))
        lo, hi = float(t[0]) - 1.5, float(t[-1]) + 1.0
        return [b for b in self._beats if lo <= b <= hi]

    def ecg_at(self, t: NDArray[np.float64]) -> NDArray[np.float64]:
        """Lead II in mV at times ``t`` (ascending), with a respiratory baseline."""
        out = 0.05 * np.sin(2 * np.pi * self.params.resp_rate / 60 * t)
        for beat in self._beats_near(t):
            x = t - beat
            for offset, amplitude, width in _ECG_WAVES:
                out += amplitude * np.exp(-((x - offset) ** 2) / (2 * width**2))
        return out

    def pleth_at(self, t: NDArray[np.float64]) -> NDArray[np.float64]:
        """Pleth in 0..1 at times ``t`` (ascending)."""
        out = np.zeros(len(t))
        for beat in self._beats_near(t):
            x = t - beat - self.params.pulse_transit_s
            out += np.exp(-((x - 0.12) ** 2) / (2 * 0.05**2))
            out += 0.35 * np.exp(-((x - 0.38) ** 2) / (2 * 0.07**2))
        breath = 0.08 * np.sin(2 * np.pi * self.params.resp_rate / 60 * t)
        return np.clip(0.15 + 0.7 * out + breath, 0.0, 1.0)

    def pleth(self, n: int, rate: float) -> NDArray[np.float64]:
        """The next ``n`` pleth samples at ``rate`` Hz (a stream cursor of its own)."""
        t = self.time + np.arange(n) / rate
        self.time += n / rate
        return self.pleth_at(t)
