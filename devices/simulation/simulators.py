"""Simulators that speak each protocol byte for byte, including the handshake the real
device expects, driven by a synthetic :class:`~devices.simulation.patient.Patient`.

A simulator writes through a :class:`~devices.simulation.pty_link.PtyLink`; :meth:`run` paces
frames by the clock (no drift) until cancelled. Faults can be switched at any time, and the
patient's alarm scenarios (:mod:`devices.simulation.alarms`) started: each device then
raises the alarms its protocol can carry, from its own limits (the adult defaults) on what
it measures.
"""

from __future__ import annotations

import asyncio
import random
import time
from dataclasses import dataclass, field
from datetime import datetime
from zoneinfo import ZoneInfo

import numpy as np

from devices import codes
from devices.alarms import conditions
from devices.alarms.engine import AlarmEngine
from devices.alarms.limits import ADULT_DEFAULTS
from devices.model import AlarmPriority, Observation
from devices.protocols import cms50, datex, masimo, nonin
from devices.simulation.patient import Patient
from devices.simulation.pty_link import PtyLink


@dataclass
class Faults:
    """Faults on demand: probe off, line noise (garbage bursts a second), dropped bytes."""

    probe_off: bool = False
    noise_per_s: float = 0.0
    drop_probability: float = 0.0
    seed: int = 1
    _rng: random.Random = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self._rng = random.Random(self.seed)

    def spoil(self, data: bytes, dt: float) -> bytes:
        if self.drop_probability > 0:
            data = bytes(b for b in data if self._rng.random() >= self.drop_probability)
        if self.noise_per_s > 0 and self._rng.random() < self.noise_per_s * dt:
            data += bytes(self._rng.randrange(256) for _ in range(self._rng.randrange(1, 12)))
        return data


class Simulator:
    """Base: paces ``frames_per_tick`` frames every ``tick_s`` seconds."""

    name = "base"
    tick_s = 0.05

    def __init__(
        self, link: PtyLink, patient: Patient | None = None, faults: Faults | None = None
    ) -> None:
        self.link = link
        self.patient = patient or Patient()
        self.faults = faults or Faults()
        self.frames_sent = 0

    @property
    def probe_off(self) -> bool:
        """The SpO2 probe is off: a fault switched on, or a scenario running."""
        return self.faults.probe_off or self.patient.probe_off

    def on_host_bytes(self, data: bytes) -> None:
        """What the host wrote (commands)."""

    def streaming(self) -> bool:
        return True

    def frames_due(self, elapsed: float) -> int:
        raise NotImplementedError

    def frames(self, count: int) -> bytes:
        raise NotImplementedError

    async def run(self) -> None:
        """Plug in and stream until cancelled; the link is unplugged on the way out."""
        if not self.link.plugged:
            self.link.plug(self.on_host_bytes)
        start = time.monotonic()
        try:
            while True:
                await asyncio.sleep(self.tick_s)
                due = self.frames_due(time.monotonic() - start) - self.frames_sent
                if due <= 0:
                    continue
                data = self.frames(due)
                self.frames_sent += due
                if self.streaming():
                    self.link.write(self.faults.spoil(data, self.tick_s))
        finally:
            self.link.unplug()


class Cms50Simulator(Simulator):
    """CMS50D+/E, protocol V7.0: streams live data at 60 packets/s after "start live data",
    and stops when the host's "still connected" stops coming for ``keepalive_timeout_s``."""

    name = "cms50"

    def __init__(
        self,
        link: PtyLink,
        patient: Patient | None = None,
        faults: Faults | None = None,
        *,
        keepalive_timeout_s: float = 3.0,
    ) -> None:
        super().__init__(link, patient, faults)
        self._commands = cms50.Cms50CommandDecoder()
        self.keepalive_timeout_s = keepalive_timeout_s
        self.live = False
        self._last_command = 0.0
        self.commands_seen: list[cms50.Command | int] = []

    def on_host_bytes(self, data: bytes) -> None:
        for command in self._commands.receive_data(data):
            self.commands_seen.append(command)
            self._last_command = time.monotonic()
            if command == cms50.Command.START_LIVE:
                self.live = True
            elif command == cms50.Command.STOP_LIVE:
                self.live = False

    def streaming(self) -> bool:
        if self.live and time.monotonic() - self._last_command > self.keepalive_timeout_s:
            self.live = False  # the host went quiet: the device drops the live stream
        return self.live

    def frames_due(self, elapsed: float) -> int:
        return int(elapsed * cms50.SAMPLE_RATE)

    def sample(self, pleth: float) -> cms50.LiveSample:
        if self.probe_off:
            return cms50.LiveSample(0, None, None, None, probe_error=True)
        spo2 = round(self.patient.spo2)
        return cms50.LiveSample(
            pleth=int(pleth * 120),
            pulse_rate=round(self.patient.heart_rate),
            spo2=spo2,
            low_spo2=spo2 < SPO2_LOW_LIMIT,
            perfusion_index=3.2,
            signal_strength=6,
            bar_graph=int(pleth * 15),
        )

    def frames(self, count: int) -> bytes:
        pleth = self.patient.pleth(count, cms50.SAMPLE_RATE)
        return b"".join(self.encode(self.sample(float(p))) for p in pleth)

    @staticmethod
    def encode(sample: cms50.LiveSample) -> bytes:
        return cms50.encode_live(sample)


