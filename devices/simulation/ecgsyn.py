"""The ECGSYN dynamical ECG model (IEEE Trans Biomed Eng 50(3):289-294, 2003).

A trajectory circles the unit limit cycle in the (x, y) plane at the angular speed of the
heart rate; each wave of the complex (P, Q, R, S, T) is a Gaussian event at a fixed angle
that pushes z, the ECG, while z is pulled back to a respiratory baseline::

    dx/dt = a x - w y,  dy/dt = a y + w x,  a = 1 - sqrt(x^2 + y^2)
    dz/dt = -sum_i a_i dtheta_i exp(-dtheta_i^2 / 2 b_i^2) - z

Integrated with RK4 on a fixed grid, so the output is the same however it is queried. The
raw z is scaled to ``Z_RANGE_MV`` as ECGSYN does, and the respiratory baseline wander is added
in millivolts after scaling (in raw units it would swamp the complex). An R
peak is where the angle crosses zero; the pleth of the same patient is drawn from those
times, which keeps the two beat-locked.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
from numpy.typing import NDArray

# P, Q, R, S, T: angle (rad), amplitude, width (rad) at 60 beats a minute.
_THETA = (-math.pi / 3, -math.pi / 12, 0.0, math.pi / 12, math.pi / 2)
_A = (1.2, -5.0, 30.0, -7.5, 0.75)
_B = (0.25, 0.1, 0.1, 0.1, 0.4)
#: The model's output is scaled to this range (mV), as ECGSYN does.
Z_RANGE_MV = (-0.4, 1.2)
_KEEP_S = 30.0


Vec3 = tuple[float, float, float]


def _step(s: Vec3, k: Vec3, h: float) -> Vec3:
    return (s[0] + h * k[0], s[1] + h * k[1], s[2] + h * k[2])


class EcgSyn:
    """Integrates the model forward on demand. ``heart_rate(t)`` is read at every step."""

    def __init__(
        self,
        heart_rate: Callable[[float], float],
        resp_rate_per_min: float = 14.0,
        fs: float = 500.0,
        baseline_mv: float = 0.05,
    ) -> None:
        self._heart_rate = heart_rate
        self.fs = fs
        self._dt = 1.0 / fs
        self._f_resp = resp_rate_per_min / 60.0
        self._baseline = baseline_mv
        self._state: Vec3 = (-1.0, 0.0, 0.0)  # angle pi: between T and the next P
        self._t = 0.0
        self._times: list[float] = [0.0]
        self._values: list[float] = [0.0]
        self.r_peaks: list[float] = []
        self._scale, self._offset = self._calibrate()

    def _calibrate(self) -> tuple[float, float]:
        """Scale the raw z to ``Z_RANGE_MV``, from a steady 60 beats a minute."""
        probe = EcgSyn.__new__(EcgSyn)
        probe.__dict__.update(self.__dict__)
        probe._heart_rate = lambda _t: 60.0
        probe._baseline = 0.0
        probe._times, probe._values, probe.r_peaks = [0.0], [0.0], []
        probe._scale, probe._offset = 1.0, 0.0
        probe.extend(6.0)
        steady = np.asarray(probe._values[int(2 * self.fs) :])
        lo, hi = float(steady.min()), float(steady.max())
        scale = (Z_RANGE_MV[1] - Z_RANGE_MV[0]) / (hi - lo)
        return scale, Z_RANGE_MV[0] - lo * scale

    def _derivative(self, state: Vec3, t: float, omega: float, rate_factor: float) -> Vec3:
        x, y, z = state
        alpha = 1.0 - math.sqrt(x * x + y * y)
        theta = math.atan2(y, x)
        dz = 0.0
        for i in range(5):
            # P and T move with the rate (their intervals shorten); widths scale with sqrt.
            centre = _THETA[i] * (rate_factor if i in (0, 4) else 1.0)
            width = _B[i] * rate_factor
            d = (theta - centre + math.pi) % (2 * math.pi) - math.pi
            dz -= _A[i] * d * math.exp(-d * d / (2 * width * width))
        return (alpha * x - omega * y, alpha * y + omega * x, dz - z)

    def extend(self, until: float) -> None:
        """Integrate up to time ``until`` (seconds)."""
        dt = self._dt
        while self._t + dt <= until:
            hr = max(20.0, min(250.0, self._heart_rate(self._t)))
            omega = 2 * math.pi * hr / 60.0
            rate_factor = math.sqrt(hr / 60.0)
            s, t = self._state, self._t
            k1 = self._derivative(s, t, omega, rate_factor)
            k2 = self._derivative(_step(s, k1, dt / 2), t + dt / 2, omega, rate_factor)
            k3 = self._derivative(_step(s, k2, dt / 2), t + dt / 2, omega, rate_factor)
            k4 = self._derivative(_step(s, k3, dt), t + dt, omega, rate_factor)
            slope = (
                k1[0] + 2 * k2[0] + 2 * k3[0] + k4[0],
                k1[1] + 2 * k2[1] + 2 * k3[1] + k4[1],
                k1[2] + 2 * k2[2] + 2 * k3[2] + k4[2],
            )
            new = _step(s, slope, dt / 6)
            if s[1] < 0.0 <= new[1] and new[0] > 0.0:  # angle crossed zero: an R peak
                self.r_peaks.append(t + dt * (-s[1]) / (new[1] - s[1]))
            self._state = new
            self._t = t + dt
            self._times.append(self._t)
            wander = self._baseline * math.sin(2 * math.pi * self._f_resp * self._t)
            self._values.append(new[2] * self._scale + self._offset + wander)
        if self._times[0] < self._t - 2 * _KEEP_S:
            cut = int(_KEEP_S * self.fs)
            del self._times[:cut], self._values[:cut]
            self.r_peaks = [r for r in self.r_peaks if r > self._t - _KEEP_S]

    def at(self, t: NDArray[np.float64]) -> NDArray[np.float64]:
        """ECG in mV at times ``t`` (within the last 30 s, or ahead: integrated first)."""
        if len(t):
            self.extend(float(np.max(t)) + self._dt)
        return np.interp(t, self._times, self._values)
