"""Masimo Radical / Rad-8 ASCII serial output (9600 8N1): one line a second, e.g.::

    03/17/16 19:19:36 SN=---------- SPO2=098% BPM=123 PI=00.55 SPCO=--.-% SPMET=--.-% ...
        ALARM=000000 EXC=0000C00

Fields are ``KEY=value``; dashes mean "no value". The time is the device's local clock; the
decoder is told the device's time zone.

EXC is a hexadecimal exception bit set; the bits this decoder maps (others are kept only as
"some exception" in the line's quality): 0x001 no sensor, 0x002 defective sensor, 0x004 low
perfusion, 0x008 pulse search, 0x010 interference, 0x020 sensor off, 0x040 ambient light,
0x080 unrecognised sensor, 0x200 low signal IQ.

Alarms (:class:`~devices.model.DeviceAlarms`, repeated every 10 lines). EXC gives the
technical ones, low priority: no sensor or sensor off ``probe_off``, defective or
unrecognised sensor ``sensor_fault``, low perfusion ``low_perfusion``, pulse search
``searching``, interference, ambient light and low signal IQ ``low_signal``. ALARM
(hexadecimal) gives the physiological ones, as a public transcription of the Rad-8 manual
reads its bits: 0x01 SpO2 high, 0x02 SpO2 low, 0x04 pulse high, 0x08 pulse low; the serial
output states no priority, so medium (what the gateway's own limits have). Its other bits
(alarm sounding, silenced) are no conditions.
"""

from __future__ import annotations

import functools
from datetime import datetime, tzinfo
from zoneinfo import ZoneInfo

from devices.alarms import conditions
from devices.alarms.reporting import AlarmReporter
from devices.codes import PERFUSION_INDEX, PULSE_RATE, SPO2, VitalCode
from devices.model import (
    AlarmKind,
    AlarmPriority,
    DeviceAlarm,
    DeviceEvent,
    DeviceState,
    DeviceStatus,
    Observation,
    Quality,
)
from devices.protocols.common import DecoderBase, finite

MAX_LINE = 512
_FIELDS: dict[str, VitalCode] = {"SPO2": SPO2, "BPM": PULSE_RATE, "PI": PERFUSION_INDEX}
_EXC: tuple[tuple[int, Quality], ...] = (
    (0x001, Quality.PROBE_OFF),
    (0x002, Quality.INVALID),
    (0x004, Quality.LOW_PERFUSION),
    (0x008, Quality.SEARCHING),
    (0x010, Quality.ARTIFACT),
    (0x020, Quality.PROBE_OFF),
    (0x040, Quality.ARTIFACT),
    (0x080, Quality.INVALID),
    (0x200, Quality.LOW_SIGNAL),
)


_EXC_ALARMS: tuple[tuple[int, str], ...] = (
    (0x001, conditions.PROBE_OFF),
    (0x020, conditions.PROBE_OFF),
    (0x002, conditions.SENSOR_FAULT),
    (0x080, conditions.SENSOR_FAULT),
    (0x004, conditions.LOW_PERFUSION),
    (0x008, conditions.SEARCHING),
    (0x010, conditions.LOW_SIGNAL),
    (0x040, conditions.LOW_SIGNAL),
    (0x200, conditions.LOW_SIGNAL),
)
_ALARM_BITS: tuple[tuple[int, str], ...] = (
    (0x01, conditions.high(SPO2)),
    (0x02, conditions.low(SPO2)),
    (0x04, conditions.high(PULSE_RATE)),
    (0x08, conditions.low(PULSE_RATE)),
)
ALARM_SPO2_LOW = 0x02


def alarms_of(exc: int, alarm: int) -> list[DeviceAlarm]:
    """The alarms of one line's EXC and ALARM fields."""
    found = {
        DeviceAlarm(condition, AlarmPriority.LOW, AlarmKind.TECHNICAL, SPO2)
        for bit, condition in _EXC_ALARMS
        if exc & bit
    }
    for bit, condition in _ALARM_BITS:
        if alarm & bit:
            code = SPO2 if condition.startswith("spo2") else PULSE_RATE
            found.add(DeviceAlarm(condition, AlarmPriority.MEDIUM, AlarmKind.PHYSIOLOGICAL, code))
    return sorted(found, key=lambda a: a.key)


