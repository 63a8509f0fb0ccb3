"""The consultation's record as HL7 v2.6 ORU^R01 messages (IHE PCD-01, Communicate PCD
Data), in one batch (``BHS`` ... ``BTS``), segments ended by ``\\r``.

The conventions are those a monitor's HL7 gateway uses, and that the gateway's own reader
(``devices/protocols/hl7_pcd.py``) takes: MSH-21 names the IHE PCD-01 profile; OBX-3 the
MDC code (``150456^MDC_PULS_OXIM_SAT_O2^MDC``), OBX-4 the containment (``1.1.<series>.1``),
OBX-6 the UCUM unit, OBX-11 ``R`` (``X`` with no value: the device had none), OBX-14 the
time, OBX-18 the device. One message per time point (per ``step``), every parameter
measured then in it.

Alarms follow the facets of IHE PCD ACM inside the same ORU^R01 (one message per alarm):
the first OBX names the condition (in the pilot's local code system ``99TLM``) with
OBX-8 the abnormal flags of ACM (``L``/``H`` for a limit, ``PH``/``PM``/``PL`` the
priority, ``SP``/``ST`` physiological or technical), then the value that crossed the
limit (NM, the limit in OBX-7), the event phase and the alarm state (ST).

The patient (PID, PV1) is the view the recipient may see: PID-3 the pseudonym; PID-5
the names (romanised, alphabetic ``A``, and the own script, ideographic ``I``, as Japanese
and Korean HL7 practice repeats them), PID-7 the year of birth and PV1-3 ward and bed only
when identified.
"""

from __future__ import annotations

from datetime import UTC, datetime

from signaling.api_models import AlarmOut
from signaling.exports import ExportData
from signaling.schema import PatientView, Sex

PCD_01 = "IHE_PCD_001^IHE PCD^1.3.6.1.4.1.19376.1.6.1.1.1^ISO"
LOCAL_CODES = "99TLM"
_SEX = {Sex.FEMALE: "F", Sex.MALE: "M", Sex.OTHER: "O", Sex.UNKNOWN: "U"}
_PRIORITY = {"high": "PH", "medium": "PM", "low": "PL"}
_KIND = {"physiological": "SP", "technical": "ST"}


def escape(text: str) -> str:
    """Text for a field: the delimiters escaped (``\\F\\`` ``\\S\\`` ``\\R\\`` ``\\E\\``
    ``\\T\\``), line breaks as spaces (a segment ends at a carriage return)."""
    out = text.replace("\\", "\\E\\")
    out = out.replace("|", "\\F\\").replace("^", "\\S\\").replace("~", "\\R\\")
    out = out.replace("&", "\\T\\")
    return out.replace("\r", " ").replace("\n", " ")


def ts(t: float) -> str:
    """An HL7 DTM in UTC, to the millisecond."""
    return datetime.fromtimestamp(t, UTC).strftime("%Y%m%d%H%M%S.%f")[:-3] + "+0000"


def _number(value: float) -> str:
    return f"{round(value, 3):g}"


def _pid(data: ExportData) -> str:
    view: PatientView | None = data.patient
    if view is None:
        return "PID|1"
    ident = f"{escape(view.pseudonym)}^^^{escape(data.requesting_site)}^PT"
    names = ""
    birth = ""
    if view.identified:
        parts = []
        if view.name_romanised:
            parts.append(f"{escape(view.name_romanised)}^^^^^^L^A")
        if view.name:
            parts.append(f"{escape(view.name)}^^^^^^L^I")
        names = "~".join(parts)
        birth = f"{view.birth_year:04d}" if view.birth_year is not None else ""
    return f"PID|1||{ident}||{names}||{birth}|{_SEX[view.sex]}"


def _pv1(data: ExportData) -> str:
    view = data.patient
    if view is None or not view.identified or not (view.ward or view.bed):
        return "PV1|1|U"
    return f"PV1|1|I|{escape(view.ward or '')}^^{escape(view.bed or '')}"


