"""Nonin OEM pulse oximeter serial formats #2, #7 and #8 (vendor 9560/OEM III specification).

A format is selected by the host with ``02 70 02 02 <fmt> 03``; the device answers ACK (0x06)
or NAK (0x15).

**#2**: 5-byte frames ``01 STATUS PLETH FLOAT CHK`` at 75 frames/s, 25 frames to a packet.
**#7**: 5-byte frames ``STATUS PLETH_MSB PLETH_LSB FLOAT CHK`` (16-bit pleth), same timing.
In both, CHK is the sum of the first four bytes mod 256, STATUS bit 7 is always 1 and bit 0
(SYNC) marks the first frame of a packet; FLOAT carries, by frame number in the packet,
1 HR MSB, 2 HR LSB, 3 SpO2, ... (HR is 9 bits: MSB bits 0-1 are HR bits 7-8; missing HR is
511, missing SpO2 127).
**#8**: 4 bytes once a second ``STATUS HR_MSB HR_LSB SPO2``; STATUS has bit 7 set, the data
bytes never do, which is how the stream is framed.

STATUS bits: 6 sensor disconnected, 5 artifact, 4 out of track, 3 sensor alarm,
2 red perfusion (low), 1 green perfusion; both perfusion bits: marginal ("yellow").

Alarms (:class:`~devices.model.DeviceAlarms`, repeated every 10 s), all technical and of
low priority: sensor disconnected ``probe_off``, out of track ``searching``, red perfusion
alone ``low_perfusion``, sensor alarm (unusable data) ``sensor_fault``. Artifact is a
quality flag on the values, not an alarm.
"""

from __future__ import annotations

import enum
import functools
from dataclasses import dataclass

from devices.alarms import conditions
from devices.alarms.reporting import AlarmReporter
from devices.codes import PLETH, PULSE_RATE, SPO2
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
from devices.protocols.common import DecoderBase, NumericThrottle, bit7_frames, chunk

FRAME_RATE = 75.0
FRAMES_PER_PACKET = 25
HR_MISSING = 511
SPO2_MISSING = 127
ACK, NAK = 0x06, 0x15


class Format(enum.IntEnum):
    PLETH_8 = 2
    PLETH_16 = 7
    NUMERICS = 8


def select_format(fmt: Format) -> bytes:
    return bytes([0x02, 0x70, 0x02, 0x02, fmt, 0x03])


def parse_select(data: bytes) -> Format | None:
    """The format a host asks for in ``data`` (a select command), else None."""
    if len(data) == 6 and data[:4] == b"\x02\x70\x02\x02" and data[5] == 0x03:
        return Format(data[4]) if data[4] in Format._value2member_map_ else None
    return None


class Status(enum.IntFlag):
    SYNC = 0x01
    GREEN_PERFUSION = 0x02
    RED_PERFUSION = 0x04
    SENSOR_ALARM = 0x08
    OUT_OF_TRACK = 0x10
    ARTIFACT = 0x20
    SENSOR_DISCONNECTED = 0x40
    ALWAYS = 0x80


@dataclass(frozen=True, slots=True)
class Frame:
    status: Status
    pleth: int
    float_byte: int


def _checksum(b: bytes | bytearray) -> int:
    return sum(b) & 0xFF


def encode_frame(fmt: Format, frame: Frame) -> bytes:
    status = int(frame.status | Status.ALWAYS)
    if fmt is Format.PLETH_8:
        head = bytes([0x01, status, frame.pleth & 0xFF, frame.float_byte])
    elif fmt is Format.PLETH_16:
        head = bytes([status, (frame.pleth >> 8) & 0xFF, frame.pleth & 0xFF, frame.float_byte])
    else:
        raise ValueError("format #8 has no frames; use encode_numerics")
    return head + bytes([_checksum(head)])


def packet_floats(heart_rate: int | None, spo2: int | None) -> list[int]:
    """FLOAT bytes for the 25 frames of one packet (the frames this codec reads)."""
    hr = HR_MISSING if heart_rate is None else heart_rate
    floats = [0] * FRAMES_PER_PACKET
    floats[0] = (hr >> 7) & 0x03
    floats[1] = hr & 0x7F
    floats[2] = SPO2_MISSING if spo2 is None else spo2
    return floats


