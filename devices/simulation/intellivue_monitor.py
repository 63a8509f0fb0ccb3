"""A Philips IntelliVue monitor's Data Export interface, simulated.

:class:`MonitorProtocol` is the monitor's behaviour, sans-I/O (payloads in, payloads out):
it answers an association request with an acceptance and an MDS create event, and once the
host has acknowledged that event it answers extended polls: numerics once per request,
waves either once or, with a poll period, every 256 ms until the period ends, and the Alarm
Monitor with its alarm lists. A host that sends nothing for ``host_timeout_s`` loses its
association. Sample periods and scales travel as attributes in every wave reply.

Its unit settings and invasive lines (:class:`~devices.simulation.monitor_setup.MonitorSetup`)
say how it reports: NIBP (and the invasive pressures) in mm[Hg] or kPa, the temperature in
Cel or [degF], each with its unit code, and with lines in, ABP and PAP (compound numerics,
as NIBP) and CVP.

The monitor raises its own alarms as one would: its limits (the adult defaults of
:mod:`devices.alarms.limits`, with their delays) on the values it reports, and a technical
alarm while the SpO2 probe is off. Alarm scenarios (:mod:`devices.simulation.alarms`) take
the patient there on demand.

:class:`IntelliVueSimulator` carries it over MIB/RS232 framing on a pseudo-terminal.
"""

from __future__ import annotations

import asyncio
import struct
import time
from datetime import UTC, datetime

import numpy as np

from devices.alarms import conditions
from devices.alarms.engine import AlarmEngine, AlarmRecord
from devices.codes import VitalCode, by_mdc
from devices.errors import MessageError
from devices.model import AlarmPriority, Observation
from devices.protocols.intellivue import alarms as al
from devices.protocols.intellivue import messages as m
from devices.protocols.intellivue import types as t
from devices.protocols.intellivue.framing import Deframer, FramingError, encode_frame
from devices.simulation.monitor_setup import MonitorSetup
from devices.simulation.patient import Patient
from devices.simulation.pty_link import PtyLink
from devices.simulation.simulators import Faults, Simulator

# Physio ids (the low 16 bits of the MDC codes) and unit codes.
ECG_II, PLETH = 0x0102, 0x4BB4
HR, SPO2, PR, RESP, TEMP = 0x4182, 0x4BB8, 0x481A, 0x500A, 0x4B48
NIBP_SYS, NIBP_DIA, NIBP_MEAN = 0x4A05, 0x4A06, 0x4A07
DIM_BPM, DIM_PERCENT, DIM_MMHG, DIM_DEGC, DIM_RPM = 0x0AA0, 0x0220, 0x0F20, 0x17A0, 0x0AE0
DIM_KPA, DIM_FAHR = 0x0F03, 0x1140
#: The unit codes of a monitor's unit settings.
DIM_OF = {"mm[Hg]": DIM_MMHG, "kPa": DIM_KPA, "Cel": DIM_DEGC, "[degF]": DIM_FAHR}
#: Invasive pressures (NOM_PRESS_BLD_ART_ABP_*, _ART_PULM_*, _VEN_CENT_MEAN) by key.
INVASIVE_PHYSIO = {
    "abp_sys": 0x4A15,
    "abp_dia": 0x4A16,
    "abp_mean": 0x4A17,
    "pap_sys": 0x4A1D,
    "pap_dia": 0x4A1E,
    "pap_mean": 0x4A1F,
    "cvp_mean": 0x4A47,
}
#: Physio id by parameter key.
_PHYSIO = {
    "heart_rate": HR,
    "spo2": SPO2,
    "pulse_rate": PR,
    "resp_rate": RESP,
    "temperature": TEMP,
    "nibp_sys": NIBP_SYS,
    "nibp_dia": NIBP_DIA,
    "nibp_mean": NIBP_MEAN,
}

