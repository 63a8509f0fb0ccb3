"""Data Export messages: what a host sends and what a monitor answers. Sans-I/O.

A data message is ``E1 00 | p_context_id | ROapdus(ro_type, length) | operation``, where
the operation is an invoke (ROIV: invoke id, command, length, argument), a result (RORS), a
linked result (ROLRS, for poll replies split over several messages) or an error (ROER).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field
from datetime import datetime

from devices.errors import MessageError
from devices.protocols.intellivue import types as t
from devices.protocols.intellivue.types import Ava, Reader

P_CONTEXT_ID = 2

# The association request of the Data Export Interface Programming Guide, as standard hosts
# send it: session and presentation headers, then MDSEUserInfoStd offering the extended poll
# profile, then the presentation trailer.
ASSOCIATION_REQUEST = bytes.fromhex(
    "0dff01280508130100160102800014020002c1ff01163180a0808001010000a280a003000001a480"
    "3080020101060452010001308006025101000000003080020102060c2a8648ce1402010000000101"
    "3080060c2a8648ce140201000000020100000000000061803080020101a0806080a180060c2a8648"
    "ce14020100000003010000be802880060c2a8648ce14020100000001010201028182008080000000"
    "400000000000000080000000200000000000000000020064000100288000000000000fa0000005b0"
    "000005b0ffffffff600000000001000cf00100088e00000000000000010200340006003000010021"
    "0000000100010006000000c9000100090000003c00010005000000100001002a0000000100010036"
    "0000000100000000000000000000000000000000"
)


def _li(n: int) -> bytes:
    """Session/presentation length indicator: one byte, or 0xFF and two bytes."""
    return bytes([n]) if n < 0xFF else b"\xff" + n.to_bytes(2, "big")


def _user_info(request: bytes) -> bytes:
    """The MDSEUserInfoStd block of an association message (after ``81 82 LL LL``)."""
    start = request.index(b"\x81\x82") + 2
    size = int.from_bytes(request[start : start + 2], "big")
    return request[start + 2 : start + 2 + size]


def association_result() -> bytes:
    """The monitor's acceptance (AARE): session accept, presentation accept of the MDSE
    context, and its user info (the same extended-poll profile the host offered)."""
    info = _user_info(ASSOCIATION_REQUEST)
    presentation = bytes.fromhex(
        "3180a0808001010000a280a003000001a5803080800100810251010000618030800201"
        "01a0806180a180060c2a8648ce14020100000003010000a203020100a305a103020100"
        "be8028800201028182"
    )
    presentation += len(info).to_bytes(2, "big") + info + bytes(16)
    session_data = bytes.fromhex("0508130100160102800014020002")
    body = session_data + b"\xc1" + _li(len(presentation)) + presentation
    return bytes([0x0E]) + _li(len(body)) + body


# Release request as Philips' Data Export Test Tool sends it (RLRQ, [APPLICATION 2] = 0x62),
# and the monitor's release response (RLRE, [APPLICATION 3] = 0x63) of the same shape.
RELEASE_REQUEST = bytes.fromhex("0918c11661803080020101a080628080010000000000000000")
RELEASE_RESULT = bytes.fromhex("0a18c11661803080020101a080638080010000000000000000")
#: An abort is recognised by its session type alone.
ABORT = bytes.fromhex("19022e00")


# -- what a host sends ------------------------------------------------------------------------


@dataclass(frozen=True)
class AssociationRequest:
    pass


@dataclass(frozen=True)
class ReleaseRequest:
    pass


@dataclass(frozen=True)
class Abort:
    pass


@dataclass(frozen=True)
class PollRequest:
    invoke_id: int
    poll_number: int
    object_type: int
    attribute_group: int
    period_s: float | None


@dataclass(frozen=True)
class EventReportResult:
    """The host's acknowledgement of an event (the MDS create event)."""

    invoke_id: int
    event_type: int


@dataclass(frozen=True)
class GetRequest:
    invoke_id: int
    attribute_ids: tuple[int, ...]


@dataclass(frozen=True)
class SetRequest:
    invoke_id: int
    confirmed: bool
    attribute_ids: tuple[int, ...]


HostMessage = (
    AssociationRequest
    | ReleaseRequest
    | Abort
    | PollRequest
    | EventReportResult
    | GetRequest
    | SetRequest
)


def _data_header(r: Reader) -> tuple[int, Reader]:
    """Skip the session/presentation header of a data message; return (ro_type, body)."""
    session, _context = r.u16(), r.u16()
    if session != 0xE100:
        raise MessageError(f"data message with session id 0x{session:04X}")
    ro_type, length = r.u16(), r.u16()
    return ro_type, r.sub(length)


