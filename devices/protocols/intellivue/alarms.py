"""IntelliVue Data Export alarm data: the Alarm Monitor object's lists. Sans-I/O.

A host polls the Alarm Monitor (object class ``NOM_MOC_VMO_AL_MON``) like numerics; the reply
carries three attributes, big-endian like everything in Data Export:

- Device Alert Condition (0x0916): alert state bits, a change counter, and the highest
  physiological, technical and audible alert types;
- Device P-Alarm List (0x0902) and Device T-Alarm List (0x0904): the active physiological
  alarms and the technical ones ("INOPs"), each a ``DevAlarmList``::

      count u16, length u16, then per entry (DevAlarmEntry):
        al_source u16   physio id (SCADA partition) or object class, see al_code's bit 0
        al_code   u16   event (NOM_EVT_...); bit 0 set: al_source is an object class
        al_type   u16   NO_ALERT 0, LOW/MED/HI_PRI_T_AL 1/2/4, LOW/MED/HI_PRI_P_AL 256/512/1024
        al_state  u16   AL_INHIBITED 0x8000, AL_SUSPENDED 0x4000, AL_LATCHED 0x2000, ...
        object    6     ManagedObjectId: class u16, context u16, handle u16
        alert_info_id u16  GEN_ALMON_INFO 513 or STR_ALMON_INFO 516
        length    u16   then AlMonGenInfo: al_inst_no u16, al_text u32, priority u16,
                        flags u16; StrAlMonInfo adds a String (length u16 in bytes, UTF-16BE
                        characters ending in a zero character): the monitor's alarm text

Layouts and codes are those of the Data Export Interface Programming Guide as open
implementations transcribe it; the alarm texts use a few private characters (0xE40D is the
alarm star ``*``). :func:`device_alarm` maps an entry to the device model's alarm.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable
from dataclasses import dataclass

from devices.alarms import conditions
from devices.codes import by_mdc
from devices.errors import MessageError
from devices.model import AlarmKind, AlarmPriority, DeviceAlarm
from devices.protocols.intellivue import types as t
from devices.protocols.intellivue.types import Reader

NOM_MOC_VMO_AL_MON = 0x0036
NOM_ATTR_DEV_AL_COND = 0x0916
NOM_ATTR_AL_MON_P_AL_LIST = 0x0902
NOM_ATTR_AL_MON_T_AL_LIST = 0x0904

NO_ALERT = 0
LOW_PRI_T_AL, MED_PRI_T_AL, HI_PRI_T_AL = 1, 2, 4
LOW_PRI_P_AL, MED_PRI_P_AL, HI_PRI_P_AL = 256, 512, 1024

AL_INHIBITED = 0x8000
AL_SUSPENDED = 0x4000
AL_LATCHED = 0x2000
AL_SILENCED_RESET = 0x1000
AL_NEW_ALERT = 0x0008

GEN_ALMON_INFO = 513
STR_ALMON_INFO = 516

BEDSIDE_AUDIBLE = 0x4000
CENTRAL_AUDIBLE = 0x2000

# Events (NOM_PART_EVT) this decoder names; others become conditions.DEVICE with the text.
NOM_EVT_DISCONN = 22
NOM_EVT_HI = 40
NOM_EVT_LO = 62
NOM_EVT_EQUIP_MALF = 242
NOM_EVT_LEAD_DISCONN = 268
NOM_EVT_LEADS_OFF = 274
NOM_EVT_SENSOR_DISCONN = 308
NOM_EVT_SENSOR_MALF = 310
NOM_EVT_XDUCR_DISCONN = 336
NOM_EVT_XDUCR_MALF = 338
NOM_EVT_MSMT_DISCONN = 352
NOM_EVT_SIG_LO = 380
NOM_EVT_APNEA = 3072
NOM_EVT_ECG_ASYSTOLE = 3076
NOM_EVT_ECG_BRADY_EXTREME = 3086
NOM_EVT_ECG_TACHY_EXTREME = 3122
NOM_EVT_ECG_V_TACHY = 3224
NOM_EVT_DESAT = 3246
NOM_EVT_STAT_DISCONN = 6256
NOM_EVT_ECG_V_FIB_TACHY = 61444
NOM_EVT_BRADY = 61766
NOM_EVT_TACHY = 61768

_EVENT_CONDITIONS = {
    NOM_EVT_DESAT: conditions.SPO2_DESAT,
    NOM_EVT_APNEA: conditions.APNEA,
    NOM_EVT_ECG_ASYSTOLE: conditions.ASYSTOLE,
    NOM_EVT_ECG_V_FIB_TACHY: conditions.VFIB_VTACH,
    NOM_EVT_ECG_V_TACHY: conditions.ARRHYTHMIA,
    NOM_EVT_ECG_BRADY_EXTREME: conditions.BRADY_EXTREME,
    NOM_EVT_BRADY: conditions.BRADY_EXTREME,
    NOM_EVT_ECG_TACHY_EXTREME: conditions.TACHY_EXTREME,
    NOM_EVT_TACHY: conditions.TACHY_EXTREME,
    NOM_EVT_SENSOR_DISCONN: conditions.PROBE_OFF,
    NOM_EVT_XDUCR_DISCONN: conditions.PROBE_OFF,
    NOM_EVT_LEADS_OFF: conditions.LEADS_OFF,
    NOM_EVT_LEAD_DISCONN: conditions.LEADS_OFF,
    NOM_EVT_SIG_LO: conditions.LOW_SIGNAL,
    NOM_EVT_SENSOR_MALF: conditions.SENSOR_FAULT,
    NOM_EVT_XDUCR_MALF: conditions.SENSOR_FAULT,
    NOM_EVT_EQUIP_MALF: conditions.SENSOR_FAULT,
    NOM_EVT_DISCONN: conditions.DISCONNECTED,
    NOM_EVT_MSMT_DISCONN: conditions.DISCONNECTED,
    NOM_EVT_STAT_DISCONN: conditions.DISCONNECTED,
}
_PRIORITIES = {
    LOW_PRI_T_AL: (AlarmPriority.LOW, AlarmKind.TECHNICAL),
    MED_PRI_T_AL: (AlarmPriority.MEDIUM, AlarmKind.TECHNICAL),
    HI_PRI_T_AL: (AlarmPriority.HIGH, AlarmKind.TECHNICAL),
    LOW_PRI_P_AL: (AlarmPriority.LOW, AlarmKind.PHYSIOLOGICAL),
    MED_PRI_P_AL: (AlarmPriority.MEDIUM, AlarmKind.PHYSIOLOGICAL),
    HI_PRI_P_AL: (AlarmPriority.HIGH, AlarmKind.PHYSIOLOGICAL),
}
#: Private-use characters of the monitor's texts, as plain text.
_PRIVATE = {0xE40D: "*", 0xE145: "E", 0xE14C: "L", 0xE400: "l/min", 0xE425: "V", 0xFEFF: ""}
_ENTRY = struct.Struct(">HHHHHHHHH")  # source .. length: 18 bytes
_GEN = struct.Struct(">HIHH")  # al_inst_no, al_text, priority, flags: 10 bytes


@dataclass(frozen=True)
class AlarmEntry:
    """One DevAlarmEntry. ``text`` is only carried with STR_ALMON_INFO."""

    source: int
    code: int
    alert_type: int
    state: int = 0
    object_class: int = 0
    object_context: int = 0
    object_handle: int = 0
    info_id: int = STR_ALMON_INFO
    instance: int = 0
    text_id: int = 0
    priority: int = 0
    flags: int = 0
    text: str = ""

    @property
    def event(self) -> int:
        """The event code without the partition bit."""
        return self.code & ~1

    @property
    def source_is_object(self) -> bool:
        """Bit 0 of al_code: al_source is an object class, not a physio id."""
        return bool(self.code & 1)


@dataclass(frozen=True)
class AlertCondition:
    """The Device Alert Condition attribute."""

    state: int = 0
    change_count: int = 0
    max_p_alarm: int = NO_ALERT
    max_t_alarm: int = NO_ALERT
    max_audible: int = NO_ALERT

    def encode(self) -> bytes:
        return struct.pack(
            ">HHHHH",
            self.state,
            self.change_count,
            self.max_p_alarm,
            self.max_t_alarm,
            self.max_audible,
        )

    @classmethod
    def parse(cls, value: bytes) -> AlertCondition:
        if len(value) != 10:
            raise MessageError(f"device alert condition of {len(value)} bytes (expected 10)")
        return cls(*struct.unpack(">HHHHH", value))


def _decode_string(r: Reader) -> str:
    size = r.u16()
    raw = r.take(size)
    if size % 2:
        raise MessageError(f"alarm text of an odd {size} bytes")
    # Up to the terminator (what follows it, if anything, is padding).
    text = raw.decode("utf-16-be", errors="replace").split("\x00", 1)[0]
    return "".join(_PRIVATE.get(ord(c), c) for c in text).strip()


def _encode_string(text: str) -> bytes:
    data = text.encode("utf-16-be") + b"\x00\x00"
    return struct.pack(">H", len(data)) + data


def parse_alarm_list(value: bytes) -> list[AlarmEntry]:
    """The entries of a DevAlarmList attribute value. Raises :class:`MessageError`."""
    try:
        r = Reader(value)
        count, length = r.u16(), r.u16()
        body = r.sub(length)
        entries = []
        for _ in range(count):
            source, code, kind, state, cls, context, handle, info_id, size = _ENTRY.unpack(
                body.take(_ENTRY.size)
            )
            info = body.sub(size)
            instance = text_id = priority = flags = 0
            text = ""
            if info_id in (GEN_ALMON_INFO, STR_ALMON_INFO):
                instance, text_id, priority, flags = _GEN.unpack(info.take(_GEN.size))
                if info_id == STR_ALMON_INFO:
                    text = _decode_string(info)
            entries.append(
                AlarmEntry(
                    source=source,
                    code=code,
                    alert_type=kind,
                    state=state,
                    object_class=cls,
                    object_context=context,
                    object_handle=handle,
                    info_id=info_id,
                    instance=instance,
                    text_id=text_id,
                    priority=priority,
                    flags=flags,
                    text=text,
                )
            )
    except ValueError as exc:
        raise MessageError(f"alarm list: {exc}") from None
    return entries


def encode_alarm_list(entries: Iterable[AlarmEntry]) -> bytes:
    """A DevAlarmList attribute value (what a monitor sends)."""
    body = b""
    listed = list(entries)
    for e in listed:
        info = b""
        if e.info_id in (GEN_ALMON_INFO, STR_ALMON_INFO):
            info = _GEN.pack(e.instance, e.text_id, e.priority, e.flags)
            if e.info_id == STR_ALMON_INFO:
                info += _encode_string(e.text)
        body += _ENTRY.pack(
            e.source,
            e.code,
            e.alert_type,
            e.state,
            e.object_class,
            e.object_context,
            e.object_handle,
            e.info_id,
            len(info),
        )
        body += info
    return struct.pack(">HH", len(listed), len(body)) + body


def device_alarm(entry: AlarmEntry) -> DeviceAlarm | None:
    """The device model's alarm for an entry; None for one that is no alarm now (no alert
    type, or alarms inhibited for it)."""
    kinds = _PRIORITIES.get(entry.alert_type)
    if kinds is None or entry.state & AL_INHIBITED:
        return None
    priority, kind = kinds
    code = None if entry.source_is_object else by_mdc(t.mdc_of(entry.source))
    event = entry.event
    if event in _EVENT_CONDITIONS:
        condition = _EVENT_CONDITIONS[event]
    elif event == NOM_EVT_HI and code is not None:
        condition = conditions.high(code)
    elif event == NOM_EVT_LO and code is not None:
        condition = conditions.low(code)
    else:
        condition = conditions.DEVICE
    text = entry.text[:256]
    if condition == conditions.DEVICE and not text:
        # A code this decoder does not name and no words from the monitor: say which code.
        text = f"IntelliVue event {event} from {entry.source}"
    return DeviceAlarm(condition, priority, kind, code, text)
