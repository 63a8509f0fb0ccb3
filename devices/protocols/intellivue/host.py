"""The gateway's side of an IntelliVue Data Export session, sans-I/O.

    IDLE --start--> ASSOCIATING --AARE--> AWAIT_MDS --MDS create event--> POLLING
    POLLING --release/abort/silence--> IDLE (and association starts again)

Over MIB/RS232, feed monitor bytes to :meth:`receive_data`, call :meth:`tick` regularly, and
send what :meth:`data_to_send` returns (framed). Over the LAN the same session runs on UDP
datagrams: :meth:`receive_datagram` and :meth:`datagrams_to_send` (no serial framing).
While associating, the request is repeated every ``association_retry_s`` (Philips' own test
tool waits about 4.4 s). While polling, numerics are polled every ``numerics_period_s``
(which also keeps the association alive: the monitor drops a silent host), the Alarm
Monitor every ``alarms_period_s`` (its lists become :class:`~devices.model.DeviceAlarms`,
see :mod:`devices.protocols.intellivue.alarms`), and an extended wave poll is renewed before
its period runs out. Wave sample periods and scales are read from the monitor's attributes,
never assumed.
"""

from __future__ import annotations

import enum
import itertools
import math
import struct
from dataclasses import dataclass
from zoneinfo import ZoneInfo

from devices.alarms.reporting import AlarmReporter
from devices.codes import VitalCode, by_mdc
from devices.errors import MessageError
from devices.model import (
    DeviceAlarm,
    DeviceEvent,
    DeviceState,
    DeviceStatus,
    Observation,
    Quality,
)
from devices.protocols.common import DecoderBase, chunk
from devices.protocols.intellivue import alarms as al
from devices.protocols.intellivue import messages as m
from devices.protocols.intellivue import types as t
from devices.protocols.intellivue.framing import Deframer, FramingError, encode_frame
from devices.units import to_canonical, ucum_of_intellivue


class HostState(enum.Enum):
    IDLE = "idle"
    ASSOCIATING = "associating"
    AWAIT_MDS = "await_mds"
    POLLING = "polling"


@dataclass
class _WaveSpec:
    period_s: float | None = None
    scale: tuple[float, float, int, int] | None = None  # lower/upper absolute, lower/upper scaled


#: The reason a host's request (PC to monitor) is skipped with.
HOST_REQUEST = "a host's request (PC to monitor), not a monitor's message"


def _from_a_host(payload: bytes) -> bool:
    """Whether ``payload`` is a request only a host sends: an association request, or a
    remote operation invoke (poll, GET, SET) or an event report's result."""
    if not payload or payload[0] not in (t.SESSION_AARQ, t.SESSION_DATA):
        return False
    try:
        message = m.parse_host(payload)
    except MessageError:
        return False
    return isinstance(
        message,
        m.AssociationRequest | m.PollRequest | m.GetRequest | m.SetRequest | m.EventReportResult,
    )


def _quality(state: int) -> Quality:
    q = Quality.OK
    if state & (t.STATE_INVALID | t.STATE_UNAVAILABLE):
        q |= Quality.INVALID
    if state & t.STATE_QUESTIONABLE:
        q |= Quality.ARTIFACT
    return q