def encode_line(
    when: datetime,
    spo2: int | None,
    bpm: int | None,
    pi: float | None,
    exc: int = 0,
    alarm: int = 0,
) -> bytes:
    spo2_text = "---" if spo2 is None else f"{spo2:03d}"
    bpm_text = "---" if bpm is None else f"{bpm:03d}"
    pi_text = "--.--" if pi is None else f"{pi:05.2f}"
    return (
        f"{when:%m/%d/%y %H:%M:%S} SN=0000012345 SPO2={spo2_text}% BPM={bpm_text} "
        f"PI={pi_text} SPCO=--.-% SPMET=--.-% DESAT=-- PIDELTA=+-- ALARM={alarm:04X} "
        f"EXC={exc:07X}\r\n"
    ).encode("ascii")


class MasimoDecoder(DecoderBase):
    def __init__(self, device_id: str, device_tz: tzinfo | str = "UTC") -> None:
        super().__init__(device_id)
        self._tz = ZoneInfo(device_tz) if isinstance(device_tz, str) else device_tz
        self._buf = bytearray()
        self._state: DeviceState | None = None
        self._alarms = AlarmReporter(device_id, every=10)

    def receive_data(self, data: bytes, now: float) -> list[DeviceEvent]:
        self.stats.bytes_in += len(data)
        self._buf += data
        events: list[DeviceEvent] = []
        while True:
            end = self._buf.find(b"\n")
            if end < 0:
                if len(self._buf) > MAX_LINE:
                    self._error(events, "line too long", len(self._buf), now)
                    self._buf.clear()
                break
            line = bytes(self._buf[:end]).strip(b"\r")
            del self._buf[: end + 1]
            if line:
                self._guarded(
                    events, now, len(line) + 1, functools.partial(self._line, line, now=now)
                )
        return events

    def _line(self, raw: bytes, events: list[DeviceEvent], *, now: float) -> None:
        try:
            text = raw.decode("ascii")
            date, clock, *pairs = text.split()
            device_time = (
                datetime.strptime(f"{date} {clock}", "%m/%d/%y %H:%M:%S")
                .replace(tzinfo=self._tz)
                .timestamp()
            )
            fields = dict(p.split("=", 1) for p in pairs)
            exc = int(fields.get("EXC", "0"), 16)
            alarm = int(fields.get("ALARM", "0"), 16)
            values = {key: self._number(fields[key]) for key in _FIELDS if key in fields}
        except (UnicodeDecodeError, ValueError) as exc_info:
            self._error(events, "unreadable line", len(raw) + 1, now, str(exc_info))
            return
        self.stats.frames += 1
        self._alarms.offer(events, alarms_of(exc, alarm), self.stats.frames, now)
        quality = Quality.OK
        for bit, flag in _EXC:
            if exc & bit:
                quality |= flag
        state = (
            DeviceState.PROBE_OFF
            if quality & Quality.PROBE_OFF
            else DeviceState.SEARCHING
            if quality & Quality.SEARCHING
            else DeviceState.CONNECTED
        )
        if state is not self._state:
            self._state = state
            events.append(DeviceStatus(self.device_id, state, now, f"EXC={exc:X}"))
        for key, code in _FIELDS.items():
            if key not in values:
                continue
            value = values[key]
            q = quality | (Quality.INVALID if value is None else Quality.OK)
            events.append(Observation(code, value, self.device_id, now, device_time, q))

    @staticmethod
    def _number(text: str) -> float | None:
        text = text.rstrip("%")
        if not text or set(text) <= {"-", ".", "+"}:
            return None
        # "nan" and "inf" parse as floats: no value (the line's quality says so).
        return finite(float(text))