def encode_numerics(status: Status, heart_rate: int | None, spo2: int | None) -> bytes:
    hr = HR_MISSING if heart_rate is None else heart_rate
    s = SPO2_MISSING if spo2 is None else spo2
    return bytes([int(status | Status.ALWAYS), (hr >> 7) & 0x03, hr & 0x7F, s & 0x7F])


def _quality(status: Status) -> Quality:
    q = Quality.OK
    if status & Status.SENSOR_DISCONNECTED:
        q |= Quality.PROBE_OFF
    if status & Status.ARTIFACT:
        q |= Quality.ARTIFACT
    if status & Status.OUT_OF_TRACK:
        q |= Quality.OUT_OF_TRACK
    if status & Status.RED_PERFUSION and not status & Status.GREEN_PERFUSION:
        q |= Quality.LOW_PERFUSION
    return q


def _technical(condition: str) -> DeviceAlarm:
    return DeviceAlarm(condition, AlarmPriority.LOW, AlarmKind.TECHNICAL, SPO2)


def alarms_of(status: Status) -> list[DeviceAlarm]:
    """The alarms one frame's status raises."""
    if status & Status.SENSOR_DISCONNECTED:
        return [_technical(conditions.PROBE_OFF)]
    found = []
    if status & Status.OUT_OF_TRACK:
        found.append(_technical(conditions.SEARCHING))
    if status & Status.RED_PERFUSION and not status & Status.GREEN_PERFUSION:
        found.append(_technical(conditions.LOW_PERFUSION))
    if status & Status.SENSOR_ALARM:
        found.append(_technical(conditions.SENSOR_FAULT))
    return found


def _state(status: Status) -> DeviceState:
    if status & Status.SENSOR_DISCONNECTED:
        return DeviceState.PROBE_OFF
    if status & Status.OUT_OF_TRACK:
        return DeviceState.SEARCHING
    return DeviceState.CONNECTED


