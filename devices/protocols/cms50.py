"""Contec CMS50D+/CMS50E pulse oximeters.

**V7.0 stream** (CP210x USB serial, 115200 8N1). Every packet starts with a type byte whose
bit 7 is 0; the next byte is a "high byte" whose bit *i* is bit 7 of data byte *i*; the high
byte and every data byte have bit 7 forced to 1, which is what makes resynchronisation
possible. Live data is type 0x01, 9 bytes, 60 packets a second, and only flows after the host
sends "start live data" and keeps answering with "still connected" (the device drops the link
after about a second without it)::

    d0  bits 0-3 signal strength, 4 searching too long, 5 low SpO2, 6 pulse beep, 7 probe error
    d1  bits 0-6 pleth (0-127), bit 7 searching for pulse
    d2  bits 0-3 bar graph, bit 4 PI invalid
    d3  pulse rate (0xFF invalid)      d4  SpO2 (0x7F invalid)      d5 d6  PI x100, little-endian

Commands are 9 bytes: ``7D 81 <cmd> 80 80 80 80 80 80`` (A1 start live, A2 stop, AF still
connected).

**Legacy stream** (older firmware: 19200 or 4800 baud, 8O1, streams unasked): 5-byte packets
at 60/s, bit 7 set only on the first byte::

    b0  bit 7 sync, bits 0-3 signal strength, 4 searching too long, 6 pulse beep
    b1  pleth (0-127)
    b2  bits 0-3 bar graph, 4 probe error, 5 searching, 6 pulse rate bit 7
    b3  pulse rate bits 0-6            b4  SpO2 (0x7F invalid)

Alarms (:class:`~devices.model.DeviceAlarms`, repeated every 10 s): probe error is a
technical ``probe_off``, searching (or searching too long) a technical ``searching``, both
low priority; the V7.0 "low SpO2" bit is the oximeter's own ``spo2_low``, medium priority
(the protocol gives no priority: medium is what the gateway's own SpO2 limit has).
"""

from __future__ import annotations

import enum
import functools
from dataclasses import dataclass

from devices.alarms import conditions
from devices.alarms.reporting import AlarmReporter
from devices.codes import PERFUSION_INDEX, PLETH, PULSE_RATE, SPO2, VitalCode
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
from devices.protocols.common import DecoderBase, NumericThrottle, bit7_frames, chunk

SAMPLE_RATE = 60.0
LIVE_DATA = 0x01
LIVE_LENGTH = 9
COMMAND_HEADER = 0x7D
COMMAND_LENGTH = 9


class Command(enum.IntEnum):
    START_LIVE = 0xA1
    STOP_LIVE = 0xA2
    STILL_CONNECTED = 0xAF


def encode_command(command: Command) -> bytes:
    return bytes([COMMAND_HEADER, 0x81, command, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80])


@dataclass(frozen=True, slots=True)
class LiveSample:
    """One live-data packet, as fields. ``None`` is the device's "invalid"."""

    pleth: int
    pulse_rate: int | None
    spo2: int | None
    perfusion_index: float | None  # percent
    signal_strength: int = 0
    bar_graph: int = 0
    probe_error: bool = False
    searching: bool = False
    searching_too_long: bool = False
    low_spo2: bool = False
    pulse_beep: bool = False


def _with_high_byte(kind: int, data: list[int]) -> bytes:
    high = 0x80
    for i, value in enumerate(data):
        if value & 0x80:
            high |= 1 << i
    return bytes([kind, high, *(0x80 | (v & 0x7F) for v in data)])


def encode_live(s: LiveSample) -> bytes:
    """The V7.0 live-data packet for ``s`` (what a CMS50D+/E sends)."""
    d0 = (
        (s.signal_strength & 0x0F)
        | (0x10 if s.searching_too_long else 0)
        | (0x20 if s.low_spo2 else 0)
        | (0x40 if s.pulse_beep else 0)
        | (0x80 if s.probe_error else 0)
    )
    d1 = (s.pleth & 0x7F) | (0x80 if s.searching else 0)
    d2 = (s.bar_graph & 0x0F) | (0x10 if s.perfusion_index is None else 0)
    d3 = 0xFF if s.pulse_rate is None else s.pulse_rate
    d4 = 0x7F if s.spo2 is None else s.spo2
    pi = 0xFFFF if s.perfusion_index is None else round(s.perfusion_index * 100)
    return _with_high_byte(LIVE_DATA, [d0, d1, d2, d3, d4, pi & 0xFF, pi >> 8])


