"""A synthetic patient: heart rate, SpO2 and respiration that drift as in a person, and ECG
and pleth waveforms drawn from the same beats.

Deterministic for a given seed, cheap enough to run simulators at device rate without a data
file. Heart rate follows a mean-reverting random walk with respiratory sinus arrhythmia;
SpO2 a slower one, clipped to 0-100. The ECG comes from the ECGSYN dynamical model
(:mod:`devices.simulation.ecgsyn`) driven by that heart rate and the respiration; each R peak
it produces yields, one pulse transit time later, a pleth pulse (systolic peak and dicrotic
wave). Waveforms are functions of absolute time, so several consumers at different sample
rates see the same patient.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
from numpy.typing import NDArray

from devices.simulation.alarms import AlarmScenarios
from devices.simulation.ecgsyn import EcgSyn

_DRIFT_STEP_S = 0.1


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
    advances. ``scenarios`` (alarms on demand, :mod:`devices.simulation.alarms`) hold values
    while they run: what every simulator of this patient then reports."""

    params: PatientParameters = field(default_factory=PatientParameters)
    scenarios: AlarmScenarios = field(default_factory=AlarmScenarios)

    def __post_init__(self) -> None:
        self._rng = np.random.default_rng(self.params.seed)
        self.time = 0.0  # the stream cursor of pleth()
        self._clock = 0.0  # how far the numerics have drifted
        self._ticks = 0
        self._hr_offset = 0.0
        self._spo2 = self.params.spo2
        # Heart-rate offset of each drift tick (recent ones), so that the heart rate at any
        # time is the same however the patient is queried.
        self._offsets: dict[int, float] = {0: 0.0}
        self._ecg = EcgSyn(self.heart_rate_at, self.params.resp_rate)

    @property
    def heart_rate(self) -> float:
        return self.heart_rate_at(self._clock)

    def heart_rate_at(self, t: float) -> float:
        """Beats a minute at time ``t``: the drifting rate of its tick, with the
        respiratory sinus arrhythmia."""
        self.advance_to(t)
        held = self.scenarios.value("heart_rate")
        if held is not None:
            return held
        offset = self._offsets.get(math.floor(t / _DRIFT_STEP_S), self._hr_offset)
        breath = math.sin(2 * math.pi * self.params.resp_rate / 60 * t)
        return self.params.heart_rate + offset + self.params.rsa_bpm / 2 * breath

    @property
    def spo2(self) -> float:
        held = self.scenarios.value("spo2")
        return self._spo2 if held is None else held

    @property
    def resp_rate(self) -> float:
        held = self.scenarios.value("resp_rate")
        return self.params.resp_rate if held is None else held

    def held(self, key: str, usual: float) -> float:
        """A parameter the patient model does not vary (NIBP, temperature): ``usual``, or
        what a running scenario holds it at."""
        held = self.scenarios.value(key)
        return usual if held is None else held

    @property
    def probe_off(self) -> bool:
        """A running scenario has taken the SpO2 probe off."""
        return self.scenarios.probe_off

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
            self._offsets[self._ticks] = self._hr_offset
            self._offsets.pop(self._ticks - 3000, None)  # keep five minutes

    def _beats_near(self, t: NDArray[np.float64]) -> list[float]:
        if not len(t):
            return []
        self.advance_to(float(t[-1]))
        self._ecg.extend(float(t[-1]))  # the R peaks up to the last sample
        lo, hi = float(t[0]) - 1.5, float(t[-1])
        return [b for b in self._ecg.r_peaks if lo <= b <= hi]

    def ecg_at(self, t: NDArray[np.float64]) -> NDArray[np.float64]:
        """Lead II in mV at times ``t`` (ascending; at most 30 s back)."""
        if len(t):
            self.advance_to(float(t[-1]))
        return self._ecg.at(t)

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