class Cms50LegacySimulator(Cms50Simulator):
    """Older CMS50 firmware: 5-byte packets, streaming from power-on, no commands."""

    name = "cms50-legacy"

    def streaming(self) -> bool:
        return True

    @staticmethod
    def encode(sample: cms50.LiveSample) -> bytes:
        return cms50.encode_legacy(sample)


class NoninSimulator(Simulator):
    """Nonin OEM module: streams format #2 (or what the host selects: ACK/NAK)."""

    name = "nonin"

    def __init__(
        self, link: PtyLink, patient: Patient | None = None, faults: Faults | None = None
    ) -> None:
        super().__init__(link, patient, faults)
        self.format = nonin.Format.PLETH_8
        self._pending = bytearray()
        self._floats: list[int] = []
        # (elapsed, frames sent) when the current format began; None: it just changed.
        # Frames are counted at the format's own rate from there: counting #8's one a
        # second on from #2's 75 a second stalled the stream for minutes after a switch.
        self._origin: tuple[float, int] | None = (0.0, 0)

    def on_host_bytes(self, data: bytes) -> None:
        self._pending += data
        while len(self._pending) >= 6:
            start = self._pending.find(b"\x02\x70")
            if start < 0:
                self._pending.clear()
                return
            command = bytes(self._pending[start : start + 6])
            if len(command) < 6:
                return
            del self._pending[: start + 6]
            fmt = nonin.parse_select(command)
            if fmt is None:
                self.link.write(bytes([nonin.NAK]))
            else:
                if fmt is not self.format:
                    self.format = fmt
                    self._origin = None
                self.link.write(bytes([nonin.ACK]))

    def frames_due(self, elapsed: float) -> int:
        if self._origin is None:
            self._origin = (elapsed, self.frames_sent)
        since, base = self._origin
        rate = 1.0 if self.format is nonin.Format.NUMERICS else nonin.FRAME_RATE
        return base + int((elapsed - since) * rate)

    def frames(self, count: int) -> bytes:
        status = nonin.Status.GREEN_PERFUSION
        hr: int | None = round(self.patient.heart_rate)
        spo2: int | None = round(self.patient.spo2)
        if self.probe_off:
            status, hr, spo2 = nonin.Status.SENSOR_DISCONNECTED, None, None
        if self.format is nonin.Format.NUMERICS:
            self.patient.pleth(75 * count, nonin.FRAME_RATE)  # keep the patient's time going
            return nonin.encode_numerics(status, hr, spo2) * count
        pleth = self.patient.pleth(count, nonin.FRAME_RATE)
        top = 255 if self.format is nonin.Format.PLETH_8 else 65535
        out = bytearray()
        for k, p in enumerate(pleth):
            position = (self.frames_sent + k) % nonin.FRAMES_PER_PACKET
            if position == 0:
                self._floats = nonin.packet_floats(hr, spo2)
            frame_status = status | (nonin.Status.SYNC if position == 0 else nonin.Status(0))
            value = 0 if self.probe_off else int(float(p) * top)
            out += nonin.encode_frame(
                self.format, nonin.Frame(frame_status, value, self._floats[position])
            )
        return bytes(out)


class MasimoSimulator(Simulator):
    """Masimo Radical/Rad-8: one ASCII line a second, device clock in ``timezone``."""

    name = "masimo"
    tick_s = 0.1

    def __init__(
        self,
        link: PtyLink,
        patient: Patient | None = None,
        faults: Faults | None = None,
        *,
        timezone: str = "UTC",
    ) -> None:
        super().__init__(link, patient, faults)
        self._tz = ZoneInfo(timezone)

    def frames_due(self, elapsed: float) -> int:
        return int(elapsed)

    def frames(self, count: int) -> bytes:
        self.patient.pleth(60 * count, 60.0)
        now = datetime.now(self._tz).replace(tzinfo=None)
        if self.probe_off:
            return masimo.encode_line(now, None, None, None, exc=0x020) * count
        spo2, bpm = round(self.patient.spo2), round(self.patient.heart_rate)
        alarm = masimo.ALARM_SPO2_LOW if spo2 < SPO2_LOW_LIMIT else 0
        return masimo.encode_line(now, spo2, bpm, 1.45, alarm=alarm) * count