def encode_legacy(s: LiveSample) -> bytes:
    """The 5-byte packet older firmware streams."""
    pr = 0 if s.pulse_rate is None else s.pulse_rate
    b0 = (
        0x80
        | (s.signal_strength & 0x0F)
        | (0x10 if s.searching_too_long else 0)
        | (0x40 if s.pulse_beep else 0)
    )
    b2 = (
        (s.bar_graph & 0x0F)
        | (0x10 if s.probe_error else 0)
        | (0x20 if s.searching else 0)
        | (0x40 if pr & 0x80 else 0)
    )
    spo2 = 0x7F if s.spo2 is None else s.spo2
    return bytes([b0, s.pleth & 0x7F, b2, pr & 0x7F, spo2 & 0x7F])


def parse_live(packet: bytes) -> LiveSample:
    """Fields of one complete V7.0 live-data packet. Raises
    :class:`~devices.errors.CodecError` when it is not one."""
    if len(packet) != LIVE_LENGTH or packet[0] != LIVE_DATA:
        raise CodecError("not a 9-byte live-data packet")
    if not all(b & 0x80 for b in packet[1:]):
        raise CodecError("live-data packet with a data byte lacking bit 7")
    high = packet[1]
    d = [(b & 0x7F) | (0x80 if high & (1 << k) else 0) for k, b in enumerate(packet[2:])]
    pi_raw = d[5] | (d[6] << 8)
    pi_invalid = bool(d[2] & 0x10) or pi_raw == 0xFFFF
    return LiveSample(
        pleth=d[1] & 0x7F,
        pulse_rate=None if d[3] == 0xFF else d[3],
        spo2=None if d[4] == 0x7F else d[4],
        perfusion_index=None if pi_invalid else pi_raw / 100,
        signal_strength=d[0] & 0x0F,
        bar_graph=d[2] & 0x0F,
        probe_error=bool(d[0] & 0x80),
        searching=bool(d[1] & 0x80),
        searching_too_long=bool(d[0] & 0x10),
        low_spo2=bool(d[0] & 0x20),
        pulse_beep=bool(d[0] & 0x40),
    )


def _quality(s: LiveSample) -> Quality:
    q = Quality.OK
    if s.probe_error:
        q |= Quality.PROBE_OFF
    if s.searching or s.searching_too_long:
        q |= Quality.SEARCHING
    return q


PROBE_OFF = DeviceAlarm(conditions.PROBE_OFF, AlarmPriority.LOW, AlarmKind.TECHNICAL, SPO2)
SEARCHING = DeviceAlarm(conditions.SEARCHING, AlarmPriority.LOW, AlarmKind.TECHNICAL, SPO2)
LOW_SPO2 = DeviceAlarm(conditions.SPO2_LOW, AlarmPriority.MEDIUM, AlarmKind.PHYSIOLOGICAL, SPO2)


def alarms_of(s: LiveSample) -> list[DeviceAlarm]:
    """The alarms one packet's flags raise."""
    if s.probe_error:
        return [PROBE_OFF]  # nothing else means anything with the probe off
    found = [SEARCHING] if s.searching or s.searching_too_long else []
    return [*found, LOW_SPO2] if s.low_spo2 else found


def _state(s: LiveSample) -> DeviceState:
    if s.probe_error:
        return DeviceState.PROBE_OFF
    if s.searching or s.searching_too_long:
        return DeviceState.SEARCHING
    return DeviceState.CONNECTED


class _Cms50Base(DecoderBase):
    #: Whether the firmware measures a perfusion index at all.
    has_perfusion_index = True

    def __init__(self, device_id: str, numerics_every: int = 60) -> None:
        super().__init__(device_id)
        self._buf = bytearray()
        self._throttle = NumericThrottle(numerics_every)
        self._state: DeviceState | None = None
        self._alarms = AlarmReporter(device_id, every=10 * int(SAMPLE_RATE))

    def _emit(
        self, s: LiveSample, events: list[DeviceEvent], samples: list[float], now: float
    ) -> None:
        self.stats.frames += 1
        quality = _quality(s)
        state = _state(s)
        if state is not self._state:
            self._state = state
            events.append(DeviceStatus(self.device_id, state, now))
        self._alarms.offer(events, alarms_of(s), self.stats.frames, now)
        # Pleth is meaningless with the probe off: a gap, not a zero.
        samples.append(float("nan") if s.probe_error else float(s.pleth))
        frame = self.stats.frames
        reported: list[tuple[VitalCode, float | None]] = [
            (SPO2, s.spo2),
            (PULSE_RATE, s.pulse_rate),
        ]
        if self.has_perfusion_index:  # a firmware without one says nothing of it
            reported.append((PERFUSION_INDEX, s.perfusion_index))
        for code, value in reported:
            q = quality | (Quality.INVALID if value is None else Quality.OK)
            self._throttle.offer(
                events,
                Observation(
                    code, None if value is None else float(value), self.device_id, now, None, q
                ),
                frame,
            )

    def _finish(self, events: list[DeviceEvent], samples: list[float], now: float) -> None:
        if samples:
            events.append(chunk(PLETH, SAMPLE_RATE, samples, self.device_id, now))


