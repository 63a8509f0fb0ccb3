"""HL7 v2 ORU^R01 as IHE PCD-01 (Communicate PCD Data), over MLLP; on the same link, the
ORU^R40 alarm reports of IHE PCD ACM (:mod:`devices.protocols.hl7_acm`).

The route to Nihon Kohden, Mindray, Fukuda and Mediana monitors through their HL7
gateways. Parsing uses python-hl7; this module maps what it parses to the device model:

- OBX-3 names the quantity: ``150456^MDC_PULS_OXIM_SAT_O2^MDC`` (MDC, either NIBP family) or
  a LOINC code (``...^LN``); OBX-4 is the containment hierarchy; OBX-6 the unit;
  OBX-11 the result status (``X``: cannot be obtained); OBX-14 the observation time;
  OBX-18 the device (EUI-64).
- ``NM`` values (and ``SN`` ones: ``^120``) become observations, converted from OBX-6's unit
  to the parameter's canonical one (:mod:`devices.units`; an unknown unit gives no value and
  ``UNIT_UNKNOWN``); the sentinels seen in the wild (-999, -100, -1, -99.9), non-finite
  numbers and status ``X`` become "no value".
- ``NA`` values (``^``-separated samples) become waveform chunks; their sample rate comes
  from an OBX ``0^MDC_ATTR_SAMP_RATE^MDC`` one level below the wave's OBX-4, or at the
  wave's own OBX-4 (both layouts occur).
- One OBX that cannot be used is left out (and named in the answer); the rest is used.
- Codes outside :mod:`devices.codes` are reported once each (an "unmapped" report) and
  counted, never dropped unsaid. Devices are named by :class:`DeviceNames`.

:class:`Hl7Decoder` is sans-I/O: ``receive_data`` returns events and queues an ACK (``AA``)
or NAK (``AE``/``AR`` with the reason in MSA-3) for every message, which
``data_to_send`` hands to whatever carries the bytes. It keeps each device's active ACM
alarms and reports them as :class:`~devices.model.DeviceAlarms` whenever an ORU^R40 changes
them.
"""

from __future__ import annotations

import itertools
import logging
import math
from dataclasses import dataclass, field, replace
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
from devices.protocols.common import DECODER_FAULT, DecoderBase, chunk, finite
from devices.protocols.hl7_acm import AlarmReport, parse_r40
from devices.protocols.mllp import FramingError, MllpFramer, frame
from devices.units import to_canonical, ucum_of_hl7

log = logging.getLogger(__name__)

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
    """An HL7 DTM as epoch seconds, or None when absent or impossible (an offset of a day or
    more, an over-long seconds field, a year out of range): the value is kept, its time is
    unknown."""
    if not text:
        return None
    try:
        parsed = hl7.parse_datetime(text)
        if not isinstance(parsed, datetime):
            return None
        if parsed.tzinfo is None:
            parsed = parsed.replace(tzinfo=UTC)
        return parsed.timestamp()
    except (ValueError, OverflowError, TypeError):
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
    """An NM value; sentinels, non-finite numbers (``1e999``, ``NaN``) and text: None."""
    try:
        value = float(text)
    except ValueError:
        return None
    return None if value in SENTINELS else finite(value)


def _structured(text: str) -> float | None:
    """An SN value (``comparator^num1^separator^num2``): ``^120`` or ``=^120`` is 120. A
    bound (``<^5``), a range or a ratio is not one value: None."""
    parts = [*text.split("^"), "", "", ""][:4]
    comparator, first, separator, second = parts
    if comparator not in ("", "=") or separator or second:
        return None
    return _number(first)


class ObservationError(Hl7Error):
    """One OBX that cannot be used; the rest of its message can."""


@dataclass
class ParsedMessage:
    control_id: str
    events: list[DeviceEvent]
    #: What an ORU^R40 reported (None for an ORU^R01).
    alarm: AlarmReport | None = None
    #: OBX rows refused, each as (its set id or position, why): the rest was used.
    refused: list[tuple[str, str]] = field(default_factory=list)
    #: Codes and units read but not mapped (each once a message).
    unmapped: list[str] = field(default_factory=list)
    #: The message's sender (MSH-3 and MSH-4), "" when it names none.
    sender: str = ""


