"""GE Datex-Ohmeda S/5 Computer Interface (DRI, "Datex-Ohmeda Record Interface").

Serial 19200 (115200 on newer monitors), 8E1, RTS/CTS. A frame is ``7E <record> <sum> 7E``
with 0x7E -> ``7D 5E`` and 0x7D -> ``7D 5D`` inside; ``sum`` is the 8-bit sum of the record.
A record is a 40-byte little-endian header (``r_len``, number, DRI level, plug id, unix time,
subnet, reserved, ``r_maintype``, and 8 subrecord descriptors of (offset, type), the list
ending with type 0xFF) followed by its subrecords. Values are signed 16-bit; anything at or
below -32001 is a status, not a value (invalid, not updated, out of range...).

- ``DRI_MT_PHDB`` (0): physiological database subrecords of 278 bytes (time, 270 bytes of
  groups, marker, reserved, class/level/subtype word); the basic class is decoded here: ECG HR
  (x1), NIBP (x0.01 mmHg), temperatures (x0.01 Cel), SpO2 (x0.01 %), pulse rate (x1),
  respiration rate (CO2 or impedance, x1). A group counts only when its status says it exists
  and is active.
- ``DRI_MT_WAVE`` (1): each subrecord is ``act_len`` (samples), status, label, then samples;
  ECG in microvolts at 300/s, pleth at 100/s (x0.01), CO2 at 25/s.
- ``DRI_MT_ALARM`` (4): subrecord ``DRI_AL_STATUS`` (1) is the monitor's alarm display,
  ``dri_al_msg``: reserved, sound on/off, two reserved, silence info (5 shorts), then the 5
  alarms shown (``al_disp_al``, 98 bytes each: text[80], text_changed, color
  ``DRI_PR0``-``DRI_PR3``, color_changed, then 12 bytes that newer DRI levels fill with
  format info, audio mode, is_asy, is_apnea, the alarm source id and the alarm type
  (unknown, low limit, high limit, status), older ones leave zero), then 5 reserved shorts.
- Requests from the host: a PHDB request (displayed values every ``tx_ival`` seconds), a
  waveform request (start/stop continuous waves of up to 8 types) and an alarm request
  (``al_tx_cmds``: transmit the status once, or enter/exit "differential mode", where the
  monitor sends the status whenever it changes).

Alarm colours are priorities: red (``DRI_PR3``) high, yellow (``DRI_PR2``) medium, white
(``DRI_PR1``) low. The kind follows the alarm type where the monitor states it (a status
alarm is technical, a limit alarm physiological); where it does not, a white one is taken
as technical and a coloured one as physiological. The alarm is known by its words
(condition ``device``), or as asystole or apnea when the monitor flags it so.
"""

from __future__ import annotations

import enum
import functools
import math
import struct
from dataclasses import dataclass, field

from devices import codes
from devices.alarms import conditions
from devices.alarms.reporting import AlarmReporter
from devices.codes import VitalCode
from devices.errors import CodecError
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
from devices.protocols.common import DecoderBase, chunk

FLAG, ESC = 0x7E, 0x7D
HEADER = struct.Struct("<hBBHIBBHh")  # 16 bytes, then 8 x (offset h, type B)
HEADER_SIZE = 40
SR_DESC = struct.Struct("<hB")
EOL = 0xFF
PHDB_SIZE = 278
MAX_RECORD = 1490
INVALID_AT_OR_BELOW = -32001


class MainType(enum.IntEnum):
    PHDB = 0
    WAVE = 1
    ALARM = 4
    NETWORK = 5


class PhdbSubtype(enum.IntEnum):
    DISPLAYED = 1
    TREND_10S = 2
    TREND_60S = 3
    AUX = 4


class WaveType(enum.IntEnum):
    CMD = 0
    ECG1 = 1
    ECG2 = 2
    ECG3 = 3
    INVP1 = 4
    PLETH = 8
    CO2 = 9