#: handle: (physio id, sample period in 1/8 ms ticks, scale (lo abs, hi abs, lo raw, hi raw))
WAVES = {
    0x0101: (ECG_II, 16, (-40.96, 40.955, 0, 16383)),
    0x0102: (PLETH, 64, (0.0, 1.0, 0, 4095)),
}
WAVE_REPLY_S = 0.256
#: The Alarm Monitor object's handle.
ALARM_MONITOR_HANDLE = 0x0001

_P_ALERT = {
    AlarmPriority.HIGH: al.HI_PRI_P_AL,
    AlarmPriority.MEDIUM: al.MED_PRI_P_AL,
    AlarmPriority.LOW: al.LOW_PRI_P_AL,
}
_STARS = {AlarmPriority.HIGH: "***", AlarmPriority.MEDIUM: "**", AlarmPriority.LOW: "*"}
_LABELS = {
    "heart_rate": "HR",
    "spo2": "SpO2",
    "pulse_rate": "Pulse",
    "resp_rate": "RR",
    "nibp_sys": "NBPs",
    "nibp_dia": "NBPd",
    "nibp_mean": "NBPm",
    "temperature": "Temp",
}


def _p_alarm(record: AlarmRecord, code: VitalCode) -> al.AlarmEntry:
    """A monitor's P-alarm entry for one of its limit alarms."""
    if record.condition == conditions.SPO2_DESAT:
        event, words = al.NOM_EVT_DESAT, "Desat"
    elif record.condition.endswith("_low"):
        event, words = al.NOM_EVT_LO, f"{_LABELS.get(code.key, code.key)} Low"
    else:
        event, words = al.NOM_EVT_HI, f"{_LABELS.get(code.key, code.key)} High"
    return al.AlarmEntry(
        source=code.mdc & 0xFFFF,
        code=event,
        alert_type=_P_ALERT[record.priority],
        state=al.AL_NEW_ALERT,
        flags=al.BEDSIDE_AUDIBLE | al.CENTRAL_AUDIBLE,
        text=_STARS[record.priority] + words,
    )


def _compound(handle: int, entries: list[tuple[int, float | None, int]]) -> m.Observation:
    """A compound numeric (NIBP, ABP, PAP: systolic, diastolic, mean): (physio, value, unit)."""
    values = [m.numeric_value(physio, value, unit) for physio, value, unit in entries]
    body = struct.pack(">HH", len(values), sum(map(len, values))) + b"".join(values)
    return m.Observation(handle, (t.Ava(t.NOM_ATTR_NU_CMPD_VAL_OBS, body),))


#: The technical alarm of an SpO2 probe off the finger (cyan, as the monitor's INOP).
PROBE_OFF_INOP = al.AlarmEntry(
    source=SPO2,
    code=al.NOM_EVT_SENSOR_DISCONN,
    alert_type=al.LOW_PRI_T_AL,
    flags=al.BEDSIDE_AUDIBLE | al.CENTRAL_AUDIBLE,
    text="SpO2 SENSOR OFF",
)