class DeviceNames:
    """Stable device ids for HL7 senders: ``<base>@<sender>[/<equipment>]``, where the sender
    is MSH-3's namespace id (else its universal id) and MSH-4's (``MONITOR:ICU``), and the
    equipment OBX-18's first component (an EUI-64 in IHE PCD). Never the TCP source port,
    which changes on every reconnection. A row without OBX-18 is the message's equipment when
    the message names exactly one, else the equipment the sender has always named when it
    has named exactly one, else the sender alone: rows with and without OBX-18 of one device
    get one id. A message that names no sender is ``<base>`` (and its equipment)."""

    def __init__(self, base: str) -> None:
        self.base = base
        self._equipment: dict[str, set[str]] = {}

    @staticmethod
    def sender(msh: hl7.Segment) -> str:
        app = _component(msh, 3, 0) or _component(msh, 3, 1)
        facility = _component(msh, 4, 0) or _component(msh, 4, 1)
        return ":".join(p for p in (app, facility) if p)

    def of(self, sender: str, equipment: str, in_message: set[str]) -> str:
        known = self._equipment.setdefault(sender, set())
        known.update(in_message)
        if not equipment:
            if len(in_message) == 1:
                (equipment,) = in_message
            elif not in_message and len(known) == 1:
                (equipment,) = known
        name = f"{self.base}@{sender}" if sender else self.base
        return f"{name}/{equipment}" if equipment else name


def _rate_for(hierarchy: str, rates: dict[str, float]) -> float | None:
    """The sample rate of the wave at OBX-4 ``hierarchy``, in the layouts the IHE PCD
    Technical Framework and common gateways use: an MDC_ATTR_SAMP_RATE OBX one level below
    the wave (``1.1.2.1`` -> ``1.1.2.1.1``), or at the wave's own OBX-4."""
    for h, rate in rates.items():
        if h == hierarchy or h.rsplit(".", 1)[0] == hierarchy:
            return rate
    return None


def _equipment_of(segment: hl7.Segment) -> str:
    return _field(segment, 18).split("~")[0].split("^")[0].strip()


def parse_oru(
    text: str, default_device: str, now: float, names: DeviceNames | None = None
) -> ParsedMessage:
    """Events of one ORU^R01 message, or the alarm of one ORU^R40. Raises
    :class:`Hl7Error` when the message cannot be used; an OBX that cannot be used is left
    out and listed in ``refused``, and the rest of the message is used.

    Devices: with ``names``, the stable ids of :class:`DeviceNames`; without, OBX-18's
    equipment id, else ``default_device`` (reading a file of one source)."""
    try:
        message = hl7.parse(text.replace("\r\n", "\r").replace("\n", "\r"))
        msh = message.segment("MSH")
    except Exception as exc:
        # Untrusted text meets a third-party parser that also asserts and raises TypeError
        # on some malformed input: whatever it raises, the message is refused, not the link.
        raise Hl7Error(f"not an HL7 v2 message: {exc or type(exc).__name__}") from None
    control_id = _field(msh, 10)
    sender = DeviceNames.sender(msh) if names is not None else ""
    kind = (_component(msh, 9, 0), _component(msh, 9, 1))
    if kind == ("ORU", "R40"):
        report = parse_r40(message, "")
        if names is not None:
            device = names.of(sender, report.device_id, {report.device_id} - {""})
        else:
            device = report.device_id or default_device
        return ParsedMessage(control_id, [], replace(report, device_id=device), sender=sender)
    if kind != ("ORU", "R01"):
        raise Hl7Error(f"message type {'^'.join(kind)} is not ORU^R01 (nor ORU^R40)", "AR")
    message_time = _time(_field(msh, 7))
    try:
        segments = list(message.segments("OBX"))
    except KeyError:  # python-hl7's answer when there is no OBX at all
        segments = []
    parsed = ParsedMessage(control_id, [], sender=sender)
    in_message = {e for e in map(_equipment_of, segments) if e}
    rates: dict[str, float] = {}
    for seg in segments:
        code, number = _code(seg)
        if code is None and number == SAMPLE_RATE_CODE:
            rate = _number(_field(seg, 5))
            unit = ucum_of_hl7(_field(seg, 6))
            if rate and rate > 0 and unit in ("", "/s", "Hz"):
                rates[_field(seg, 4)] = rate
    for position, seg in enumerate(segments, start=1):
        where = _field(seg, 1) or str(position)
        try:
            _observation(seg, parsed, rates, message_time, now, in_message, names, default_device)
        except ObservationError as exc:
            parsed.refused.append((where, str(exc)))
        except Exception as exc:  # an OBX nobody foresaw: refused alone, and said
            parsed.refused.append((where, f"{type(exc).__name__}: {exc}"))
    return parsed