class DatexSimulator(Simulator):
    """S/5 monitor computer interface: sends nothing until asked; then displayed values
    every requested interval, the requested waves (ECG1 300/s, pleth 100/s) in records
    every 100 ms, and, once asked for alarms, its alarm status (in differential mode again
    whenever it changes): its own limits on what it displays, and a white "probe off"."""

    name = "datex"
    tick_s = 0.1

    def __init__(
        self, link: PtyLink, patient: Patient | None = None, faults: Faults | None = None
    ) -> None:
        super().__init__(link, patient, faults)
        self._unframer = datex.Unframer()
        self.phdb_interval: int | None = None
        self.waves: list[datex.WaveType] = []
        self._last_phdb = -1e9
        self.requests: list[datex.Request] = []
        self.limit_alarms = AlarmEngine()
        self.alarm_mode: datex.AlarmCommand | None = None
        self._alarm_status_due = False
        self._alarms_shown: tuple[datex.AlarmDisplay, ...] = ()

    def on_host_bytes(self, data: bytes) -> None:
        for record, error, _ in self._unframer.receive_data(data):
            request = None if error is not None else datex.parse_request(record)
            if request is None:
                continue
            self.requests.append(request)
            if isinstance(request, datex.PhdbRequest):
                self.phdb_interval = max(1, request.interval_s)
                self._last_phdb = -1e9
            elif isinstance(request, datex.WaveRequest):
                self.waves = list(request.types) if request.start else []
            else:
                self.alarm_mode = request.command
                self._alarm_status_due = request.command is not datex.AlarmCommand.EXIT_DIFFMODE

    def frames_due(self, elapsed: float) -> int:
        return int(elapsed / self.tick_s)

    def alarm_displays(self) -> tuple[datex.AlarmDisplay, ...]:
        """What the monitor's alarm area shows now (at most five, red first)."""
        shown = []
        for record in self.limit_alarms.active():
            low = record.condition.endswith("_low") or record.condition == conditions.SPO2_DESAT
            label = _DATEX_LABELS.get(record.code or "", record.code or "")
            shown.append(
                datex.AlarmDisplay(
                    f"{label} {'LOW' if low else 'HIGH'}",
                    datex.AlarmColor.RED
                    if record.priority is AlarmPriority.HIGH
                    else datex.AlarmColor.YELLOW,
                    datex.AlarmType.LOW_LIMIT if low else datex.AlarmType.HIGH_LIMIT,
                )
            )
        if self.probe_off:
            shown.append(
                datex.AlarmDisplay("SpO2 PROBE OFF", datex.AlarmColor.WHITE, datex.AlarmType.STATUS)
            )
        return tuple(sorted(shown, key=lambda d: -d.color)[:5])

    def frames(self, count: int) -> bytes:
        out = b""
        p = self.patient
        now = int(time.time())
        for _ in range(count):
            t0 = p.time
            ecg = p.ecg_at(t0 + np.arange(30) / 300.0)
            pleth = p.pleth(10, 100.0)  # advances the patient by one tick
            waves: dict[datex.WaveType, list[int]] = {}
            if datex.WaveType.ECG1 in self.waves:
                waves[datex.WaveType.ECG1] = [int(v * 1000) for v in ecg]
            if datex.WaveType.PLETH in self.waves:
                waves[datex.WaveType.PLETH] = (
                    [-32767] * 10 if self.probe_off else [int(v * 10000) for v in pleth]
                )
            if waves:
                out += datex.frame(datex.encode_waves(now, waves))
            off = self.probe_off
            values: dict[str, float | None] = {
                "heart_rate": round(p.heart_rate),
                "spo2": None if off else round(p.spo2, 1),
                "pulse_rate": None if off else round(p.heart_rate),
                "nibp_sys": round(p.held("nibp_sys", 115)),
                "nibp_dia": round(p.held("nibp_dia", 55)),
                "nibp_mean": round(p.held("nibp_mean", 79)),
                "temperature": round(p.held("temperature", 36.8), 1),
                "resp_rate": round(p.resp_rate),
            }
            for key, value in values.items():
                code = _CODES[key]
                self.limit_alarms.observe(Observation(code, value, "monitor", p.time))
            self.limit_alarms.tick(p.time)
            if self.phdb_interval and p.time - self._last_phdb >= self.phdb_interval:
                self._last_phdb = p.time
                out += datex.frame(datex.encode_phdb(datex.PhdbValues(now, values)))
            out += self._alarm_status(now)
        return out

    def _alarm_status(self, now: int) -> bytes:
        shown = self.alarm_displays()
        changed = shown != self._alarms_shown
        self._alarms_shown = shown
        diff_mode = self.alarm_mode is datex.AlarmCommand.ENTER_DIFFMODE
        if not (self._alarm_status_due or (diff_mode and changed)):
            return b""
        self._alarm_status_due = False
        return datex.frame(datex.encode_alarm_status(datex.AlarmStatus(shown), now))


#: The limit the simulated oximeters alarm below (their own "low SpO2").
SPO2_LOW_LIMIT = next(limit.low for limit in ADULT_DEFAULTS if limit.name == "spo2") or 90.0
_CODES = {c.key: c for c in codes.ALL_CODES}
_DATEX_LABELS = {
    "heart_rate": "HR",
    "spo2": "SpO2",
    "pulse_rate": "PR",
    "resp_rate": "RR",
    "nibp_sys": "NIBP SYS",
    "nibp_dia": "NIBP DIA",
    "nibp_mean": "NIBP MEAN",
    "temperature": "T1",
}