def _managed_object(r: Reader) -> tuple[int, int, int]:
    return r.u16(), r.u16(), r.u16()


def parse_host(payload: bytes) -> HostMessage:
    """Classify and parse a host's message. Raises :class:`MessageError`."""
    if not payload:
        raise MessageError("empty message")
    kind = payload[0]
    if kind == t.SESSION_AARQ:
        return AssociationRequest()
    if kind == t.SESSION_RLRQ:
        return ReleaseRequest()
    if kind == t.SESSION_ABORT:
        return Abort()
    if kind != t.SESSION_DATA:
        raise MessageError(f"unknown session type 0x{kind:02X}")
    try:
        ro_type, body = _data_header(Reader(payload))
        invoke_id, command, length = body.u16(), body.u16(), body.u16()
        op = body.sub(length)
        if ro_type == t.ROIV and command == t.CMD_CONFIRMED_ACTION:
            _managed_object(op)
            op.u32()  # scope
            action, size = op.u16(), op.u16()
            if action != t.NOM_ACT_POLL_MDIB_DATA_EXT:
                raise MessageError(f"unsupported action 0x{action:04X}")
            info = op.sub(size)
            poll_number, _partition, code, group = info.u16(), info.u16(), info.u16(), info.u16()
            period = None
            for ava in info.attribute_list():
                if ava.attribute_id == t.NOM_ATTR_TIME_PD_POLL and len(ava.value) == 4:
                    period = int.from_bytes(ava.value, "big") / t.TICKS_PER_S
            return PollRequest(invoke_id, poll_number, code, group, period)
        if ro_type == t.RORS and command == t.CMD_CONFIRMED_EVENT_REPORT:
            _managed_object(op)
            op.u32()  # current time
            return EventReportResult(invoke_id, op.u16())
        if ro_type == t.ROIV and command == t.CMD_GET:
            _managed_object(op)
            op.u32()
            count, size = op.u16(), op.u16()
            ids = op.sub(size)
            return GetRequest(invoke_id, tuple(ids.u16() for _ in range(count)))
        if ro_type == t.ROIV and command in (t.CMD_SET, t.CMD_CONFIRMED_SET):
            _managed_object(op)
            op.u32()
            count, size = op.u16(), op.u16()
            mods = op.sub(size)
            attrs = []
            for _ in range(count):
                mods.u16()  # modify operator
                attr, value_size = mods.u16(), mods.u16()
                mods.take(value_size)
                attrs.append(attr)
            return SetRequest(invoke_id, command == t.CMD_CONFIRMED_SET, tuple(attrs))
    except ValueError as exc:
        raise MessageError(str(exc)) from None
    raise MessageError(f"unsupported operation (ro_type {ro_type}, command {command})")


def _data(ro_type: int, operation: bytes) -> bytes:
    return struct.pack(">HHHH", 0xE100, P_CONTEXT_ID, ro_type, len(operation)) + operation


def _invoke(ro_type: int, invoke_id: int, command: int, argument: bytes) -> bytes:
    return _data(ro_type, struct.pack(">HHH", invoke_id, command, len(argument)) + argument)


_MDS = struct.pack(">HHH", t.NOM_MOC_VMS_MDS, 0, 0)


def poll_request(
    invoke_id: int, poll_number: int, object_type: int, period_s: float | None
) -> bytes:
    """An extended poll for numerics or waves (all attributes), optionally with a period."""
    attrs = []
    if period_s is not None:
        ticks = round(period_s * t.TICKS_PER_S).to_bytes(4, "big")
        attrs.append(Ava(t.NOM_ATTR_TIME_PD_POLL, ticks))
    info = struct.pack(">HHHH", poll_number, t.NOM_PART_OBJ, object_type, 0)
    info += t.attribute_list(attrs)
    argument = _MDS + struct.pack(">IHH", 0, t.NOM_ACT_POLL_MDIB_DATA_EXT, len(info)) + info
    return _invoke(t.ROIV, invoke_id, t.CMD_CONFIRMED_ACTION, argument)


def event_report_result(invoke_id: int, event_type: int, current_time: int = 0) -> bytes:
    result = _MDS + struct.pack(">IHH", current_time, event_type, 0)
    return _invoke(t.RORS, invoke_id, t.CMD_CONFIRMED_EVENT_REPORT, result)