class NoninDecoder(DecoderBase):
    """Sans-I/O decoder for one format. Pleth samples become chunks at 75 Hz; HR and SpO2
    are read once a packet (#2, #7) or once a frame (#8)."""

    def __init__(self, device_id: str, fmt: Format = Format.PLETH_8) -> None:
        super().__init__(device_id)
        self.format = fmt
        self._buf = bytearray()
        self._frame_no: int | None = None  # position in the packet, once synchronised
        self._floats: list[int] = []
        self._throttle = NumericThrottle(1)
        self._state: DeviceState | None = None
        self._worst = Status(0)
        every = 10 if fmt is Format.NUMERICS else 10 * int(FRAME_RATE)
        self._alarms = AlarmReporter(device_id, every)
        self._awaiting_answer = True

    def receive_data(self, data: bytes, now: float) -> list[DeviceEvent]:
        self.stats.bytes_in += len(data)
        self._buf += data
        events: list[DeviceEvent] = []
        if self._awaiting_answer and self.format is Format.NUMERICS:
            self._answer(events, now)
        if self.format is Format.NUMERICS:
            self._numerics(events, now)
        else:
            self._frames(events, now)
        return events

    def _answer(self, events: list[DeviceEvent], now: float) -> None:
        """Format #8: take the module's answer to the format select the driver sends first
        (ACK, or NAK: refused) out of the stream: the byte just before the first frame's
        start (or the last byte so far, when no frame has begun), which is not a framing
        fault. (#2 and #7 take it in :meth:`_frames`.)"""
        buf = self._buf
        start = next((k for k, b in enumerate(buf) if b & 0x80), len(buf))
        if start and buf[start - 1] in (ACK, NAK):
            self._answered(events, buf.pop(start - 1), now)

    def _answered(self, events: list[DeviceEvent], answer: int, now: float) -> None:
        self._awaiting_answer = False
        if answer == NAK:
            self._error(events, "format select refused (NAK)", 1, now)

    def _status(self, events: list[DeviceEvent], status: Status, now: float) -> None:
        self._alarms.offer(events, alarms_of(status), self.stats.frames, now)
        state = _state(status)
        if state is not self._state:
            self._state = state
            events.append(DeviceStatus(self.device_id, state, now))

    def _frames(self, events: list[DeviceEvent], now: float) -> None:
        buf, i, n = self._buf, 0, len(self._buf)
        samples: list[float] = []
        skipped = 0
        eight_bit = self.format is Format.PLETH_8
        while i < n:
            # A byte that cannot begin a frame is garbage at once, even at the end of a read.
            first_ok = buf[i] == 0x01 if eight_bit else buf[i] & 0x80
            if first_ok and n - i < 5:
                break  # may be a frame still arriving
            frame = buf[i : i + 5]
            ok = first_ok and (not eight_bit or frame[1] & 0x80)
            if not ok or _checksum(frame[:4]) != frame[4]:
                if self._awaiting_answer and buf[i] in (ACK, NAK):
                    # The answer to the format select, before the first frame: not garbage.
                    self._answered(events, buf[i], now)
                    i += 1
                    continue
                i += 1
                skipped += 1
                continue
            if skipped:
                self._error(events, "bad frame (checksum or framing)", skipped, now)
                skipped = 0
            self._guarded(
                events, now, 5, functools.partial(self._frame, bytes(frame), samples, now)
            )
            i += 5
        if skipped:  # each was checked against a whole 5-byte window: garbage for sure
            self._error(events, "bad frame (checksum or framing)", skipped, now)
        del buf[:i]
        if samples:
            events.append(chunk(PLETH, FRAME_RATE, samples, self.device_id, now))

    def _frame(
        self, frame: bytes, samples: list[float], now: float, events: list[DeviceEvent]
    ) -> None:
        if self.format is Format.PLETH_8:
            status, pleth, value = Status(frame[1]), frame[2], frame[3]
        else:
            status, pleth, value = Status(frame[0]), (frame[1] << 8) | frame[2], frame[3]
        self.stats.frames += 1
        self._awaiting_answer = False
        self._status(events, status, now)
        lost = bool(status & Status.SENSOR_DISCONNECTED)
        samples.append(float("nan") if lost else float(pleth))
        self._packet(events, status, value, now)

    def _packet(self, events: list[DeviceEvent], status: Status, value: int, now: float) -> None:
        if status & Status.SYNC:
            self._frame_no, self._floats, self._worst = 0, [], Status(0)
        if self._frame_no is None:
            return  # not yet synchronised to a packet
        self._floats.append(value)
        self._worst |= status
        self._frame_no += 1
        if self._frame_no == 3:
            hr = ((self._floats[0] & 0x03) << 7) | (self._floats[1] & 0x7F)
            spo2 = self._floats[2] & 0x7F
            self._numeric(events, hr, spo2, self._worst, now)

    def _numeric(
        self, events: list[DeviceEvent], hr: int, spo2: int, status: Status, now: float
    ) -> None:
        q = _quality(status)
        frame = self.stats.frames
        for code, value, missing in ((PULSE_RATE, hr, HR_MISSING), (SPO2, spo2, SPO2_MISSING)):
            invalid = value == missing
            self._throttle.offer(
                events,
                Observation(
                    code,
                    None if invalid else float(value),
                    self.device_id,
                    now,
                    None,
                    q | (Quality.INVALID if invalid else Quality.OK),
                ),
                frame,
            )

    def _numerics(self, events: list[DeviceEvent], now: float) -> None:
        frames, faults, consumed = bit7_frames(self._buf, 4, start_bit=True)
        for reason, skipped in faults:
            self._error(events, reason, skipped, now)
        for frame in frames:
            self._guarded(events, now, 4, functools.partial(self._numerics_frame, frame, now))
        del self._buf[:consumed]

    def _numerics_frame(self, frame: bytes, now: float, events: list[DeviceEvent]) -> None:
        status = Status(frame[0])
        self.stats.frames += 1
        self._awaiting_answer = False
        self._status(events, status, now)
        hr = ((frame[1] & 0x03) << 7) | frame[2]
        self._numeric(events, hr, frame[3], status, now)