class IntelliVueHost(DecoderBase):
    def __init__(
        self,
        device_id: str,
        device_tz: str = "UTC",
        numerics_period_s: float = 1.0,
        wave_poll_period_s: float = 10.0,
        association_retry_s: float = 4.4,
        silence_s: float = 10.0,
        alarms_period_s: float = 1.0,
    ) -> None:
        super().__init__(device_id)
        self.alarms_period_s = alarms_period_s
        self._next_alarms = 0.0
        # Every reply is the complete list; one a second is sent on only when it changed,
        # and every 10th all the same.
        self._alarms = AlarmReporter(device_id, every=10)
        self._alarm_replies = 0
        self.tz = ZoneInfo(device_tz)
        self.numerics_period_s = numerics_period_s
        self.wave_poll_period_s = wave_poll_period_s
        self.association_retry_s = association_retry_s
        self.silence_s = silence_s
        self.state = HostState.IDLE
        self._deframer = Deframer()
        self._out: list[bytes] = []
        self._sent_at = -math.inf
        self._heard_at = -math.inf
        self._next_numerics = 0.0
        self._next_waves = 0.0
        self._invoke_ids = itertools.count(1)
        self._poll_numbers = itertools.count(1)
        self._waves: dict[int, _WaveSpec] = {}

    # -- driving ---------------------------------------------------------------------------

    def data_to_send(self) -> bytes:
        """Pending messages in MIB/RS232 frames."""
        return b"".join(encode_frame(p) for p in self.datagrams_to_send())

    def datagrams_to_send(self) -> list[bytes]:
        """Pending messages as bare payloads (one UDP datagram each)."""
        out, self._out = self._out, []
        return out

    def _send(self, payload: bytes, now: float) -> None:
        self._out.append(payload)
        self._sent_at = now

    def start(self, now: float) -> None:
        """Begin (or begin again) associating with the monitor."""
        self.state = HostState.ASSOCIATING
        self._deframer = Deframer()
        self._waves.clear()
        self._send(m.ASSOCIATION_REQUEST, now)

    def tick(self, now: float) -> None:
        if self.state is HostState.IDLE:
            self.start(now)
        elif self.state in (HostState.ASSOCIATING, HostState.AWAIT_MDS):
            if now - self._sent_at >= self.association_retry_s:
                self.start(now)
        elif self.state is HostState.POLLING:
            if now - self._heard_at > self.silence_s:
                self.state = HostState.IDLE  # the monitor went quiet: associate afresh
                return
            if now >= self._next_numerics:
                self._poll(t.NOM_MOC_VMO_METRIC_NU, None, now)
                self._next_numerics = now + self.numerics_period_s
            if now >= self._next_alarms:
                self._poll(al.NOM_MOC_VMO_AL_MON, None, now)
                self._next_alarms = now + self.alarms_period_s
            if now >= self._next_waves:
                self._poll(t.NOM_MOC_VMO_METRIC_SA_RT, self.wave_poll_period_s, now)
                # Renew before the monitor's period ends so the waves never pause.
                self._next_waves = now + 0.8 * self.wave_poll_period_s

    def _poll(self, object_type: int, period_s: float | None, now: float) -> None:
        self._send(
            m.poll_request(
                next(self._invoke_ids) & 0xFFFF,
                next(self._poll_numbers) & 0xFFFF,
                object_type,
                period_s,
            ),
            now,
        )

    def release(self, now: float) -> None:
        self._send(m.RELEASE_REQUEST, now)
        self.state = HostState.IDLE

    # -- receiving -------------------------------------------------------------------------

    def receive_data(self, data: bytes, now: float) -> list[DeviceEvent]:
        self.stats.bytes_in += len(data)
        events: list[DeviceEvent] = []
        for item in self._deframer.receive_data(data):
            if isinstance(item, FramingError):
                self._error(events, item.reason, item.skipped, now)
            else:
                self._payload(item, events, now)
        return events

    def receive_datagram(self, payload: bytes, now: float) -> list[DeviceEvent]:
        """One UDP datagram from the monitor (LAN)."""
        self.stats.bytes_in += len(payload)
        events: list[DeviceEvent] = []
        self._payload(payload, events, now)
        return events

    def _payload(self, payload: bytes, events: list[DeviceEvent], now: float) -> None:
        """One message: the boundary no exception crosses (see ``_guarded``)."""
        self._guarded(events, now, len(payload), lambda out: self._message(payload, out, now))

    def _message(self, payload: bytes, events: list[DeviceEvent], now: float) -> None:
        if _from_a_host(payload):
            # Never sent by a monitor: a host's own request, met in a host-side log (or a
            # looped-back line). Said as what it is, not as a malformed monitor message.
            self._error(events, HOST_REQUEST, len(payload), now)
            return
        try:
            message = m.parse_monitor(payload)
        except MessageError as exc:
            self._error(events, "malformed message", len(payload), now, str(exc))
            return
        self.stats.frames += 1
        self._heard_at = now
        self._handle(message, events, now)

    def _handle(self, message: m.MonitorMessage, events: list[DeviceEvent], now: float) -> None:
        match message:
            case m.AssociationResult(accepted=True) if self.state is HostState.ASSOCIATING:
                self.state = HostState.AWAIT_MDS
            case m.AssociationResult(accepted=False):
                events.append(DeviceStatus(self.device_id, DeviceState.CONNECTING, now, "refused"))
                self.state = HostState.ASSOCIATING  # retried after association_retry_s
            case m.MdsCreateEvent(invoke_id=invoke_id):
                self._send(m.event_report_result(invoke_id, t.NOM_NOTI_MDS_CREAT), now)
                if self.state is not HostState.POLLING:
                    self.state = HostState.POLLING
                    self._next_numerics = self._next_waves = self._next_alarms = now
                    events.append(DeviceStatus(self.device_id, DeviceState.CONNECTED, now))
                    self.tick(now)
            case m.PollReply() if self.state is HostState.POLLING:
                self._poll_reply(message, events, now)
            case m.ReleaseResult() | m.Abort():
                self.state = HostState.IDLE
                events.append(
                    DeviceStatus(self.device_id, DeviceState.DISCONNECTED, now, "released")
                )
            case _:
                pass  # results the gateway does not need

    def _poll_reply(self, reply: m.PollReply, events: list[DeviceEvent], now: float) -> None:
        if reply.object_type == al.NOM_MOC_VMO_AL_MON:
            self._alarm_reply(reply, events, now)
            return
        device_time = t.decode_abs_time(reply.abs_time, self.tz)
        for obs in reply.observations:
            spec = self._waves.setdefault(obs.handle, _WaveSpec())
            values: list[tuple[int, bytes]] = []
            for ava in obs.attributes:
                a, v = ava.attribute_id, ava.value
                if a == t.NOM_ATTR_TIME_PD_SAMP and len(v) == 4:
                    spec.period_s = int.from_bytes(v, "big") / t.TICKS_PER_S
                elif a == t.NOM_ATTR_SCALE_SPECN_I16 and len(v) == 12:
                    lo, hi, lo_s, hi_s = struct.unpack(">IIHH", v)
                    lo_f, hi_f = t.decode_float(lo), t.decode_float(hi)
                    if lo_f is not None and hi_f is not None and hi_s != lo_s:
                        spec.scale = (lo_f, hi_f, lo_s, hi_s)
                else:
                    values.append((a, v))
            for a, v in values:
                if a == t.NOM_ATTR_NU_VAL_OBS:
                    self._numeric(v, events, now, device_time)
                elif a == t.NOM_ATTR_NU_CMPD_VAL_OBS:
                    # The count is checked against the bytes present before any loop: a
                    # reply claiming 65,535 entries in each of many attributes once took
                    # seconds in one call.
                    count = int.from_bytes(v[:2], "big") if len(v) >= 4 else -1
                    if count < 0 or 4 + 10 * count > len(v):
                        self._error(
                            events,
                            "malformed compound numeric",
                            len(v),
                            now,
                            f"{count} entries claimed in {len(v)} bytes",
                        )
                        continue
                    for i in range(count):
                        self._numeric(v[4 + 10 * i : 14 + 10 * i], events, now, device_time)
                elif a == t.NOM_ATTR_SA_VAL_OBS:
                    self._wave(v, spec, events, now, device_time)

    def _numeric(
        self, v: bytes, events: list[DeviceEvent], now: float, device_time: float | None
    ) -> None:
        if len(v) != 10:
            return
        physio, state, unit_code, raw = struct.unpack(">HHHI", v)
        code = by_mdc(t.mdc_of(physio))
        if code is None:
            self._unmapped(events, f"physio id 0x{physio:04X} (MDC {t.mdc_of(physio)})", now)
            return
        value = t.decode_float(raw)
        quality = _quality(state)
        if quality & Quality.INVALID:
            value = None
        elif value is None:
            quality |= Quality.INVALID
        else:
            unit = ucum_of_intellivue(unit_code)
            value = to_canonical(code, unit, value)
            if value is None:
                quality |= Quality.INVALID | Quality.UNIT_UNKNOWN
                self._unmapped(
                    events, f"{code.refid} in unit code 0x{unit_code:04X} ({unit or '?'})", now
                )
        events.append(Observation(code, value, self.device_id, now, device_time, quality))

    def _wave(
        self,
        v: bytes,
        spec: _WaveSpec,
        events: list[DeviceEvent],
        now: float,
        device_time: float | None,
    ) -> None:
        if len(v) < 6:
            return
        physio, state, size = struct.unpack(">HHH", v[:6])
        code: VitalCode | None = by_mdc(t.mdc_of(physio))
        if len(v) < 6 + size:
            self._error(events, "malformed wave", len(v), now, f"{size} bytes claimed")
            return
        if code is None or spec.period_s is None or spec.period_s <= 0:
            return  # no sample period known yet: never guess one
        if size % 2:
            self._error(events, "malformed wave", len(v), now, f"{size} bytes of 16-bit samples")
            return
        if size == 0:
            return
        raw = struct.unpack(f">{size // 2}H", v[6 : 6 + size])
        if spec.scale is not None:
            lo, hi, lo_s, hi_s = spec.scale
            gain = (hi - lo) / (hi_s - lo_s)
            samples = [lo + (r - lo_s) * gain for r in raw]
        else:
            samples = [float(r) for r in raw]
        if state & (t.STATE_INVALID | t.STATE_UNAVAILABLE):
            samples = [math.nan] * len(samples)
        rate = 1.0 / spec.period_s
        first = None if device_time is None else device_time - len(samples) / rate
        events.append(chunk(code, rate, samples, self.device_id, now, first_time=first))

    def _alarm_reply(self, reply: m.PollReply, events: list[DeviceEvent], now: float) -> None:
        """The Alarm Monitor's lists: every physiological and technical alarm active now."""
        found: list[DeviceAlarm] = []
        for obs in reply.observations:
            for ava in obs.attributes:
                if ava.attribute_id not in (
                    al.NOM_ATTR_AL_MON_P_AL_LIST,
                    al.NOM_ATTR_AL_MON_T_AL_LIST,
                ):
                    continue
                try:
                    entries = al.parse_alarm_list(ava.value)
                except MessageError as exc:
                    self._error(events, "malformed alarm list", len(ava.value), now, str(exc))
                    return  # a list we cannot read says nothing: the last report stands
                found += [a for a in map(al.device_alarm, entries) if a is not None]
        self._alarm_replies += 1
        self._alarms.offer(events, found, self._alarm_replies, now)