# -- what a monitor sends ---------------------------------------------------------------------


@dataclass(frozen=True)
class AssociationResult:
    accepted: bool


@dataclass(frozen=True)
class ReleaseResult:
    pass


@dataclass(frozen=True)
class MdsCreateEvent:
    invoke_id: int
    attributes: tuple[Ava, ...]


@dataclass(frozen=True)
class Observation:
    """One polled object: its handle and attributes."""

    handle: int
    attributes: tuple[Ava, ...]


@dataclass(frozen=True)
class PollReply:
    invoke_id: int
    poll_number: int
    object_type: int
    rel_time: int
    abs_time: bytes
    observations: tuple[Observation, ...]
    #: Linked results: more messages of the same reply follow unless this is the last.
    last: bool = True


@dataclass(frozen=True)
class RemoteError:
    invoke_id: int
    error_value: int


@dataclass(frozen=True)
class OtherResult:
    """A result the gateway does not need (GET/SET results and the like)."""

    invoke_id: int
    command: int


MonitorMessage = (
    AssociationResult
    | ReleaseResult
    | Abort
    | MdsCreateEvent
    | PollReply
    | RemoteError
    | OtherResult
)


def parse_monitor(payload: bytes) -> MonitorMessage:
    """Classify and parse a monitor's message. Raises :class:`MessageError`."""
    if not payload:
        raise MessageError("empty message")
    kind = payload[0]
    if kind in (t.SESSION_AARE, t.SESSION_REFUSE):
        return AssociationResult(kind == t.SESSION_AARE)
    if kind == t.SESSION_RLRE:
        return ReleaseResult()
    if kind == t.SESSION_ABORT:
        return Abort()
    if kind != t.SESSION_DATA:
        raise MessageError(f"unknown session type 0x{kind:02X}")
    try:
        ro_type, body = _data_header(Reader(payload))
        last = True
        if ro_type == t.ROLRS:
            state, _count = body.u8(), body.u8()
            last = state == 3  # RORLS_LAST
        if ro_type == t.ROER:
            return RemoteError(body.u16(), body.u16())
        invoke_id, command, length = body.u16(), body.u16(), body.u16()
        op = body.sub(length)
        if ro_type == t.ROIV and command in (t.CMD_CONFIRMED_EVENT_REPORT, t.CMD_EVENT_REPORT):
            _managed_object(op)
            op.u32()
            event, size = op.u16(), op.u16()
            info = op.sub(size)
            if event in (t.NOM_NOTI_MDS_CREAT, t.NOM_NOTI_MDS_CONNECT_INDIC):
                _managed_object(info)
                return MdsCreateEvent(invoke_id, tuple(info.attribute_list()))
            return OtherResult(invoke_id, command)
        if ro_type in (t.RORS, t.ROLRS) and command == t.CMD_CONFIRMED_ACTION:
            _managed_object(op)
            action, size = op.u16(), op.u16()
            if action != t.NOM_ACT_POLL_MDIB_DATA_EXT:
                return OtherResult(invoke_id, command)
            info = op.sub(size)
            poll_number, _seq, rel = info.u16(), info.u16(), info.u32()
            abs_time = info.take(8)
            _partition, code, _group = info.u16(), info.u16(), info.u16()
            contexts, size = info.u16(), info.u16()
            polls = info.sub(size)
            observations = []
            for _ in range(contexts):
                polls.u16()  # context id
                count, size = polls.u16(), polls.u16()
                obs = polls.sub(size)
                for _ in range(count):
                    handle = obs.u16()
                    observations.append(Observation(handle, tuple(obs.attribute_list())))
            return PollReply(invoke_id, poll_number, code, rel, abs_time, tuple(observations), last)
        return OtherResult(invoke_id, command)
    except ValueError as exc:
        raise MessageError(str(exc)) from None


NOM_ATTR_ID_MODEL = 0x0928
NOM_ATTR_NET_ADDR_INFO = 0xF100


@dataclass(frozen=True)
class ConnectIndication:
    """What a monitor broadcasts on the LAN (UDP 24005) to say it can be associated with."""

    manufacturer: str
    model: str
    mac: str
    ip: str
    attributes: tuple[Ava, ...]


def _strings(value: bytes) -> list[str]:
    r, out = Reader(value), []
    while r.pos < r.end:
        out.append(r.take(r.u16()).rstrip(b"\x00").decode("ascii", errors="replace"))
    return out