class MonitorProtocol:
    """The monitor side of Data Export, sans-I/O. ``now`` is a monotonic clock in seconds."""

    def __init__(
        self,
        patient: Patient,
        faults: Faults,
        host_timeout_s: float = 15.0,
        model: str = "MX450",
        setup: MonitorSetup | None = None,
    ) -> None:
        self.patient = patient
        self.faults = faults
        self.setup = setup or MonitorSetup()
        self.host_timeout_s = host_timeout_s
        self.model = model
        self.associated = False
        self.ready = False
        self.requests: list[m.HostMessage] = []
        self.errors = 0
        self._last_host = 0.0
        self._waves_until = 0.0
        self._next_wave_reply = 0.0
        self._wave_invoke = 0
        self._wave_t = 0.0  # patient time of the next wave sample
        self._started = time.monotonic()
        #: The monitor's own limit alarms, on what it reports.
        self.limit_alarms = AlarmEngine()
        self._alarm_changes = 0

    def _rel_time(self, now: float) -> int:
        return int((now - self._started) * t.TICKS_PER_S) & 0xFFFFFFFF

    def receive_payload(self, payload: bytes, now: float) -> list[bytes]:
        """A host message in; the replies out."""
        try:
            message = m.parse_host(payload)
        except MessageError:
            self.errors += 1
            return []
        self.requests.append(message)
        self._last_host = now
        match message:
            case m.AssociationRequest():
                self.associated, self.ready = True, False
                return [
                    m.association_result(),
                    m.mds_create_event(1, self._rel_time(now), datetime.now(UTC), self.model),
                ]
            case m.EventReportResult() if self.associated:
                self.ready = True
                self._wave_t = self.patient.time
            case m.PollRequest(object_type=t.NOM_MOC_VMO_METRIC_NU) if self.ready:
                return [self._numerics_reply(message, now)]
            case m.PollRequest(object_type=al.NOM_MOC_VMO_AL_MON) if self.ready:
                return [self._alarms_reply(message, now)]
            case m.PollRequest(object_type=t.NOM_MOC_VMO_METRIC_SA_RT) if self.ready:
                self._wave_invoke = message.invoke_id
                if message.period_s:
                    self._waves_until = now + message.period_s
                    self._next_wave_reply = now
                else:
                    return [self._waves_reply(message.invoke_id, message.poll_number, now)]
            case m.ReleaseRequest():
                self.associated = self.ready = False
                return [m.RELEASE_RESULT]
            case _:
                pass
        return []

    def periodic(self, now: float) -> list[bytes]:
        """Call often: the replies a periodic wave poll owes by ``now``."""
        if self.ready and now - self._last_host > self.host_timeout_s:
            self.associated = self.ready = False  # the host went silent
        out: list[bytes] = []
        while self.ready and now < self._waves_until and now >= self._next_wave_reply:
            out.append(self._waves_reply(self._wave_invoke, 0, now))
            self._next_wave_reply += WAVE_REPLY_S
        return out

    def _parts(self, invoke_id: int, poll_number: int, kind: int, now: float) -> m.PollReplyParts:
        return m.PollReplyParts(
            invoke_id, poll_number, kind, self._rel_time(now), datetime.now(UTC)
        )

    @property
    def probe_off(self) -> bool:
        return self.faults.probe_off or self.patient.probe_off

    def _numerics_reply(self, poll: m.PollRequest, now: float) -> bytes:
        p, off = self.patient, self.probe_off
        parts = self._parts(poll.invoke_id, poll.poll_number, t.NOM_MOC_VMO_METRIC_NU, now)
        values = {
            HR: round(p.heart_rate),
            SPO2: None if off else round(p.spo2),
            PR: None if off else round(p.heart_rate),
            RESP: round(p.resp_rate),
            TEMP: round(p.held("temperature", 36.8), 1),
            NIBP_SYS: round(p.held("nibp_sys", 118)),
            NIBP_DIA: round(p.held("nibp_dia", 76)),
            NIBP_MEAN: round(p.held("nibp_mean", 90)),
        }
        self._check_limits(values, now)
        setup = self.setup
        pressure, temperature = DIM_OF[setup.pressure_unit], DIM_OF[setup.temperature_unit]
        # What the monitor shows, in its units (one decimal, as it shows kPa and degF).
        sent = {**values, TEMP: setup.temperature(values[TEMP])}
        for physio in (NIBP_SYS, NIBP_DIA, NIBP_MEAN):
            sent[physio] = setup.pressure(values[physio])
        units = {HR: DIM_BPM, SPO2: DIM_PERCENT, PR: DIM_BPM, RESP: DIM_RPM, TEMP: temperature}
        for handle, physio in zip(range(0x0201, 0x0206), (HR, SPO2, PR, RESP, TEMP), strict=True):
            value = m.numeric_value(physio, sent[physio], units[physio], sent[physio] is not None)
            parts.observations.append(m.Observation(handle, (t.Ava(t.NOM_ATTR_NU_VAL_OBS, value),)))
        parts.observations.append(
            _compound(
                0x0206,
                [(physio, sent[physio], pressure) for physio in (NIBP_SYS, NIBP_DIA, NIBP_MEAN)],
            )
        )
        invasive = {key: setup.pressure(round(mmhg)) for key, mmhg in setup.invasive_pressures(p)}
        if invasive:
            for handle, line in ((0x0207, "abp"), (0x0208, "pap")):
                keys = (f"{line}_sys", f"{line}_dia", f"{line}_mean")
                entries = [(INVASIVE_PHYSIO[k], invasive[k], pressure) for k in keys]
                parts.observations.append(_compound(handle, entries))
            cvp = m.numeric_value(INVASIVE_PHYSIO["cvp_mean"], invasive["cvp_mean"], pressure)
            parts.observations.append(m.Observation(0x0209, (t.Ava(t.NOM_ATTR_NU_VAL_OBS, cvp),)))
        return m.poll_reply(parts)

    def _check_limits(self, values: dict[int, float | None], now: float) -> None:
        for physio, value in values.items():
            code = by_mdc(t.mdc_of(physio))
            if code is not None:
                observation = Observation(
                    code, None if value is None else float(value), "monitor", now
                )
                self._alarm_changes += len(self.limit_alarms.observe(observation))

    def alarm_entries(self, now: float) -> tuple[list[al.AlarmEntry], list[al.AlarmEntry]]:
        """The P-alarm and T-alarm lists as of ``now``."""
        self._alarm_changes += len(self.limit_alarms.tick(now))
        physiological = []
        for record in self.limit_alarms.active():
            code = by_mdc(t.mdc_of(_PHYSIO[record.code or ""]))
            if code is not None:
                physiological.append(_p_alarm(record, code))
        technical = [PROBE_OFF_INOP] if self.probe_off else []
        return physiological, technical

    def _alarms_reply(self, poll: m.PollRequest, now: float) -> bytes:
        physiological, technical = self.alarm_entries(now)
        worst_p = max((e.alert_type for e in physiological), default=al.NO_ALERT)
        worst_t = max((e.alert_type for e in technical), default=al.NO_ALERT)
        condition = al.AlertCondition(
            change_count=self._alarm_changes & 0xFFFF,
            max_p_alarm=worst_p,
            max_t_alarm=worst_t,
            max_audible=max(worst_p, worst_t),
        )
        parts = self._parts(poll.invoke_id, poll.poll_number, al.NOM_MOC_VMO_AL_MON, now)
        parts.observations.append(
            m.Observation(
                ALARM_MONITOR_HANDLE,
                (
                    t.Ava(al.NOM_ATTR_DEV_AL_COND, condition.encode()),
                    t.Ava(al.NOM_ATTR_AL_MON_P_AL_LIST, al.encode_alarm_list(physiological)),
                    t.Ava(al.NOM_ATTR_AL_MON_T_AL_LIST, al.encode_alarm_list(technical)),
                ),
            )
        )
        return m.poll_reply(parts)

    def _waves_reply(self, invoke_id: int, poll_number: int, now: float) -> bytes:
        """The samples since the last wave reply (at most 1 s), with their attributes. Each
        wave's samples are its sample period's multiples in [start, end): a time that float
        sums leave a hair short of a multiple counts as that multiple, so that no sample is
        sent twice (up to one pleth sample in 33 was, shifting all after it)."""
        p = self.patient
        end = max(p.time, self._wave_t)
        start = max(self._wave_t, end - 1.0)
        self._wave_t = end
        parts = self._parts(invoke_id, poll_number, t.NOM_MOC_VMO_METRIC_SA_RT, now)
        for handle, (physio, ticks, (lo, hi, lo_s, hi_s)) in WAVES.items():
            period = ticks / t.TICKS_PER_S
            first, stop = (int(np.ceil(x / period - 1e-6)) for x in (start, end))
            times = np.asarray(np.arange(first, stop) * period, dtype=np.float64)
            signal = p.ecg_at(times) if physio == ECG_II else p.pleth_at(times)
            raw = np.clip(np.round(lo_s + (signal - lo) * (hi_s - lo_s) / (hi - lo)), lo_s, hi_s)
            state = t.STATE_INVALID if physio == PLETH and self.probe_off else 0
            samples = struct.pack(f">{len(raw)}H", *raw.astype(int))
            scale = struct.pack(">IIHH", t.encode_float(lo, 3), t.encode_float(hi, 3), lo_s, hi_s)
            value = struct.pack(">HHH", physio, state, len(samples)) + samples
            parts.observations.append(
                m.Observation(
                    handle,
                    (
                        t.Ava(t.NOM_ATTR_TIME_PD_SAMP, ticks.to_bytes(4, "big")),
                        t.Ava(t.NOM_ATTR_SCALE_SPECN_I16, scale),
                        t.Ava(t.NOM_ATTR_SA_VAL_OBS, value),
                    ),
                )
            )
        return m.poll_reply(parts)