WAVE_RATES = {
    WaveType.ECG1: 300.0,
    WaveType.ECG2: 300.0,
    WaveType.ECG3: 300.0,
    WaveType.INVP1: 100.0,
    WaveType.PLETH: 100.0,
    WaveType.CO2: 25.0,
}
#: (code, scale) of the waves this decoder passes on.
WAVE_CODES: dict[WaveType, tuple[VitalCode, float]] = {
    # ECG samples are in microvolts: the S/5 Computer Interface Specification's wave table
    # gives the ECG waves' unit as uV (0.001 mV a unit), not 0.01 mV. The amplitudes agree:
    # the B650 ECG1 captures in ../shared/device-captures/ge-datex-s5-dri (written by the
    # icu_devices program with 0.01) span about 14 mV between their 1st and 99th
    # percentiles, ten times any surface ECG (a QRS is 0.5-3 mV; a monitor's ECG input
    # range is +-5 mV, IEC 60601-2-27); at 0.001 the same raw values span 1.4-2.5 mV.
    # tests/devices/test_datex_scale.py checks this on the captures. Channel 1 shows lead II.
    WaveType.ECG1: (codes.ECG_II, 0.001),
    WaveType.PLETH: (codes.PLETH, 0.01),
}

# Offsets inside the 270-byte basic class (after the 4-byte time of a PHDB subrecord).
# Each group starts with a 6-byte header: status (uint32: bit 0 exists, bit 1 active), label.
_ECG, _NIBP, _T1, _SPO2, _CO2 = 0, 72, 86, 118, 132
#: (group offset, value offset in the group, code, scale)
BASIC_FIELDS: tuple[tuple[int, int, VitalCode, float], ...] = (
    (_ECG, 6, codes.HEART_RATE, 1.0),
    (_NIBP, 6, codes.NIBP_SYS, 0.01),
    (_NIBP, 8, codes.NIBP_DIA, 0.01),
    (_NIBP, 10, codes.NIBP_MEAN, 0.01),
    (_T1, 6, codes.TEMPERATURE, 0.01),
    (_SPO2, 6, codes.SPO2, 0.01),
    (_SPO2, 8, codes.PULSE_RATE, 1.0),
    (_CO2, 10, codes.RESP_RATE, 1.0),
)
_IMP_RR = (_ECG, 14)  # impedance respiration, used when CO2 gives no rate


class AlarmCommand(enum.IntEnum):
    XMIT_STATUS = 0
    ENTER_DIFFMODE = 2
    EXIT_DIFFMODE = 3


class AlarmColor(enum.IntEnum):
    NONE = 0  # DRI_PR0
    WHITE = 1
    YELLOW = 2
    RED = 3


class AlarmType(enum.IntEnum):
    UNKNOWN = 0
    LOW_LIMIT = 1
    HIGH_LIMIT = 2
    STATUS = 3


AL_STATUS = 1  # DRI_AL_STATUS, the alarm status subrecord
AL_DISP = struct.Struct("<80shhhBBBBHhhh")  # al_disp_al: 98 bytes
AL_MSG_HEAD = struct.Struct("<hhhhh")
AL_MSG_SIZE = AL_MSG_HEAD.size + 5 * AL_DISP.size + 10
_PRIORITY = {
    AlarmColor.RED: AlarmPriority.HIGH,
    AlarmColor.YELLOW: AlarmPriority.MEDIUM,
    AlarmColor.WHITE: AlarmPriority.LOW,
}


@dataclass(frozen=True)
class AlarmDisplay:
    """One of the five alarms the monitor shows."""

    text: str
    color: AlarmColor
    alarm_type: AlarmType = AlarmType.UNKNOWN
    is_asystole: bool = False
    is_apnea: bool = False
    source_id: int = 0


@dataclass(frozen=True)
class AlarmStatus:
    """``dri_al_msg``: sound on or off, the silence info, and the alarms shown."""

    displays: tuple[AlarmDisplay, ...]
    sound_on: bool = True
    silence_info: int = 0


def checksum(record: bytes) -> int:
    return sum(record) & 0xFF


def escape(data: bytes) -> bytes:
    return data.replace(b"\x7d", b"\x7d\x5d").replace(b"\x7e", b"\x7d\x5e")


def frame(record: bytes) -> bytes:
    return bytes([FLAG]) + escape(record + bytes([checksum(record)])) + bytes([FLAG])


def header(maintype: MainType, subrecords: list[tuple[int, int]], body_len: int, t: int) -> bytes:
    """A 40-byte header for a record with ``subrecords`` [(offset, type)] and a body."""
    descs = [*subrecords, (0, EOL)] + [(0, 0)] * (7 - len(subrecords))
    head = HEADER.pack(HEADER_SIZE + body_len, 0, 0, 0, t, 0, 0, 0, maintype)
    return head + b"".join(SR_DESC.pack(off, typ) for off, typ in descs[:8])