def parse_connect_indication(payload: bytes) -> ConnectIndication:
    """The Connect Indication: a 4-byte nomenclature version, then an EVENT_REPORT of
    NOM_NOTI_MDS_CONNECT_INDIC carrying the monitor's attributes. Raises MessageError."""
    try:
        r = Reader(payload)
        r.take(4)  # nomenclature version
        ro_type, length = r.u16(), r.u16()
        body = r.sub(length)
        _invoke, command, size = body.u16(), body.u16(), body.u16()
        op = body.sub(size)
        if ro_type != t.ROIV or command != t.CMD_EVENT_REPORT:
            raise MessageError("not an event report")
        _managed_object(op)
        op.u32()
        event, size = op.u16(), op.u16()
        if event != t.NOM_NOTI_MDS_CONNECT_INDIC:
            raise MessageError(f"event 0x{event:04X} is not a connect indication")
        avas = op.sub(size).attribute_list()
    except ValueError as exc:
        raise MessageError(str(exc)) from None
    manufacturer = model = mac = ip = ""
    for ava in avas:
        if ava.attribute_id == NOM_ATTR_ID_MODEL:
            names = _strings(ava.value)
            manufacturer, model = [*names, "", ""][:2]
        elif ava.attribute_id == NOM_ATTR_NET_ADDR_INFO and len(ava.value) >= 10:
            mac = ":".join(f"{b:02x}" for b in ava.value[:6])
            ip = ".".join(str(b) for b in ava.value[6:10])
    return ConnectIndication(manufacturer, model, mac, ip, tuple(avas))


def connect_indication(model: str, mac: bytes, ip: str) -> bytes:
    attrs = [
        Ava(NOM_ATTR_ID_MODEL, _text("Philips") + _text(model)),
        Ava(
            NOM_ATTR_NET_ADDR_INFO, mac + bytes(int(x) for x in ip.split(".")) + b"\xff\xff\x00\x00"
        ),
    ]
    info = t.attribute_list(attrs)
    argument = (
        struct.pack(">HHHIHH", 0x0023, 0, 0, 0, t.NOM_NOTI_MDS_CONNECT_INDIC, len(info)) + info
    )
    operation = struct.pack(">HHH", 0, t.CMD_EVENT_REPORT, len(argument)) + argument
    return b"\x00\x00\x01\x00" + struct.pack(">HH", t.ROIV, len(operation)) + operation


def numeric_value(physio: int, value: float | None, unit: int, valid: bool = True) -> bytes:
    """A NuObsValue: physio id, measurement state, unit code, FLOAT value."""
    state = 0 if valid and value is not None else t.STATE_INVALID
    return struct.pack(">HHHI", physio, state, unit, t.encode_float(value, 1))


def mds_create_event(invoke_id: int, rel_time: int, moment: datetime, model: str) -> bytes:
    attrs = [
        Ava(t.NOM_ATTR_TIME_ABS, t.encode_abs_time(moment)),
        Ava(0x0928, _text("Philips") + _text(model)),  # NOM_ATTR_ID_MODEL
    ]
    info = _MDS + t.attribute_list(attrs)
    argument = _MDS + struct.pack(">IHH", rel_time, t.NOM_NOTI_MDS_CREAT, len(info)) + info
    return _invoke(t.ROIV, invoke_id, t.CMD_CONFIRMED_EVENT_REPORT, argument)


def _text(s: str) -> bytes:
    data = s.encode("ascii")
    if len(data) % 2:
        data += b"\x00"
    return struct.pack(">H", len(data)) + data


@dataclass
class PollReplyParts:
    """What the monitor puts in an extended poll reply."""

    invoke_id: int
    poll_number: int
    object_type: int
    rel_time: int
    moment: datetime
    observations: list[Observation] = field(default_factory=list)


def poll_reply(parts: PollReplyParts) -> bytes:
    obs = b"".join(
        struct.pack(">H", o.handle) + t.attribute_list(list(o.attributes))
        for o in parts.observations
    )
    context = struct.pack(">HHH", 0, len(parts.observations), len(obs)) + obs
    info = struct.pack(">HHI", parts.poll_number, 0, parts.rel_time)
    info += t.encode_abs_time(parts.moment)
    info += struct.pack(">HHH", t.NOM_PART_OBJ, parts.object_type, 0)
    info += struct.pack(">HH", 1, len(context)) + context
    result = _MDS + struct.pack(">HH", t.NOM_ACT_POLL_MDIB_DATA_EXT, len(info)) + info
    return _invoke(t.RORS, parts.invoke_id, t.CMD_CONFIRMED_ACTION, result)
