"""A Philips IntelliVue monitor's Data Export interface, simulated.

:class:`MonitorProtocol` is the monitor's behaviour, sans-I/O (payloads in, payloads out):
it answers an association request with an acceptance and an MDS create event, and once the
host has acknowledged that event it answers extended polls: numerics once per request,
waves either once or, with a poll period, every 256 ms until the period ends. A host that
sends nothing for ``host_timeout_s`` loses its association. Sample periods and scales travel
as attributes in every wave reply.

:class:`IntelliVueSimulator` carries it over MIB/RS232 framing on a pseudo-terminal.
"""

from __future__ import annotations

import asyncio
import struct
import time
from datetime import UTC, datetime

import numpy as np

from devices.errors import MessageError
from devices.protocols.intellivue import messages as m
from devices.protocols.intellivue import types as t
from devices.protocols.intellivue.framing import Deframer, FramingError, encode_frame
from devices.simulation.patient import Patient
from devices.simulation.pty_link import PtyLink
from devices.simulation.simulators import Faults, Simulator

# Physio ids (the low 16 bits of the MDC codes) and unit codes.
ECG_II, PLETH = 0x0102, 0x4BB4
HR, SPO2, PR, RESP, TEMP = 0x4182, 0x4BB8, 0x481A, 0x500A, 0x4B48
NIBP_SYS, NIBP_DIA, NIBP_MEAN = 0x4A05, 0x4A06, 0x4A07
DIM_BPM, DIM_PERCENT, DIM_MMHG, DIM_DEGC, DIM_RPM = 0x0AA0, 0x0220, 0x0F20, 0x17A0, 0x0AE0

#: handle: (physio id, sample period in 1/8 ms ticks, scale (lo abs, hi abs, lo raw, hi raw))
WAVES = {
    0x0101: (ECG_II, 16, (-40.96, 40.955, 0, 16383)),
    0x0102: (PLETH, 64, (0.0, 1.0, 0, 4095)),
}
WAVE_REPLY_S = 0.256


class MonitorProtocol:
    """The monitor side of Data Export, sans-I/O. ``now`` is a monotonic clock in seconds."""

    def __init__(
        self, patient: Patient, faults: Faults, host_timeout_s: float = 15.0, model: str = "MX450"
    ) -> None:
        self.patient = patient
        self.faults = faults
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

    def _numerics_reply(self, poll: m.PollRequest, now: float) -> bytes:
        p, off = self.patient, self.faults.probe_off
        parts = self._parts(poll.invoke_id, poll.poll_number, t.NOM_MOC_VMO_METRIC_NU, now)
        singles = [
            (0x0201, m.numeric_value(HR, round(p.heart_rate), DIM_BPM)),
            (0x0202, m.numeric_value(SPO2, round(p.spo2), DIM_PERCENT, not off)),
            (0x0203, m.numeric_value(PR, round(p.heart_rate), DIM_BPM, not off)),
            (0x0204, m.numeric_value(RESP, round(p.resp_rate), DIM_RPM)),
            (0x0205, m.numeric_value(TEMP, 36.8, DIM_DEGC)),
        ]
        for handle, value in singles:
            parts.observations.append(m.Observation(handle, (t.Ava(t.NOM_ATTR_NU_VAL_OBS, value),)))
        nibp = [
            m.numeric_value(NIBP_SYS, 118, DIM_MMHG),
            m.numeric_value(NIBP_DIA, 76, DIM_MMHG),
            m.numeric_value(NIBP_MEAN, 90, DIM_MMHG),
        ]
        compound = struct.pack(">HH", 3, 30) + b"".join(nibp)
        parts.observations.append(
            m.Observation(0x0206, (t.Ava(t.NOM_ATTR_NU_CMPD_VAL_OBS, compound),))
        )
        return m.poll_reply(parts)

    def _waves_reply(self, invoke_id: int, poll_number: int, now: float) -> bytes:
        """The samples since the last wave reply (at most 1 s), with their attributes."""
        p = self.patient
        end = max(p.time, self._wave_t)
        start = max(self._wave_t, end - 1.0)
        self._wave_t = end
        parts = self._parts(invoke_id, poll_number, t.NOM_MOC_VMO_METRIC_SA_RT, now)
        for handle, (physio, ticks, (lo, hi, lo_s, hi_s)) in WAVES.items():
            times = np.arange(start, end, ticks / t.TICKS_PER_S)
            signal = p.ecg_at(times) if physio == ECG_II else p.pleth_at(times)
            raw = np.clip(np.round(lo_s + (signal - lo) * (hi_s - lo_s) / (hi - lo)), lo_s, hi_s)
            state = t.STATE_INVALID if physio == PLETH and self.faults.probe_off else 0
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
    ) -> None:
        super().__init__(link, patient, faults)
        self.monitor = MonitorProtocol(self.patient, self.faults, host_timeout_s)
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
    ) -> None:
        self.host, self.port = host, port
        self.announce_to = announce_to
        self.patient = patient or Patient()
        self.faults = faults or Faults()
        self.announce_s = announce_s
        self.monitor = MonitorProtocol(self.patient, self.faults)
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