def phdb_request(interval_s: int = 5) -> bytes:
    """The host's request for displayed values every ``interval_s`` seconds (basic class)."""
    body = struct.pack("<BhIh", PhdbSubtype.DISPLAYED, interval_s, 0, 0)
    return header(MainType.PHDB, [(0, 0)], len(body), 0) + body


def wave_request(types: list[WaveType], start: bool = True) -> bytes:
    listed = [*(int(t) for t in types[:7]), EOL]
    body = struct.pack("<hh", 0 if start else 1, 0) + bytes(listed + [0] * (8 - len(listed)))
    body += bytes(20)
    return header(MainType.WAVE, [(0, WaveType.CMD)], len(body), 0) + body


def alarm_request(command: AlarmCommand = AlarmCommand.ENTER_DIFFMODE) -> bytes:
    """The host's alarm request: differential mode (the status whenever it changes) by
    default."""
    body = struct.pack("<h5h", command, 0, 0, 0, 0, 0)
    return header(MainType.ALARM, [(0, 0)], len(body), 0) + body


def encode_alarm_status(status: AlarmStatus, t: int) -> bytes:
    """An alarm record (what the monitor sends): one DRI_AL_STATUS subrecord."""
    if len(status.displays) > 5:
        raise ValueError("the monitor shows at most 5 alarms")
    body = AL_MSG_HEAD.pack(0, int(status.sound_on), 0, 0, status.silence_info)
    shown = [*status.displays, *[AlarmDisplay("", AlarmColor.NONE)] * (5 - len(status.displays))]
    for d in shown:
        body += AL_DISP.pack(
            d.text.encode("latin-1", errors="replace")[:79],
            1,
            d.color,
            1,
            0,
            0,
            int(d.is_asystole),
            int(d.is_apnea),
            d.source_id,
            d.alarm_type,
            0,
            0,
        )
    body += bytes(10)
    return header(MainType.ALARM, [(0, AL_STATUS)], len(body), t) + body


def parse_alarm_status(sub: bytes) -> AlarmStatus:
    """A DRI_AL_STATUS subrecord. Raises :class:`CodecError`."""
    if len(sub) < AL_MSG_SIZE:
        raise CodecError(f"alarm status of {len(sub)} bytes (expected {AL_MSG_SIZE})")
    _, sound, _, _, silence = AL_MSG_HEAD.unpack_from(sub)
    displays = []
    for k in range(5):
        raw, _, color, _, _, _, asy, apnea, source, kind, _, _ = AL_DISP.unpack_from(
            sub, AL_MSG_HEAD.size + k * AL_DISP.size
        )
        text = " ".join(raw.split(b"\x00", 1)[0].decode("latin-1").split())
        displays.append(
            AlarmDisplay(
                text,
                AlarmColor(color) if color in AlarmColor._value2member_map_ else AlarmColor.NONE,
                AlarmType(kind) if kind in AlarmType._value2member_map_ else AlarmType.UNKNOWN,
                bool(asy),
                bool(apnea),
                source,
            )
        )
    return AlarmStatus(tuple(displays), bool(sound), silence)


def device_alarms(status: AlarmStatus) -> list[DeviceAlarm]:
    """The alarms of a status message (the slots showing one)."""
    found = []
    for d in status.displays:
        if d.color is AlarmColor.NONE or not d.text:
            continue
        if d.alarm_type is AlarmType.STATUS:
            kind = AlarmKind.TECHNICAL
        elif d.alarm_type in (AlarmType.LOW_LIMIT, AlarmType.HIGH_LIMIT):
            kind = AlarmKind.PHYSIOLOGICAL
        else:
            kind = AlarmKind.TECHNICAL if d.color is AlarmColor.WHITE else AlarmKind.PHYSIOLOGICAL
        condition = (
            conditions.ASYSTOLE
            if d.is_asystole
            else conditions.APNEA
            if d.is_apnea
            else conditions.DEVICE
        )
        found.append(DeviceAlarm(condition, _PRIORITY[d.color], kind, None, d.text))
    return found


@dataclass
class PhdbValues:
    """Displayed values to encode (None: not measured / invalid)."""

    time: int
    values: dict[str, float | None] = field(default_factory=dict)