class IntelliVueSimulator(Simulator):
    """The monitor over MIB/RS232 on a pseudo-terminal."""

    name = "intellivue"
    tick_s = 0.032

    def __init__(
        self,
        link: PtyLink,
        patient: Patient | None = None,
        faults: Faults | None = None,
        *,
        host_timeout_s: float = 15.0,
        setup: MonitorSetup | None = None,
    ) -> None:
        super().__init__(link, patient, faults)
        self.monitor = MonitorProtocol(self.patient, self.faults, host_timeout_s, setup=setup)
        self._deframer = Deframer()

    def on_host_bytes(self, data: bytes) -> None:
        for item in self._deframer.receive_data(data):
            if isinstance(item, FramingError):
                self.monitor.errors += 1
                continue
            for reply in self.monitor.receive_payload(item, time.monotonic()):
                self.link.write(encode_frame(reply))

    def frames_due(self, elapsed: float) -> int:
        return int(elapsed / self.tick_s)

    def frames(self, count: int) -> bytes:
        self.patient.pleth(max(1, round(count * self.tick_s * 125)), 125.0)  # patient clock
        return b"".join(encode_frame(r) for r in self.monitor.periodic(time.monotonic()))


class IntelliVueLanSimulator:
    """The monitor on the LAN: answers on UDP ``host:port`` and announces itself with a
    Connect Indication to ``announce_to`` every ``announce_s`` seconds."""

    name = "intellivue-lan"

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 24105,
        announce_to: tuple[str, int] | None = ("127.0.0.1", 24005),
        patient: Patient | None = None,
        faults: Faults | None = None,
        announce_s: float = 1.0,
        setup: MonitorSetup | None = None,
    ) -> None:
        self.host, self.port = host, port
        self.announce_to = announce_to
        self.patient = patient or Patient()
        self.faults = faults or Faults()
        self.announce_s = announce_s
        self.monitor = MonitorProtocol(self.patient, self.faults, setup=setup)
        self.ready = asyncio.Event()
        self._peer: tuple[str, int] | None = None

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        simulator = self

        class Endpoint(asyncio.DatagramProtocol):
            def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
                simulator._peer = addr
                for reply in simulator.monitor.receive_payload(data, time.monotonic()):
                    transport.sendto(reply, addr)

        transport, _ = await loop.create_datagram_endpoint(
            Endpoint, local_addr=(self.host, self.port)
        )
        self.port = transport.get_extra_info("sockname")[1]
        self.ready.set()
        indication = m.connect_indication("MX450", b"\x00\x09\xfb\x00\x00\x01", self.host)
        last_announce = -1e9
        try:
            while True:
                await asyncio.sleep(0.032)
                now = time.monotonic()
                self.patient.pleth(4, 125.0)  # the patient's clock, 32 ms a tick
                if self.announce_to and now - last_announce >= self.announce_s:
                    transport.sendto(indication, self.announce_to)
                    last_announce = now
                for reply in self.monitor.periodic(now):
                    if self._peer is not None:
                        transport.sendto(reply, self._peer)
        finally:
            transport.close()
