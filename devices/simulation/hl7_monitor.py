"""A patient monitor's HL7 gateway, simulated: every ``period_s`` one IHE PCD-01 ORU^R01 with
the numerics and the last period of ECG II (500 Hz) and pleth (125 Hz), sent over MLLP to a
listener, and an IHE PCD-04 ORU^R40 whenever one of the monitor's alarms starts or ends (its
limits are the adult defaults, with their delays; a probe off is a technical alarm). It
waits for each ACK and reconnects with backoff when the link fails.

Its unit settings and invasive lines (:class:`~devices.simulation.monitor_setup.MonitorSetup`)
say how it reports: NIBP and the invasive pressures in mm[Hg] or kPa, the temperature in Cel
or [degF] (OBX-6 in UCUM), and with lines in, ABP, PAP and CVP."""

from __future__ import annotations

import asyncio
import time

import numpy as np

from devices import codes
from devices.alarms import conditions
from devices.alarms.engine import AlarmEngine
from devices.model import AlarmKind, AlarmPriority, DeviceAlarm, DeviceAlarms, Observation
from devices.protocols.hl7_acm import build_r40
from devices.protocols.hl7_pcd import Numeric, Wave, build_oru
from devices.simulation.monitor_setup import MonitorSetup
from devices.simulation.patient import Patient
from devices.simulation.simulators import Faults
from devices.transports.mllp_tcp import MllpSender

ECG_RATE = 500.0
PROBE_OFF = DeviceAlarm(
    conditions.PROBE_OFF, AlarmPriority.LOW, AlarmKind.TECHNICAL, codes.SPO2, "SpO2 PROBE OFF"
)
PLETH_RATE = 125.0
_BY_KEY = {code.key: code for code in codes.ALL_CODES}


class Hl7MonitorSimulator:
    name = "hl7"

    def __init__(
        self,
        host: str,
        port: int,
        patient: Patient | None = None,
        faults: Faults | None = None,
        period_s: float = 1.0,
        setup: MonitorSetup | None = None,
    ) -> None:
        self.sender = MllpSender(host, port)
        self.setup = setup or MonitorSetup()
        self.patient = patient or Patient()
        self.faults = faults or Faults()
        self.period_s = period_s
        self.acks: list[str] = []
        self.failures = 0
        self._t = 0.0  # the patient's time at the start of the next message
        #: The monitor's own alarms, and the ORU^R40s owed for them.
        self.alarms = AlarmEngine()
        self.alarm_messages: list[str] = []

    def message(self, wall_time: float) -> str:
        """The next ORU^R01; its waves end at ``wall_time``."""
        p, t0, period = self.patient, self._t, self.period_s
        ecg = p.ecg_at(t0 + np.arange(int(ECG_RATE * period)) / ECG_RATE)
        pleth = p.pleth_at(t0 + np.arange(int(PLETH_RATE * period)) / PLETH_RATE)
        self._t += period
        p.advance_to(self._t)
        off = self.faults.probe_off or p.probe_off
        numerics = [
            Numeric(codes.HEART_RATE, round(p.heart_rate)),
            Numeric(codes.SPO2, None if off else round(p.spo2)),
            Numeric(codes.PULSE_RATE, None if off else round(p.heart_rate)),
            Numeric(codes.RESP_RATE, round(p.resp_rate)),
            Numeric(codes.NIBP_SYS, round(p.held("nibp_sys", 118))),
            Numeric(codes.NIBP_DIA, round(p.held("nibp_dia", 76))),
            Numeric(codes.NIBP_MEAN, round(p.held("nibp_mean", 90))),
            Numeric(codes.TEMPERATURE, round(p.held("temperature", 36.8), 1)),
        ]
        self._check_alarms(numerics, off, wall_time)
        start = wall_time - period
        waves = [Wave(codes.ECG_II, ECG_RATE, ecg.tolist(), start)]
        if not off:
            waves.append(Wave(codes.PLETH, PLETH_RATE, pleth.tolist(), start))
        return build_oru(self._as_set_up(numerics), waves, wall_time)

    def _as_set_up(self, numerics: list[Numeric]) -> list[Numeric]:
        """The numerics as this monitor reports them: with its lines' pressures, and each
        in the unit it is set to (one decimal, as a monitor shows kPa and degF)."""
        setup = self.setup
        lines = setup.invasive_pressures(self.patient)
        numerics = numerics + [Numeric(_BY_KEY[key], round(mmhg)) for key, mmhg in lines]
        out = []
        for numeric in numerics:
            value, unit = numeric.value, numeric.unit
            if numeric.code.ucum == "mm[Hg]" and setup.pressure_unit != "mm[Hg]":
                value, unit = setup.pressure(value), setup.pressure_unit
            elif numeric.code.ucum == "Cel" and setup.temperature_unit != "Cel":
                value, unit = setup.temperature(value), setup.temperature_unit
            if unit is not None and value is not None:
                value = round(value, 1)
            out.append(Numeric(numeric.code, value, unit))
        return out

    def _check_alarms(self, numerics: list[Numeric], probe_off: bool, wall_time: float) -> None:
        """The monitor's alarm checks on what it reports; an ORU^R40 owed per change."""
        changes = []
        for numeric in numerics:
            observation = Observation(numeric.code, numeric.value, "monitor", wall_time)
            changes += self.alarms.observe(observation)
        off = (PROBE_OFF,) if probe_off else ()
        changes += self.alarms.device_alarms(DeviceAlarms("monitor", off, wall_time))
        changes += self.alarms.tick(wall_time)
        for record in changes:
            code = next((c for c in codes.ALL_CODES if c.key == record.code), None)
            alarm = DeviceAlarm(record.condition, record.priority, record.kind, code, record.text)
            phase = "start" if record.active else "end"
            self.alarm_messages.append(
                build_r40(alarm, record.id, phase, wall_time, value=record.value)
            )

    async def run(self) -> None:
        """Send until cancelled."""
        attempt = 0
        try:
            while True:
                noisy = self.faults.spoil(b"", self.period_s)  # noise bursts, if enabled
                try:
                    self.acks.append(await self.sender.send(self.message(time.time()), noisy))
                    while self.alarm_messages:
                        self.acks.append(await self.sender.send(self.alarm_messages[0]))
                        del self.alarm_messages[0]
                    attempt = 0
                    await asyncio.sleep(self.period_s)
                except (OSError, TimeoutError):
                    self.failures += 1
                    attempt += 1
                    await asyncio.sleep(min(5.0, 0.1 * 2**attempt))
        finally:
            await self.sender.close()