def encode_phdb(v: PhdbValues, subtype: PhdbSubtype = PhdbSubtype.DISPLAYED) -> bytes:
    basic = bytearray(270)
    for group in {g for g, _, _, _ in BASIC_FIELDS} | {_IMP_RR[0]}:
        struct.pack_into("<IH", basic, group, 0b11, 0)  # exists, active
    for group, offset, code, scale in BASIC_FIELDS:
        value = v.values.get(code.key)
        raw = -32767 if value is None else round(value / scale)
        struct.pack_into("<h", basic, group + offset, raw)
    struct.pack_into("<h", basic, sum(_IMP_RR), -32767)
    sub = struct.pack("<I", v.time) + bytes(basic) + struct.pack("<BBH", 0, 0, int(subtype))
    return header(MainType.PHDB, [(0, subtype)], len(sub), v.time) + sub


def encode_waves(t: int, waves: dict[WaveType, list[int]]) -> bytes:
    body, descs = b"", []
    for wtype, samples in waves.items():
        descs.append((len(body), int(wtype)))
        body += struct.pack("<hHH", len(samples), 0, 0) + struct.pack(f"<{len(samples)}h", *samples)
    return header(MainType.WAVE, descs, len(body), t) + body


@dataclass(frozen=True)
class PhdbRequest:
    interval_s: int


@dataclass(frozen=True)
class WaveRequest:
    types: tuple[WaveType, ...]
    start: bool


@dataclass(frozen=True)
class AlarmRequest:
    command: AlarmCommand


Request = PhdbRequest | WaveRequest | AlarmRequest


def parse_request(record: bytes) -> Request | None:
    """What a host asked for in one record (read by the simulator), if anything."""
    if len(record) < HEADER_SIZE:
        return None
    maintype = HEADER.unpack_from(record)[8]
    body = record[HEADER_SIZE:]
    if maintype == MainType.PHDB and len(body) >= 9:
        _, interval, _, _ = struct.unpack_from("<BhIh", body)
        return PhdbRequest(interval)
    if maintype == MainType.WAVE and len(body) >= 12:
        req, _ = struct.unpack_from("<hh", body)
        listed = body[4:12].split(bytes([EOL]))[0]
        types = tuple(WaveType(b) for b in listed if b in WaveType._value2member_map_)
        return WaveRequest(types, req == 0)
    if maintype == MainType.ALARM and len(body) >= 2:
        (command,) = struct.unpack_from("<h", body)
        if command in AlarmCommand._value2member_map_:
            return AlarmRequest(AlarmCommand(command))
    return None


class Unframer:
    """Flag-delimited frames with escapes; yields (record, error reason or None)."""

    def __init__(self) -> None:
        self._buf = bytearray()
        self._in_frame = False
        self._skipped = 0

    def receive_data(self, data: bytes) -> list[tuple[bytes, str | None, int]]:
        out: list[tuple[bytes, str | None, int]] = []
        for byte in data:
            if byte == FLAG:
                if self._in_frame and self._buf:
                    out.append(self._finish())
                    # A flag both ends one frame and may begin the next.
                self._in_frame, self._buf = True, bytearray()
                if self._skipped:
                    out.append((b"", "bytes outside a frame", self._skipped))
                    self._skipped = 0
                continue
            if not self._in_frame:
                self._skipped += 1
                continue
            self._buf.append(byte)
            if len(self._buf) > 2 * MAX_RECORD + 4:
                out.append((b"", "frame too long", len(self._buf)))
                self._buf, self._in_frame = bytearray(), False
        return out

    def _finish(self) -> tuple[bytes, str | None, int]:
        raw = bytes(self._buf)
        size = len(raw) + 2
        data = bytearray()
        it = iter(raw)
        for b in it:
            if b == ESC:
                nxt = next(it, None)
                if nxt not in (0x5E, 0x5D):
                    return b"", "bad escape sequence", size
                data.append(nxt ^ 0x20)
            else:
                data.append(b)
        if len(data) < HEADER_SIZE + 1:
            return b"", "frame too short", size
        record, check = bytes(data[:-1]), data[-1]
        if checksum(record) != check:
            return b"", "bad checksum", size
        r_len = HEADER.unpack_from(record)[0]
        if r_len != len(record):
            return b"", "record length does not match the frame", size
        return record, None, size


def _value(raw: int, scale: float) -> float | None:
    # Rounded to the resolution the scale gives (0.01 stays 0.01, not 36.800000000000004).
    return None if raw <= INVALID_AT_OR_BELOW else round(raw * scale, 2)


