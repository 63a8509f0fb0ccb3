"""A patient monitor's HL7 gateway, simulated: every ``period_s`` one IHE PCD-01 ORU^R01 with
the numerics and the last period of ECG II (500 Hz) and pleth (125 Hz), sent over MLLP to a
listener. It waits for each ACK and reconnects with backoff when the link fails."""

from __future__ import annotations

import asyncio
import time

import numpy as np

from devices import codes
from devices.protocols.hl7_pcd import Numeric, Wave, build_oru
from devices.simulation.patient import Patient
from devices.simulation.simulators import Faults
from devices.transports.mllp_tcp import MllpSender

ECG_RATE = 500.0
PLETH_RATE = 125.0


class Hl7MonitorSimulator:
    name = "hl7"

    def __init__(
        self,
        host: str,
        port: int,
        patient: Patient | None = None,
        faults: Faults | None = None,
        period_s: float = 1.0,
    ) -> None:
        self.sender = MllpSender(host, port)
        self.patient = patient or Patient()
        self.faults = faults or Faults()
        self.period_s = period_s
        self.acks: list[str] = []
        self.failures = 0
        self._t = 0.0  # the patient's time at the start of the next message

    def message(self, wall_time: float) -> str:
        """The next ORU^R01; its waves end at ``wall_time``."""
        p, t0, period = self.patient, self._t, self.period_s
        ecg = p.ecg_at(t0 + np.arange(int(ECG_RATE * period)) / ECG_RATE)
        pleth = p.pleth_at(t0 + np.arange(int(PLETH_RATE * period)) / PLETH_RATE)
        self._t += period
        p.advance_to(self._t)
        off = self.faults.probe_off
        numerics = [
            Numeric(codes.HEART_RATE, round(p.heart_rate)),
            Numeric(codes.SPO2, None if off else round(p.spo2)),
            Numeric(codes.PULSE_RATE, None if off else round(p.heart_rate)),
            Numeric(codes.RESP_RATE, round(p.resp_rate)),
            Numeric(codes.NIBP_SYS, 118),
            Numeric(codes.NIBP_DIA, 76),
            Numeric(codes.NIBP_MEAN, 90),
            Numeric(codes.TEMPERATURE, 36.8),
        ]
        start = wall_time - period
        waves = [Wave(codes.ECG_II, ECG_RATE, ecg.tolist(), start)]
        if not off:
            waves.append(Wave(codes.PLETH, PLETH_RATE, pleth.tolist(), start))
        return build_oru(numerics, waves, wall_time)

    async def run(self) -> None:
        """Send until cancelled."""
        attempt = 0
        try:
            while True:
                noisy = self.faults.spoil(b"", self.period_s)  # noise bursts, if enabled
                try:
                    self.acks.append(await self.sender.send(self.message(time.time()), noisy))
                    attempt = 0
                    await asyncio.sleep(self.period_s)
                except (OSError, TimeoutError):
                    self.failures += 1
                    attempt += 1
                    await asyncio.sleep(min(5.0, 0.1 * 2**attempt))
        finally:
            await self.sender.close()