def _observation(
    seg: hl7.Segment,
    parsed: ParsedMessage,
    rates: dict[str, float],
    message_time: float | None,
    now: float,
    in_message: set[str],
    names: DeviceNames | None,
    default_device: str,
) -> None:
    """One OBX into ``parsed``. Raises :class:`ObservationError` for one that cannot be used."""
    code, number = _code(seg)
    if code is None:
        if number != SAMPLE_RATE_CODE:
            parsed.unmapped.append(f"OBX-3 {_field(seg, 3)[:80]}")
        return
    equipment = _equipment_of(seg)
    if names is not None:
        device = names.of(parsed.sender, equipment, in_message)
    else:
        device = equipment or default_device
    status = _field(seg, 11).upper()
    device_time = _time(_field(seg, 14)) or message_time
    value_type = _field(seg, 2).upper()
    unit = ucum_of_hl7(_field(seg, 6))
    if value_type == "NA":
        hierarchy = _field(seg, 4)
        rate = _rate_for(hierarchy, rates)
        if rate is None:
            raise ObservationError(f"waveform {code.refid} ({hierarchy}) has no sample rate")
        if to_canonical(code, unit, 1.0) is None:
            parsed.unmapped.append(f"{code.refid} in {_field(seg, 6)[:60]!r}")
            raise ObservationError(f"waveform {code.refid} in an unknown unit")
        samples = [_number(v) for v in _field(seg, 5).split("^")]
        values = [math.nan if v is None else to_canonical(code, unit, v) for v in samples]
        parsed.events.append(
            chunk(
                code,
                rate,
                [math.nan if v is None else v for v in values],
                device,
                now,
                first_time=device_time,
            )
        )
        return
    if value_type not in ("NM", "ST", "SN", ""):
        raise ObservationError(f"{code.refid}: value type {value_type} is not numeric")
    raw = _field(seg, 5)
    value = None if status == "X" else (_structured(raw) if value_type == "SN" else _number(raw))
    quality = Quality.OK
    if value is not None:
        value = to_canonical(code, unit, value)
        if value is None:
            quality |= Quality.UNIT_UNKNOWN
            parsed.unmapped.append(f"{code.refid} in {_field(seg, 6)[:60]!r}")
    if value is None:
        quality |= Quality.INVALID
    parsed.events.append(Observation(code, value, device, now, device_time, quality))


def _err(location: str, code: int, severity: str, text: str) -> str:
    """An ERR segment (HL7 v2.5+): location, HL7 error code (table 0357), severity, and the
    text for a person (ERR-8)."""
    names = {
        100: "Segment sequence error",
        102: "Data type error",
        200: "Unsupported message type",
        207: "Application internal error",
    }
    clean = text.replace("|", "/").replace("^", " ").replace("~", " ").replace("\\", "/")
    clean = clean.replace("&", " ").replace("\r", " ")[:200]
    error = f"{code}^{names.get(code, 'Application error')}^HL70357"
    return f"ERR||{location}|{error}|{severity}||||{clean}"


def _clean(value: str, limit: int = 200) -> str:
    """A value safe inside one field of our answer (which uses ``|^~\\&``)."""
    for char in "|^~\\&\r\n":
        value = value.replace(char, " ")
    return value[:limit]


def ack(
    text: str,
    code: str,
    reason: str = "",
    errors: list[str] | None = None,
) -> str:
    """The ACK for ``text``: MSH with the sender and receiver swapped, MSA with ``code`` (AA,
    AE or AR), the message's control id and ``reason`` in MSA-3, then the ``errors`` (ERR
    segments). Built from the MSH's fields as they are split here, without parsing the
    message again: it never raises, whatever the MSH holds (python-hl7's ``create_ack``
    raised TypeError on an MSH-9 of one component), and costs little."""
    head = text.replace("\n", "\r").split("\r", 1)[0]
    fields = head.split(head[3], 20) if head.startswith("MSH") and len(head) > 3 else []

    def msh(n: int) -> str:  # MSH-n: fields[n - 1], MSH-1 being the separator itself
        value = fields[n - 1] if 1 < n <= len(fields) else ""
        parts = value.split(head[4]) if len(head) > 4 else [value]
        return "^".join(_clean(p, 60) for p in parts[:4])

    def component(n: int, k: int) -> str:
        parts = fields[n - 1].split(head[4]) if 1 < n <= len(fields) and len(head) > 4 else []
        return _clean(parts[k], 40) if len(parts) > k else ""

    now = datetime.now(UTC)
    stamp = now.strftime("%Y%m%d%H%M%S")
    sender = [msh(5), msh(6), msh(3), msh(4)]
    trigger = component(9, 1)
    kind = f"ACK^{trigger}^ACK" if trigger else "ACK"
    control = f"ACK{now.strftime('%Y%m%d%H%M%S%f')}"
    header = [
        "MSH",
        "^~\\&",
        *sender,
        stamp,
        "",
        kind,
        control,
        _clean(msh(11), 3) or "P",
        _clean(msh(12), 10) or "2.6",
    ]
    msa = ["MSA", code, _clean(msh(10), 50).replace("^", " ")]
    if reason:
        msa.append(_clean(reason.replace("^", " ")))
    return "\r".join(["|".join(header), "|".join(msa), *(errors or [])]) + "\r"


