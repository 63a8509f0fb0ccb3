"""HL7 v2 ORU^R40 as IHE PCD ACM (Alert Communication Management, transaction PCD-04
"Report Alert"): what a monitor's HL7 gateway sends when one of its alarms starts, goes on,
changes or ends. Parsed with python-hl7; sans-I/O (:class:`~devices.protocols.hl7_pcd.
Hl7Decoder` reads both ORU^R01 and these over one MLLP link).

One message reports one alarm. Read from it, tolerantly (gateways differ):

- the alarm's identity: OBR-3 (the filler's alarm instance id), else OBR-2, else the event
  and its source;
- the event: the OBX whose OBX-3 is an event code (``MDC_EVT_...``; when OBX-3 is the
  generic ``196616^MDC_EVT_ALARM``, the specific event is the coded OBX-5); plain text in
  OBX-5 is the device's words;
- priority and kind: OBX-8's abnormal flags (``PH``/``PM``/``PL``/``PN`` priority,
  ``SP`` physiological, ``ST`` technical, ``SA`` advisory), or the attribute OBXs
  ``MDC_ATTR_ALARM_PRIORITY`` and ``MDC_ATTR_ALERT_TYPE``;
- the parameter: an OBX with a vital-sign code of :mod:`devices.codes` (the measured value),
  or the code named by ``MDC_ATTR_ALERT_SOURCE``;
- phase and state: ``MDC_ATTR_EVENT_PHASE`` (start, continue, update, escalate, end,
  stop...) and ``MDC_ATTR_ALARM_STATE`` (active, latched, inactive): ``end``/``stop`` or
  ``inactive`` ends the alarm.

Attribute OBXs are matched by their reference id or term code in any component of OBX-3, as
gateways in the wild order them either way.
"""

from __future__ import annotations

import itertools
import re
from dataclasses import dataclass
from datetime import UTC, datetime

import hl7

from devices.alarms import conditions
from devices.codes import VitalCode, by_mdc, by_refid
from devices.errors import Hl7Error
from devices.model import AlarmKind, AlarmPriority, DeviceAlarm

MDC_EVT_ALARM = "196616^MDC_EVT_ALARM^MDC"
_PHASE = {"MDC_ATTR_EVENT_PHASE", "MDC_ATTR_EVT_PHASE", "68481"}
_STATE = {"MDC_ATTR_ALARM_STATE", "68482"}
_INACTIVATION = {"MDC_ATTR_ALARM_INACTIVATION_STATE", "68483"}
_PRIORITY = {"MDC_ATTR_ALARM_PRIORITY", "68484"}
_TYPE = {"MDC_ATTR_ALERT_TYPE", "68485"}
_SOURCE = {"MDC_ATTR_ALERT_SOURCE", "68164"}
_ATTRIBUTES = _PHASE | _STATE | _INACTIVATION | _PRIORITY | _TYPE | _SOURCE

_PRIORITIES = {"PH": AlarmPriority.HIGH, "PM": AlarmPriority.MEDIUM, "PL": AlarmPriority.LOW}
_KINDS = {"SP": AlarmKind.PHYSIOLOGICAL, "ST": AlarmKind.TECHNICAL, "SA": AlarmKind.TECHNICAL}
_ENDED_PHASES = {"end", "stop"}
#: Events whose meaning does not depend on the parameter.
_EVENTS = {
    "MDC_EVT_DESAT": conditions.SPO2_DESAT,
    "MDC_EVT_APNEA": conditions.APNEA,
    "MDC_EVT_ECG_ASYSTOLE": conditions.ASYSTOLE,
    "MDC_EVT_ECG_V_FIB": conditions.VFIB_VTACH,
    "MDC_EVT_ECG_V_FIB_TACHY": conditions.VFIB_VTACH,
    "MDC_EVT_ECG_V_TACHY": conditions.VFIB_VTACH,
    "MDC_EVT_ECG_BRADY_EXTREME": conditions.BRADY_EXTREME,
    "MDC_EVT_ECG_TACHY_EXTREME": conditions.TACHY_EXTREME,
    "MDC_EVT_ECG_LEAD_OFF": conditions.LEADS_OFF,
    "MDC_EVT_LEADS_OFF": conditions.LEADS_OFF,
    "MDC_EVT_ECG_LEAD_DISCONN": conditions.LEADS_OFF,
    "MDC_EVT_SENSOR_DISCONN": conditions.PROBE_OFF,
    "MDC_EVT_SENSOR_MALF": conditions.SENSOR_FAULT,
    "MDC_EVT_SIG_LO": conditions.LOW_SIGNAL,
}
_LOW = re.compile(r"_LO(_|$)")
_HIGH = re.compile(r"_HI(_|$)")


