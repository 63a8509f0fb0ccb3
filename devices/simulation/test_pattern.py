"""A coded test signal in place of a patient: each waveform sample's value says which sample
it is, so that a receiver can check a waveform's whole path (device, serial link, reader,
gateway, WebRTC, the browser's trace) sample by sample.

The pleth is a ramp that climbs one step a sample and starts again every ``period_s``:

- as a stream (:meth:`TestPattern.pleth`, what the CMS50, Nonin and Datex simulators send),
  sample k at rate r is ``((k mod m) + 0.5) / m`` with ``m = round(period_s * r)``: a CMS50
  (``int(value * 120)``, m = 120 at 60 Hz) sends ``k mod 120``;
- by time (:meth:`TestPattern.pleth_at`, what the IntelliVue simulator samples) it is
  ``(t / period_s) mod 1``: at 125 Hz, ``(k mod 250) / 250``.

A sample lost, repeated or shifted breaks the ramp's step at that place. The ECG, and every
numeric, stay the synthetic patient's (the ECG is filtered for display at the gateway, so it
cannot carry a code; the pleth is shown as the device sent it).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from numpy.typing import NDArray

from devices.simulation.patient import Patient

#: One ramp: 120 samples of a 60 Hz oximeter, 250 of a 125 Hz monitor's pleth.
PERIOD_S = 2.0


def ramp_length(rate: float, period_s: float = PERIOD_S) -> int:
    """Samples in one ramp at ``rate``: the code of sample k is k mod this."""
    return round(period_s * rate)


@dataclass
class TestPattern(Patient):
    """A :class:`~devices.simulation.patient.Patient` whose pleth is the coded ramp."""

    __test__ = False  # not a test class, whatever its name says to pytest

    period_s: float = PERIOD_S
    #: Samples streamed so far at each rate: the ramp counts in whole samples, never in
    #: accumulated float time.
    _streamed: dict[float, int] = field(default_factory=dict, init=False, repr=False)

    def pleth(self, n: int, rate: float) -> NDArray[np.float64]:
        first = self._streamed.get(rate, 0)
        self._streamed[rate] = first + n
        self.time += n / rate
        self.advance_to(self.time)  # the numerics drift on as the patient's would
        m = ramp_length(rate, self.period_s)
        k = first + np.arange(n)
        return ((k % m) + 0.5) / m

    def pleth_at(self, t: NDArray[np.float64]) -> NDArray[np.float64]:
        return np.asarray(np.mod(np.asarray(t, dtype=np.float64) / self.period_s, 1.0))