class Cms50Decoder(_Cms50Base):
    """Decodes the V7.0 device-to-host stream. Sans-I/O: feed bytes, get events."""

    def _live(
        self, packet: bytes, events: list[DeviceEvent], *, samples: list[float], now: float
    ) -> None:
        self._emit(parse_live(packet), events, samples, now)

    def receive_data(self, data: bytes, now: float) -> list[DeviceEvent]:
        """Decode what arrived at gateway time ``now``; keeps an incomplete tail for later."""
        self.stats.bytes_in += len(data)
        buf = self._buf
        buf += data
        events: list[DeviceEvent] = []
        samples: list[float] = []
        i = 0
        n = len(buf)
        while i < n:
            if buf[i] & 0x80:
                start = i
                while i < n and buf[i] & 0x80:
                    i += 1
                self._error(events, "bytes outside a packet (no type byte)", i - start, now)
                continue
            kind = buf[i]
            if kind != LIVE_DATA:
                # Replies to commands we never send (device info, stored records): skipped
                # whole, up to the next type byte.
                j = i + 1
                while j < n and buf[j] & 0x80:
                    j += 1
                if j == n and n - i < 64:
                    break  # may still be arriving
                self._error(events, f"unsupported packet type 0x{kind:02X}", j - i, now)
                i = j
                continue
            if n - i < LIVE_LENGTH:
                break
            body = buf[i + 1 : i + LIVE_LENGTH]
            short = next((k for k, b in enumerate(body) if not b & 0x80), None)
            if short is not None:
                self._error(events, "truncated packet", short + 1, now)
                i += short + 1
                continue
            packet = bytes(buf[i : i + LIVE_LENGTH])
            self._guarded(
                events,
                now,
                LIVE_LENGTH,
                functools.partial(self._live, packet, samples=samples, now=now),
            )
            i += LIVE_LENGTH
        del buf[:i]
        self._finish(events, samples, now)
        return events


class Cms50LegacyDecoder(_Cms50Base):
    """Decodes the 5-byte stream of older firmware (which has no perfusion index)."""

    has_perfusion_index = False

    def _frame(
        self, frame: bytes, samples: list[float], now: float, events: list[DeviceEvent]
    ) -> None:
        b0, b1, b2, b3, b4 = frame
        pr = b3 | (0x80 if b2 & 0x40 else 0)
        sample = LiveSample(
            pleth=b1,
            pulse_rate=None if pr in (0, 0xFF) else pr,
            spo2=None if b4 in (0, 0x7F) else b4,
            perfusion_index=None,
            signal_strength=b0 & 0x0F,
            bar_graph=b2 & 0x0F,
            probe_error=bool(b2 & 0x10),
            searching=bool(b2 & 0x20),
            searching_too_long=bool(b0 & 0x10),
            pulse_beep=bool(b0 & 0x40),
        )
        self._emit(sample, events, samples, now)

    def receive_data(self, data: bytes, now: float) -> list[DeviceEvent]:
        self.stats.bytes_in += len(data)
        buf = self._buf
        buf += data
        events: list[DeviceEvent] = []
        samples: list[float] = []
        frames, faults, consumed = bit7_frames(buf, 5, start_bit=True)
        for reason, skipped in faults:
            self._error(events, reason, skipped, now)
        for frame in frames:
            self._guarded(
                events, now, len(frame), functools.partial(self._frame, frame, samples, now)
            )
        del buf[:consumed]
        self._finish(events, samples, now)
        return events


class Cms50CommandDecoder(DecoderBase):
    """What a simulated CMS50 reads from the host: 9-byte commands."""

    def __init__(self, device_id: str = "host") -> None:
        super().__init__(device_id)
        self._buf = bytearray()

    def receive_data(self, data: bytes) -> list[Command | int]:
        """Commands in order; an unknown command byte is returned as its int value."""
        self._buf += data
        out: list[Command | int] = []
        buf, i = self._buf, 0
        while i < len(buf):
            if buf[i] != COMMAND_HEADER:
                self.stats.error("garbage before command")
                i += 1
                continue
            if len(buf) - i < COMMAND_LENGTH:
                break
            cmd = buf[i + 2]
            self.stats.frames += 1
            out.append(Command(cmd) if cmd in Command._value2member_map_ else cmd)
            i += COMMAND_LENGTH
        del buf[:i]
        return out