@dataclass(frozen=True)
class AlarmReport:
    """One ORU^R40: which alarm (``key``, unique at the sending device), from which device,
    what it is, and whether it has ended."""

    key: str
    device_id: str
    alarm: DeviceAlarm
    ended: bool
    phase: str = ""


def _field(segment: hl7.Segment, index: int) -> str:
    return str(segment[index]) if len(segment) > index else ""


def _components(segment: hl7.Segment, index: int) -> list[str]:
    return _field(segment, index).split("^")


def _code_of(parts: list[str]) -> VitalCode | None:
    """A vital-sign code from ``number^REFID^MDC`` (either order)."""
    for part in parts:
        if part.isdigit() and (code := by_mdc(int(part))) is not None:
            return code
        if (code := by_refid(part)) is not None:
            return code
    return None


def _event_refid(parts: list[str]) -> str | None:
    return next((p for p in parts if p.startswith(("MDC_EVT", "MDCX_EVT"))), None)


def condition_of(event: str, code: VitalCode | None) -> str:
    """The condition key of an ACM event reference id about ``code``."""
    if event in _EVENTS:
        return _EVENTS[event]
    if code is not None and _LOW.search(event):
        return conditions.low(code)
    if code is not None and _HIGH.search(event):
        return conditions.high(code)
    return conditions.DEVICE


def parse_r40(message: hl7.Message, default_device: str) -> AlarmReport:
    """The alarm one parsed ORU^R40 reports. Raises :class:`Hl7Error` when it names none."""
    try:
        segments = list(message.segments("OBX"))
    except KeyError:
        segments = []
    event: str | None = None
    words = ""
    flags: list[str] = []
    code: VitalCode | None = None
    attributes: dict[str, str] = {}
    device = default_device
    for seg in segments:
        ident = _components(seg, 3)
        value = _field(seg, 5)
        if (named := set(ident) & _ATTRIBUTES) and value:
            attributes[named.pop()] = value
            continue
        refid = _event_refid(ident)
        if refid is not None and event is None:
            # The generic MDC_EVT_ALARM names the specific event in a coded OBX-5.
            specific = _event_refid(value.split("^")) if "^" in value else None
            event = specific or refid
            words = "" if "^" in value else value
            flags = _field(seg, 8).split("~")
            if eui := _field(seg, 18).split("^")[0]:
                device = eui
            continue
        if code is None:
            code = _code_of(ident)
    if event is None:
        raise Hl7Error("ORU^R40 without an alarm event (no OBX with an MDC_EVT code)")
    for name in _SOURCE:
        if code is None and name in attributes:
            code = _code_of(attributes[name].split("^"))
    priority = next((_PRIORITIES[f] for f in flags if f in _PRIORITIES), None)
    for name in _PRIORITY:
        priority = _PRIORITIES.get(attributes.get(name, "").upper(), priority)
    kind = next((_KINDS[f] for f in flags if f in _KINDS), None)
    for name in _TYPE:
        kind = _KINDS.get(attributes.get(name, "").upper(), kind)
    phase = next((attributes[n] for n in _PHASE if n in attributes), "").lower()
    state = next((attributes[n] for n in _STATE if n in attributes), "").lower()
    try:
        obr = message.segment("OBR")
    except KeyError:
        obr = None
    instance = "" if obr is None else _components(obr, 3)[0] or _components(obr, 2)[0]
    condition = condition_of(event, code)
    alarm = DeviceAlarm(
        condition=condition,
        priority=priority or AlarmPriority.MEDIUM,
        kind=kind or AlarmKind.PHYSIOLOGICAL,
        code=code,
        text=(words or (event if condition == conditions.DEVICE else ""))[:256],
    )
    key = instance or f"{event}/{code.key if code else ''}"
    ended = phase in _ENDED_PHASES or state == "inactive"
    return AlarmReport(key, device, alarm, ended, phase)


