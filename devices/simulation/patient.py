"""A synthetic patient: heart rate, SpO2 and respiration that drift as in a person, and the
beat times from which waveforms are drawn.

Deterministic for a given seed, cheap enough to run a simulator at device rate without a
data file. Heart rate follows a mean-reverting random walk with respiratory sinus arrhythmia;
SpO2 a slower one, clipped to 0-100; pleth is a beat-synchronous pulse (systolic peak and a
dicrotic wave) delayed by the pulse transit time, with a respiratory baseline.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
from numpy.typing import NDArray


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
    """Advance with :meth:`pleth` (one call per block of samples); read the numerics any time."""

    params: PatientParameters = field(default_factory=PatientParameters)

    def __post_init__(self) -> None:
        self._rng = np.random.default_rng(self.params.seed)
        self.time = 0.0
        self._hr_offset = 0.0
        self._spo2 = self.params.spo2
        self._next_beat = 0.3
        self._beats: list[float] = []

    @property
    def heart_rate(self) -> float:
        breath = math.sin(2 * math.pi * self.params.resp_rate / 60 * self.time)
        return self.params.heart_rate + self._hr_offset + self.params.rsa_bpm / 2 * breath

    @property
    def spo2(self) -> float:
        return self._spo2

    def _drift(self, dt: float) -> None:
        # Ornstein-Uhlenbeck steps: wander, but come back to the set point.
        self._hr_offset += -0.05 * self._hr_offset * dt + 0.6 * math.sqrt(dt) * self._rng.normal()
        target = self.params.spo2
        self._spo2 += -0.02 * (self._spo2 - target) * dt + 0.08 * math.sqrt(dt) * self._rng.normal()
        self._spo2 = min(100.0, max(0.0, self._spo2))

    def pleth(self, n: int, rate: float) -> NDArray[np.float64]:
        """The next ``n`` pleth samples at ``rate`` Hz, in 0..1."""
        t = self.time + np.arange(n) / rate
        end = self.time + n / rate
        while self._next_beat < end + 1.0:
            self._beats.append(self._next_beat)
            self._next_beat += 60.0 / max(30.0, self.heart_rate)
        out = np.zeros(n)
        for beat in self._beats:
            x = t - beat - self.params.pulse_transit_s
            out += np.exp(-((x - 0.12) ** 2) / (2 * 0.05**2))
            out += 0.35 * np.exp(-((x - 0.38) ** 2) / (2 * 0.07**2))
        self._beats = [b for b in self._beats if b > end - 2.0]
        breath = 0.08 * np.sin(2 * np.pi * self.params.resp_rate / 60 * t)
        self._drift(n / rate)
        self.time = end
        return np.clip(0.15 + 0.7 * out + breath, 0.0, 1.0)
