"""Data Export data types and the identifiers this code uses (big-endian throughout)."""

from __future__ import annotations

import math
import struct
from dataclasses import dataclass
from datetime import datetime, tzinfo

from devices.errors import CodecError

# Session (SPDU) types: the first payload byte.
SESSION_AARQ = 0x0D  # association request
SESSION_AARE = 0x0E  # association accepted
SESSION_REFUSE = 0x0C
SESSION_RLRQ = 0x09  # release request
SESSION_RLRE = 0x0A  # release response
SESSION_ABORT = 0x19
SESSION_DATA = 0xE1  # data export (remote operation) message

# Remote operation types.
ROIV, RORS, ROER, ROLRS = 1, 2, 3, 5
# Command types.
CMD_EVENT_REPORT = 0
CMD_CONFIRMED_EVENT_REPORT = 1
CMD_GET = 3
CMD_SET = 4
CMD_CONFIRMED_SET = 5
CMD_CONFIRMED_ACTION = 7

NOM_MOC_VMS_MDS = 0x0021
NOM_MOC_VMO_METRIC_NU = 0x0006  # numerics
NOM_MOC_VMO_METRIC_SA_RT = 0x0009  # real-time sample arrays (waves)
NOM_PART_OBJ = 1
NOM_NOTI_MDS_CREAT = 0x0D06
NOM_NOTI_MDS_CONNECT_INDIC = 0x0D17
NOM_ACT_POLL_MDIB_DATA_EXT = 0xF13B
NOM_ATTR_TIME_PD_POLL = 0xF13E
NOM_ATTR_POLL_RTSA_PRIO_LIST = 0xF23A

NOM_ATTR_ID_HANDLE = 0x0921
NOM_ATTR_ID_LABEL = 0x0924
NOM_ATTR_NU_CMPD_VAL_OBS = 0x094B
NOM_ATTR_NU_VAL_OBS = 0x0950
NOM_ATTR_SA_CMPD_VAL_OBS = 0x0967
NOM_ATTR_SA_SPECN = 0x096D
NOM_ATTR_SA_VAL_OBS = 0x096E
NOM_ATTR_SCALE_SPECN_I16 = 0x096F
NOM_ATTR_TIME_PD_SAMP = 0x098D
NOM_ATTR_TIME_STAMP_ABS = 0x0990
NOM_ATTR_TIME_ABS = 0x0987
NOM_ATTR_TIME_REL = 0x098F

#: MDC codes are the SCADA partition (2) shifted over the 16-bit physio id.
SCADA_PARTITION = 2

# MeasurementState bits.
STATE_INVALID = 0x8000
STATE_QUESTIONABLE = 0x4000
STATE_UNAVAILABLE = 0x2000
STATE_CALIBRATION = 0x1000
STATE_TEST_DATA = 0x0800
STATE_DEMO_DATA = 0x0400

#: RelativeTime ticks a second (1/8 ms).
TICKS_PER_S = 8000

_FLOAT_NAN = 0x007FFFFF
_FLOAT_NRES = 0x00800000
_FLOAT_INF = (0x007FFFFE, 0x00800002)


def mdc_of(physio_id: int) -> int:
    return (SCADA_PARTITION << 16) | physio_id


def decode_float(raw: int) -> float | None:
    """FLOAT-Type: signed 8-bit exponent, signed 24-bit mantissa; NaN/NRes/INF: None."""
    mantissa = raw & 0x00FFFFFF
    if mantissa in (_FLOAT_NAN, _FLOAT_NRES, *_FLOAT_INF):
        return None
    if mantissa & 0x800000:
        mantissa -= 1 << 24
    exponent = (raw >> 24) & 0xFF
    if exponent & 0x80:
        exponent -= 256
    # Divide for negative exponents: 368 / 10 is 36.8, 368 * 0.1 is 36.800000000000004.
    return mantissa / 10**-exponent if exponent < 0 else float(mantissa * 10**exponent)


def encode_float(value: float | None, decimals: int = 2) -> int:
    if value is None or math.isnan(value):
        return _FLOAT_NAN
    exponent = -decimals
    mantissa = round(value * 10.0**decimals)
    while abs(mantissa) >= 1 << 23:
        mantissa //= 10
        exponent += 1
    while exponent < 0 and mantissa % 10 == 0 and mantissa != 0:
        mantissa //= 10
        exponent += 1
    if mantissa == 0:
        exponent = 0
    return ((exponent & 0xFF) << 24) | (mantissa & 0xFFFFFF)


def _bcd(b: int) -> int:
    return (b >> 4) * 10 + (b & 0x0F)


def _to_bcd(v: int) -> int:
    return ((v // 10) << 4) | (v % 10)


def decode_abs_time(raw: bytes, tz: tzinfo) -> float | None:
    """AbsoluteTime: 8 BCD bytes (century, year, month, day, hour, minute, second,
    hundredths); all 0xFF means "not set"."""
    if len(raw) != 8 or raw == b"\xff" * 8:
        return None
    try:
        moment = datetime(
            _bcd(raw[0]) * 100 + _bcd(raw[1]),
            _bcd(raw[2]),
            _bcd(raw[3]),
            _bcd(raw[4]),
            _bcd(raw[5]),
            _bcd(raw[6]),
            _bcd(raw[7]) * 10_000,
            tzinfo=tz,
        )
    except ValueError:
        return None
    return moment.timestamp()


def encode_abs_time(moment: datetime) -> bytes:
    return bytes(
        _to_bcd(v)
        for v in (
            moment.year // 100,
            moment.year % 100,
            moment.month,
            moment.day,
            moment.hour,
            moment.minute,
            moment.second,
            moment.microsecond // 10_000,
        )
    )


@dataclass(frozen=True)
class Ava:
    """One attribute value assertion: id and raw value."""

    attribute_id: int
    value: bytes


class Reader:
    """A cursor over big-endian bytes; raises :class:`~devices.errors.CodecError` (a
    ValueError) when a structure runs past the end."""

    def __init__(self, data: bytes, offset: int = 0, end: int | None = None) -> None:
        self.data = data
        self.pos = offset
        self.end = len(data) if end is None else end
        if self.end > len(data):
            raise CodecError("structure longer than the message")

    def take(self, n: int) -> bytes:
        if n < 0 or self.pos + n > self.end:
            raise CodecError(f"needs {n} bytes at {self.pos}, only {self.end - self.pos} left")
        out = self.data[self.pos : self.pos + n]
        self.pos += n
        return out

    def u8(self) -> int:
        return self.take(1)[0]

    def u16(self) -> int:
        return int(struct.unpack(">H", self.take(2))[0])

    def u32(self) -> int:
        return int(struct.unpack(">I", self.take(4))[0])

    def sub(self, length: int) -> Reader:
        """A reader over the next ``length`` bytes (and skip them here)."""
        start = self.pos
        self.take(length)
        return Reader(self.data, start, start + length)

    def attribute_list(self) -> list[Ava]:
        count, length = self.u16(), self.u16()
        body = self.sub(length)
        avas = []
        for _ in range(count):
            attr, size = body.u16(), body.u16()
            avas.append(Ava(attr, body.take(size)))
        return avas


def attribute_list(avas: list[Ava]) -> bytes:
    body = b"".join(struct.pack(">HH", a.attribute_id, len(a.value)) + a.value for a in avas)
    return struct.pack(">HH", len(avas), len(body)) + body