# -- building (what a monitor's gateway sends) ---------------------------------------------------

_control_ids = itertools.count(1)


def _ts(t: float) -> str:
    return datetime.fromtimestamp(t, UTC).strftime("%Y%m%d%H%M%S.%f")[:-3] + "+0000"


#: The ACM event reported for each condition a simulated monitor raises (MDC event codes:
#: partition 3, so 196608 + the term code).
EVENT_OF_CONDITION = {
    conditions.SPO2_DESAT: "199854^MDC_EVT_DESAT^MDC",
    conditions.PROBE_OFF: "196916^MDC_EVT_SENSOR_DISCONN^MDC",
    conditions.LEADS_OFF: "196882^MDC_EVT_LEADS_OFF^MDC",
}


def build_r40(
    alarm: DeviceAlarm,
    instance: str,
    phase: str,
    when: float,
    *,
    value: float | None = None,
    device_eui: str = "0123456789ABCDEF",
    control_id: str | None = None,
) -> str:
    """An IHE PCD-04 ORU^R40 reporting ``alarm`` (instance id ``instance``) in ``phase``
    (``start``, ``continue``, ``end``...); ``value``: the parameter's value, for a limit
    alarm. Event codes: ``MDC_EVT_LO``/``MDC_EVT_HI`` for limit conditions, those of
    :data:`EVENT_OF_CONDITION`, else the generic ``MDC_EVT_ALARM`` with the text."""
    cid = control_id or f"ALM{next(_control_ids):08d}"
    code = alarm.code
    if alarm.condition in EVENT_OF_CONDITION:
        event = EVENT_OF_CONDITION[alarm.condition]
    elif code is not None and alarm.condition == conditions.low(code):
        event = "196670^MDC_EVT_LO^MDC"
    elif code is not None and alarm.condition == conditions.high(code):
        event = "196648^MDC_EVT_HI^MDC"
    else:
        event = MDC_EVT_ALARM
    priority = {v: k for k, v in _PRIORITIES.items()}[alarm.priority]
    kind = "SP" if alarm.kind is AlarmKind.PHYSIOLOGICAL else "ST"
    abnormal = (
        "L"
        if alarm.condition.endswith("_low")
        else "H"
        if alarm.condition.endswith("_high")
        else ""
    )
    flags = "~".join(f for f in (abnormal, priority, kind) if f)
    state = "inactive" if phase in _ENDED_PHASES else "active"
    lines = [
        f"MSH|^~\\&|MONITOR^{device_eui}^EUI-64|ICU|TELEMED|GATEWAY|{_ts(when)}||"
        f"ORU^R40^ORU_R40|{cid}|P|2.6|||AL|NE||UNICODE UTF-8|||"
        "IHE_PCD_ACM_001^IHE PCD^1.3.6.1.4.1.19376.1.6.4.4^ISO",
        "PID|||0000000^^^HOSP^MR",
        f"OBR|1|{instance}^MONITOR|{instance}^MONITOR|{MDC_EVT_ALARM}|||{_ts(when)}",
        "OBX|1||69965^MDC_DEV_MON_PHYSIO_MULTI_PARAM_MDS^MDC|1.0.0.0|||||||X|||||||"
        f"{device_eui}^EUI-64",
        f"OBX|2|ST|{event}|1.0.0.0.1|{alarm.text}|||{flags}|||F|||{_ts(when)}||||"
        f"{device_eui}^EUI-64",
    ]
    n = 2
    if code is not None:
        n += 1
        shown = "" if value is None else f"{value:g}"
        lines.append(
            f"OBX|{n}|NM|{code.mdc}^{code.refid}^MDC|1.0.0.0.2|{shown}|"
            f"{code.ucum}^{code.ucum}^UCUM|||||F|||{_ts(when)}"
        )
    for name, number, text in (
        ("MDC_ATTR_EVENT_PHASE", 68481, phase),
        ("MDC_ATTR_ALARM_STATE", 68482, state),
        ("MDC_ATTR_ALARM_PRIORITY", 68484, priority),
        ("MDC_ATTR_ALERT_TYPE", 68485, kind),
    ):
        n += 1
        lines.append(f"OBX|{n}|ST|{number}^{name}^MDC|1.0.0.0.{n}|{text}||||||F")
    return "\r".join(lines) + "\r"