def _msh(data: ExportData, control: str) -> str:
    return (
        f"MSH|^~\\&|TELEMED|{escape(data.requesting_site)}|||{ts(data.created)}||"
        f"ORU^R01^ORU_R01|{escape(control)}|P|2.6|||NE|AL||UNICODE UTF-8|||{PCD_01}"
    )


def _numerics_messages(data: ExportData) -> list[list[str]]:
    by_time: dict[int, list[tuple[int, float | None]]] = {}
    for index, series in enumerate(data.series):
        for start, value in series.points:
            by_time.setdefault(start, []).append((index, value))
    messages = []
    for n, start in enumerate(sorted(by_time), start=1):
        when = ts(start)
        lines = [
            _msh(data, f"{data.consultation_id}-N{n}"),
            _pid(data),
            _pv1(data),
            f"OBR|1|||182777000^monitoring of patient^SNOMED-CT|||{when}",
        ]
        for k, (index, value) in enumerate(by_time[start], start=1):
            series = data.series[index]
            code = (
                f"{series.mdc}^{escape(series.refid or series.code)}^MDC"
                if series.mdc is not None
                else f"{escape(series.code)}^{escape(series.code)}^{LOCAL_CODES}"
            )
            unit = escape(series.unit)
            shown = "" if value is None else _number(value)
            status = "X" if value is None else "R"
            method = "derived from the waveform" if series.derived else ""
            lines.append(
                f"OBX|{k}|NM|{code}|1.1.{index + 1}.1|{shown}|{unit}^{unit}^UCUM|||||{status}|||"
                f"{when}|||{escape(method)}|{escape(series.device)}"
            )
        messages.append(lines)
    return messages


def _alarm_message(data: ExportData, alarm: AlarmOut, n: int) -> list[str]:
    flags = [_PRIORITY[alarm.priority], _KIND[alarm.kind]]
    if alarm.value is not None and alarm.limit is not None:
        flags.insert(0, "L" if alarm.value < alarm.limit else "H")
    status = "F" if alarm.state == "ended" else "R"
    end = ts(alarm.ended) if alarm.ended is not None else ""
    condition = escape(alarm.condition)
    lines = [
        _msh(data, f"{data.consultation_id}-A{n}"),
        _pid(data),
        _pv1(data),
        f"OBR|1|||{condition}^{escape(alarm.text or alarm.condition)}^{LOCAL_CODES}|||"
        f"{ts(alarm.started)}|{end}",
        f"OBX|1|ST|{condition}^{condition}^{LOCAL_CODES}|1.0.0.0.1|"
        f"{escape(alarm.text or alarm.condition)}|||{'~'.join(flags)}|||{status}|||"
        f"{ts(alarm.started)}||{escape(alarm.acknowledged_by or '')}||{escape(alarm.device)}",
    ]
    facet = 2
    if alarm.value is not None:
        unit = escape(alarm.unit)
        reference = _number(alarm.limit) if alarm.limit is not None else ""
        code = escape(alarm.code or "value")
        lines.append(
            f"OBX|{facet}|NM|{code}^{code}^{LOCAL_CODES}|1.0.0.0.{facet}|{_number(alarm.value)}|"
            f"{unit}^{unit}^UCUM|{reference}||||{status}"
        )
        facet += 1
    phase = "end" if alarm.state == "ended" else "start"
    state = "inactive" if alarm.state == "ended" else "active"
    for code, value in (
        ("68481^MDC_ATTR_EVENT_PHASE^MDC", phase),
        ("68482^MDC_ATTR_ALARM_STATE^MDC", state),
    ):
        lines.append(f"OBX|{facet}|ST|{code}|1.0.0.0.{facet}|{value}||||||{status}")
        facet += 1
    return lines


def build(data: ExportData) -> str:
    """The batch's text: ``BHS``, the numerics' messages in time order, one message per
    alarm, ``BTS`` with the count of messages."""
    messages = _numerics_messages(data)
    messages += [_alarm_message(data, a, n) for n, a in enumerate(data.alarms, start=1)]
    lines = [f"BHS|^~\\&|TELEMED|{escape(data.requesting_site)}|||{ts(data.created)}"]
    for message in messages:
        lines += message
    lines.append(f"BTS|{len(messages)}")
    return "\r".join(lines) + "\r"