class DatexDecoder(DecoderBase):
    """Device-to-host records: PHDB displayed values and continuous waves."""

    def __init__(self, device_id: str) -> None:
        super().__init__(device_id)
        self._unframer = Unframer()
        self._connected = False
        # The monitor sends its alarm status when it changes: each one is reported.
        self._alarms = AlarmReporter(device_id, every=1)
        self._alarm_records = 0

    def receive_data(self, data: bytes, now: float) -> list[DeviceEvent]:
        self.stats.bytes_in += len(data)
        events: list[DeviceEvent] = []
        for record, error, size in self._unframer.receive_data(data):
            if error is not None:
                self._error(events, error, size, now)
                continue
            self.stats.frames += 1
            if not self._connected:
                self._connected = True
                events.append(DeviceStatus(self.device_id, DeviceState.CONNECTED, now))
            self._guarded(events, now, size, functools.partial(self._checked, record, size, now))
        return events

    def _checked(self, record: bytes, size: int, now: float, events: list[DeviceEvent]) -> None:
        """One record; what its parsing foresees going wrong is a malformed record."""
        try:
            self._record(record, events, now)
        except (struct.error, ValueError) as exc:
            self._error(events, "malformed record", size, now, str(exc))

    def _subrecords(self, record: bytes) -> list[tuple[int, int, bytes]]:
        body = record[HEADER_SIZE:]
        descs = [SR_DESC.unpack_from(record, 16 + 3 * i) for i in range(8)]
        listed = []
        for offset, typ in descs:
            if typ == EOL:
                break
            if not 0 <= offset < len(body):
                raise CodecError(f"subrecord offset {offset} outside the record")
            listed.append((offset, typ))
        ends = [o for o, _ in listed[1:]] + [len(body)]
        return [(o, t, body[o:end]) for (o, t), end in zip(listed, ends, strict=True)]

    def _record(self, record: bytes, events: list[DeviceEvent], now: float) -> None:
        maintype = HEADER.unpack_from(record)[8]
        r_time = HEADER.unpack_from(record)[4]
        if maintype == MainType.PHDB:
            for _, _, sub in self._subrecords(record):
                self._phdb(sub, events, now)
        elif maintype == MainType.WAVE:
            for _, typ, sub in self._subrecords(record):
                self._wave(typ, sub, r_time, events, now)
        elif maintype == MainType.ALARM:
            for _, typ, sub in self._subrecords(record):
                if typ == AL_STATUS:
                    status = parse_alarm_status(sub)
                    self._alarm_records += 1
                    self._alarms.offer(events, device_alarms(status), self._alarm_records, now)
        # Network records are valid but not decoded here.

    def _phdb(self, sub: bytes, events: list[DeviceEvent], now: float) -> None:
        if len(sub) < PHDB_SIZE:
            raise CodecError(f"PHDB subrecord of {len(sub)} bytes (expected {PHDB_SIZE})")
        (t,) = struct.unpack_from("<I", sub)
        (cl,) = struct.unpack_from("<H", sub, 276)
        if (cl >> 8) & 0x0F != 0:
            return  # an extended class: not decoded
        basic = sub[4:274]
        for group, offset, code, scale in BASIC_FIELDS:
            (status,) = struct.unpack_from("<I", basic, group)
            (raw,) = struct.unpack_from("<h", basic, group + offset)
            present = status & 0b11 == 0b11
            value = _value(raw, scale) if present else None
            if code is codes.RESP_RATE and value is None:
                # No CO2 rate: the ECG impedance rate, when there is one.
                (ecg_status,) = struct.unpack_from("<I", basic, _IMP_RR[0])
                (imp,) = struct.unpack_from("<h", basic, sum(_IMP_RR))
                value = _value(imp, 1.0) if ecg_status & 0b11 == 0b11 else None
            quality = Quality.OK if value is not None else Quality.INVALID
            events.append(Observation(code, value, self.device_id, now, float(t), quality))

    def _wave(
        self, typ: int, sub: bytes, r_time: int, events: list[DeviceEvent], now: float
    ) -> None:
        if typ not in WaveType._value2member_map_:
            return
        wtype = WaveType(typ)
        if wtype not in WAVE_CODES:
            return
        count, _, _ = struct.unpack_from("<hHH", sub)
        if count < 0 or 6 + 2 * count > len(sub):
            raise CodecError(f"wave subrecord claims {count} samples in {len(sub)} bytes")
        raw = struct.unpack_from(f"<{count}h", sub, 6)
        code, scale = WAVE_CODES[wtype]
        samples = [math.nan if r <= INVALID_AT_OR_BELOW else r * scale for r in raw]  # gaps: NaN
        rate = WAVE_RATES[wtype]
        events.append(chunk(code, rate, samples, self.device_id, now))
