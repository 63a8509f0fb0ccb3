"""HL7 v2 ORU^R01 as IHE PCD-01 (Communicate PCD Data), over MLLP; on the same link, the
ORU^R40 alarm reports of IHE PCD ACM (:mod:`devices.protocols.hl7_acm`).

The route to Nihon Kohden, Mindray, Fukuda and Mediana monitors through their HL7
gateways. Parsing uses python-hl7; this module maps what it parses to the device model:

- OBX-3 names the quantity: ``150456^MDC_PULS_OXIM_SAT_O2^MDC`` (MDC, either NIBP family) or
  a LOINC code (``...^LN``); OBX-4 is the containment hierarchy; OBX-6 the unit;
  OBX-11 the result status (``X``: cannot be obtained); OBX-14 the observation time;
  OBX-18 the device (EUI-64).
- ``NM`` values become observations; the sentinels seen in the wild (-999, -100, -1, -99.9)
  and status ``X`` become "no value".
- ``NA`` values (``^``-separated samples) become waveform chunks; their sample rate comes
  from the child OBX ``0^MDC_ATTR_SAMP_RATE^MDC`` (OBX-4 one level below the wave's).

:class:`Hl7Decoder` is sans-I/O: ``receive_data`` returns events and queues an ACK (``AA``)
or NAK (``AE``/``AR`` with the reason in MSA-3) for every message, which
``data_to_send`` hands to whatever carries the bytes. It keeps each device's active ACM
alarms and reports them as :class:`~devices.model.DeviceAlarms` whenever an ORU^R40 changes
them.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass
from datetime import UTC, datetime

import hl7

from devices.codes import ALL_CODES, VitalCode, by_mdc
from devices.errors import Hl7Error
from devices.model import (
    DeviceAlarm,
    DeviceAlarms,
    DeviceEvent,
    DeviceState,
    DeviceStatus,
    Observation,
    Quality,
)
from devices.protocols.common import DecoderBase, chunk
from devices.protocols.hl7_acm import AlarmReport, parse_r40
from devices.protocols.mllp import FramingError, MllpFramer, frame

SENTINELS = frozenset({-999.0, -100.0, -1.0, -99.9})
SAMPLE_RATE_CODE = 0  # MDC_ATTR_SAMP_RATE (attribute partition, code 0 in PCD-01 messages)
_BY_LOINC = {c.loinc: c for c in ALL_CODES if c.loinc}


def _field(segment: hl7.Segment, index: int) -> str:
    return str(segment[index]) if len(segment) > index else ""


def _component(segment: hl7.Segment, index: int, component: int) -> str:
    value = _field(segment, index)
    parts = value.split("^")
    return parts[component] if len(parts) > component else ""


def _time(text: str) -> float | None:
    if not text:
        return None
    try:
        parsed = hl7.parse_datetime(text)
    except ValueError:
        return None
    if parsed is None:
        return None
    if not isinstance(parsed, datetime):
        return None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    try:
        return parsed.timestamp()
    except (ValueError, OverflowError):  # an offset of a day or more, a year out of range
        return None


def _code(segment: hl7.Segment) -> tuple[VitalCode | None, int | None]:
    ident = _component(segment, 3, 0)
    system = _component(segment, 3, 2).upper()
    if system == "LN":
        return _BY_LOINC.get(ident), None
    try:
        number = int(ident)
    except ValueError:
        return None, None
    return by_mdc(number), number


def _number(text: str) -> float | None:
    try:
        value = float(text)
    except ValueError:
        return None
    return None if value in SENTINELS or not math.isfinite(value) else value


@dataclass(frozen=True)
class ParsedMessage:
    control_id: str
    events: list[DeviceEvent]
    #: What an ORU^R40 reported (None for an ORU^R01).
    alarm: AlarmReport | None = None


def parse_oru(text: str, default_device: str, now: float) -> ParsedMessage:
    """Events of one ORU^R01 message, or the alarm of one ORU^R40. Raises
    :class:`Hl7Error` when it cannot be used."""
    try:
        message = hl7.parse(text.replace("\r\n", "\r").replace("\n", "\r"))
        msh = message.segment("MSH")
    except Exception as exc:
        # Untrusted text meets a third-party parser that also asserts and raises TypeError
        # on some malformed input: whatever it raises, the message is refused, not the link.
        raise Hl7Error(f"not an HL7 v2 message: {exc or type(exc).__name__}") from None
    control_id = _field(msh, 10)
    kind = (_component(msh, 9, 0), _component(msh, 9, 1))
    if kind == ("ORU", "R40"):
        return ParsedMessage(control_id, [], parse_r40(message, default_device))
    if kind != ("ORU", "R01"):
        raise Hl7Error(f"message type {'^'.join(kind)} is not ORU^R01 (nor ORU^R40)", "AR")
    message_time = _time(_field(msh, 7))
    try:
        segments = list(message.segments("OBX"))
    except KeyError:  # python-hl7's answer when there is no OBX at all
        segments = []
    rates: dict[str, float] = {}
    for seg in segments:
        code, number = _code(seg)
        if code is None and number == SAMPLE_RATE_CODE:
            rate = _number(_field(seg, 5))
            if rate:
                rates[_field(seg, 4)] = rate
    events: list[DeviceEvent] = []
    for seg in segments:
        code, _ = _code(seg)
        if code is None:
            continue  # an MDC/LOINC code outside the table: not ours to pass on
        device = _field(seg, 18).split("^")[0] or default_device
        status = _field(seg, 11).upper()
        device_time = _time(_field(seg, 14)) or message_time
        value_type = _field(seg, 2).upper()
        if value_type == "NA":
            hierarchy = _field(seg, 4)
            rate = next((r for h, r in rates.items() if h.rsplit(".", 1)[0] == hierarchy), None)
            if rate is None:
                raise Hl7Error(f"waveform {code.refid} ({hierarchy}) has no sample rate")
            samples = [_number(v) for v in _field(seg, 5).split("^")]
            events.append(
                chunk(
                    code,
                    rate,
                    [math.nan if v is None else v for v in samples],
                    device,
                    now,
                    first_time=device_time,
                )
            )
        elif value_type in ("NM", "ST", "SN", ""):
            value = None if status == "X" else _number(_field(seg, 5))
            quality = Quality.OK if value is not None else Quality.INVALID
            events.append(Observation(code, value, device, now, device_time, quality))
    return ParsedMessage(control_id, events)


def ack(text: str, code: str, reason: str = "") -> str:
    """The ACK for ``text`` (a message that parsed far enough to have an MSH)."""
    try:
        original = hl7.parse(text.replace("\n", "\r"))
        reply = str(original.create_ack(code))
    except Exception:  # python-hl7 on a malformed MSH (TypeError, AssertionError, ...)
        now = datetime.now(UTC).strftime("%Y%m%d%H%M%S")
        reply = f"MSH|^~\\&|TELEMED|GATEWAY|||{now}||ACK|{now}|P|2.6\rMSA|{code}|"
    if reason:
        reply = reply.rstrip("\r") + "|" + reason.replace("|", "/").replace("\r", " ")[:200]
    return reply.rstrip("\r") + "\r"


class Hl7Decoder(DecoderBase):
    """ORU^R01 over MLLP: bytes in, events out, and ACK/NAK bytes to send back."""

    def __init__(self, device_id: str) -> None:
        super().__init__(device_id)
        self._framer = MllpFramer()
        self._outgoing = bytearray()
        self._connected = False
        #: Active ACM alarms by device, each by its instance key.
        self._alarms: dict[str, dict[str, DeviceAlarm]] = {}

    def data_to_send(self) -> bytes:
        out, self._outgoing = bytes(self._outgoing), bytearray()
        return out

    def receive_data(self, data: bytes, now: float) -> list[DeviceEvent]:
        self.stats.bytes_in += len(data)
        events: list[DeviceEvent] = []
        for item in self._framer.receive_data(data):
            if isinstance(item, FramingError):
                self._error(events, item.reason, item.skipped, now)
                continue
            text = item.decode("utf-8", errors="replace")
            try:
                parsed = parse_oru(text, self.device_id, now)
            except Hl7Error as exc:
                self._error(events, "refused HL7 message", len(item) + 3, now, str(exc))
                self._outgoing += frame(ack(text, exc.ack_code, str(exc)))
                continue
            self.stats.frames += 1
            if not self._connected:
                self._connected = True
                events.append(DeviceStatus(self.device_id, DeviceState.CONNECTED, now))
            events += parsed.events
            if parsed.alarm is not None:
                self._alarm(parsed.alarm, events, now)
            self._outgoing += frame(ack(text, "AA"))
        return events

    def _alarm(self, report: AlarmReport, events: list[DeviceEvent], now: float) -> None:
        """The device's alarms after one ORU^R40, every time (a report is rare, and one
        the gateway lost is made good by the next). The list is what this connection
        reported: a gateway that reconnects tells its alarms anew as they go on."""
        active = self._alarms.setdefault(report.device_id, {})
        if report.ended:
            active.pop(report.key, None)
        else:
            active[report.key] = report.alarm
        events.append(DeviceAlarms(report.device_id, tuple(active.values()), now))


_control_ids = itertools.count(1)


def _ts(t: float) -> str:
    return datetime.fromtimestamp(t, UTC).strftime("%Y%m%d%H%M%S.%f")[:-3] + "+0000"


@dataclass(frozen=True)
class Numeric:
    code: VitalCode
    value: float | None


@dataclass(frozen=True)
class Wave:
    code: VitalCode
    rate: float
    samples: list[float]
    start: float


def build_oru(
    numerics: list[Numeric],
    waves: list[Wave],
    when: float,
    device_eui: str = "0123456789ABCDEF",
    control_id: str | None = None,
) -> str:
    """An IHE PCD-01 ORU^R01 (what a monitor's HL7 gateway sends)."""
    cid = control_id or f"MSG{next(_control_ids):08d}"
    lines = [
        f"MSH|^~\\&|MONITOR^{device_eui}^EUI-64|ICU|TELEMED|GATEWAY|{_ts(when)}||"
        f"ORU^R01^ORU_R01|{cid}|P|2.6|||NE|AL||UNICODE UTF-8|||"
        "IHE_PCD_001^IHE PCD^1.3.6.1.4.1.19376.1.6.1.1.1^ISO",
        "PID|||0000000^^^HOSP^MR",
        f"OBR|1|||182777000^monitoring of patient^SNOMED-CT|||{_ts(when)}",
    ]
    n = 0
    for k, num in enumerate(numerics, start=1):
        n += 1
        value = "" if num.value is None else f"{num.value:g}"
        status = "X" if num.value is None else "R"
        lines.append(
            f"OBX|{n}|NM|{num.code.mdc}^{num.code.refid}^MDC|1.1.1.{k}|{value}|"
            f"{num.code.ucum}^{num.code.ucum}^UCUM|||||{status}|||{_ts(when)}||||"
            f"{device_eui}^EUI-64"
        )
    for k, wave in enumerate(waves, start=1):
        n += 1
        hierarchy = f"1.1.2.{k}"
        values = "^".join("" if math.isnan(v) else f"{v:.4g}" for v in wave.samples)
        lines.append(
            f"OBX|{n}|NA|{wave.code.mdc}^{wave.code.refid}^MDC|{hierarchy}|{values}|"
            f"{wave.code.ucum}^{wave.code.ucum}^UCUM|||||R|||{_ts(wave.start)}||||"
            f"{device_eui}^EUI-64"
        )
        n += 1
        lines.append(
            f"OBX|{n}|NM|0^MDC_ATTR_SAMP_RATE^MDC|{hierarchy}.1|{wave.rate:g}|/s^/s^UCUM|||||R"
        )
    return "\r".join(lines) + "\r"