class Hl7Decoder(DecoderBase):
    """ORU^R01 over MLLP: bytes in, events out, and ACK/NAK bytes to send back.

    Every message gets an answer, whatever it holds: AA (with an ERR segment of severity W
    for each OBX left out: the rest was used, and a sender that repeated the message would
    only repeat what was stored), AR for a message type it does not take, AE with the reason
    in MSA-3 and ERR for one it cannot use, or for a fault nobody foresaw (a counted
    :data:`~devices.protocols.common.DECODER_FAULT`). ``device_id`` is the base of the
    devices' stable ids (:class:`DeviceNames`); each device is reported CONNECTED the first
    time it is heard on this connection, and :attr:`devices` lists them."""

    def __init__(self, device_id: str) -> None:
        super().__init__(device_id)
        self._framer = MllpFramer()
        self._outgoing = bytearray()
        self._names = DeviceNames(device_id)
        #: The devices heard on this connection, in order.
        self.devices: list[str] = []
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
            self._message(text, len(item) + 3, events, now)
        return events

    def _message(self, text: str, size: int, events: list[DeviceEvent], now: float) -> None:
        """One message, answered whatever happens: the boundary no exception crosses."""
        mine: list[DeviceEvent] = []
        try:
            answer = self._use(text, mine, now)
        except Hl7Error as exc:
            self._error(events, "refused HL7 message", size, now, str(exc))
            code = 200 if exc.ack_code == "AR" else 100
            error = _err("MSH^1^9" if code == 200 else "", code, "E", str(exc))
            self._outgoing += frame(ack(text, exc.ack_code, str(exc), [error]))
            return
        except Exception as exc:
            reason = f"{type(exc).__name__}: {exc}"
            log.warning("%s: decoding an HL7 message raised", self.device_id, exc_info=True)
            self._error(events, DECODER_FAULT, size, now, reason)
            error = _err("", 207, "E", reason)
            self._outgoing += frame(ack(text, "AE", reason, [error]))
            return
        events += mine
        self._outgoing += frame(answer)

    def _use(self, text: str, events: list[DeviceEvent], now: float) -> str:
        """Decode one message into ``events``; the answer to send. Raises Hl7Error."""
        parsed = parse_oru(text, self.device_id, now, self._names)
        self.stats.frames += 1
        for what in dict.fromkeys(parsed.unmapped):
            self._unmapped(events, what, now)
        for where, why in parsed.refused:
            self._error(events, "refused HL7 observation", 0, now, f"OBX {where}: {why}")
        for event in parsed.events:
            self._heard(getattr(event, "device_id", self.device_id), events, now)
            events.append(event)
        if parsed.alarm is not None:
            self._heard(parsed.alarm.device_id, events, now)
            self._alarm(parsed.alarm, events, now)
        if not parsed.events and parsed.alarm is None:
            self._heard(
                f"{self.device_id}@{parsed.sender}" if parsed.sender else self.device_id,
                events,
                now,
            )
        warnings = [_err(f"OBX^{where}", 102, "W", why) for where, why in parsed.refused]
        return ack(text, "AA", "", warnings)

    def _heard(self, device: str, events: list[DeviceEvent], now: float) -> None:
        if device not in self.devices:
            self.devices.append(device)
            events.append(DeviceStatus(device, DeviceState.CONNECTED, now))

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
    #: The value's UCUM unit when it is not the code's own (a monitor set to kPa, [degF]).
    unit: str | None = None


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
            f"{num.unit or num.code.ucum}^{num.unit or num.code.ucum}^UCUM|||||{status}|||"
            f"{_ts(when)}||||"
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
