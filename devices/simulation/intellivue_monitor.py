"""A Philips IntelliVue monitor's Data Export interface on MIB/RS232, simulated.

It answers an association request with an acceptance and an MDS create event, and once the
host has acknowledged that event it answers extended polls: numerics once per request,
waves either once or, with a poll period, every 256 ms until the period ends (linked
results, as the monitor does). A host that sends nothing for ``host_timeout_s`` loses its
association. Sample periods and scales travel as attributes in every wave reply.
"""

from __future__ import annotations

import struct
import time
from datetime import UTC, datetime

import numpy as np

from devices.protocols.intellivue import messages as m
from devices.protocols.intellivue import types as t
from devices.protocols.intellivue.framing import Deframer, FramingError, encode_frame
from devices.simulation.patient import Patient
from devices.simulation.pty_link import PtyLink
from devices.simulation.simulators import Faults, Simulator

# Physio ids (the low 16 bits of the MDC codes) and unit codes.
ECG_II, PLETH = 0x0102, 0x4BB4
HR, SPO2, PR, RESP, TEMP = 0x4182, 0x4BB8, 0x481A, 0x500A, 0x4B48
NIBP, NIBP_SYS, NIBP_DIA, NIBP_MEAN = 0x4A04, 0x4A05, 0x4A06, 0x4A07
DIM_BPM, DIM_PERCENT, DIM_MMHG, DIM_DEGC, DIM_RPM = 0x0AA0, 0x0220, 0x0F20, 0x17A0, 0x0AE0

#: handle: (physio id, sample period in 1/8 ms ticks, scale (lo abs, hi abs, lo raw, hi raw))
WAVES = {
    0x0101: (ECG_II, 16, (-40.96, 40.955, 0, 16383)),
    0x0102: (PLETH, 64, (0.0, 1.0, 0, 4095)),
}
WAVE_REPLY_S = 0.256


class IntelliVueSimulator(Simulator):
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
        self.host_timeout_s = host_timeout_s
        self._deframer = Deframer()
        self.associated = False
        self.ready = False
        self.requests: list[m.HostMessage] = []
        self.framing_errors = 0
        self._last_host = 0.0
        self._waves_until = 0.0
        self._wave_invoke = 0
        self._wave_t = 0.0  # patient time of the next wave sample
        self._started = time.monotonic()

    def _reply(self, payload: bytes) -> None:
        self.link.write(encode_frame(payload))

    def _rel_time(self) -> int:
        return int((time.monotonic() - self._started) * t.TICKS_PER_S) & 0xFFFFFFFF

    def on_host_bytes(self, data: bytes) -> None:
        for item in self._deframer.receive_data(data):
            if isinstance(item, FramingError):
                self.framing_errors += 1
                continue
            try:
                message = m.parse_host(item)
            except m.MessageError:
                self.framing_errors += 1
                continue
            self.requests.append(message)
            self._last_host = time.monotonic()
            self._handle(message)

    def _handle(self, message: m.HostMessage) -> None:
        match message:
            case m.AssociationRequest():
                self.associated, self.ready = True, False
                self._reply(m.association_result())
                self._reply(m.mds_create_event(1, self._rel_time(), datetime.now(UTC), "MX450"))
            case m.EventReportResult() if self.associated:
                self.ready = True
                self._wave_t = self.patient.time
            case m.PollRequest(object_type=t.NOM_MOC_VMO_METRIC_NU) if self.ready:
                self._reply(self._numerics_reply(message))
            case m.PollRequest(object_type=t.NOM_MOC_VMO_METRIC_SA_RT) if self.ready:
                self._wave_invoke = message.invoke_id
                if message.period_s:
                    self._waves_until = time.monotonic() + message.period_s
                else:
                    self._reply(self._waves_reply(message.invoke_id, message.poll_number))
            case m.ReleaseRequest():
                self._reply(m.RELEASE_RESULT)
                self.associated = self.ready = False
            case _:
                pass

    def _reply_parts(self, invoke_id: int, poll_number: int, object_type: int) -> m.PollReplyParts:
        return m.PollReplyParts(
            invoke_id, poll_number, object_type, self._rel_time(), datetime.now(UTC)
        )

    def _numerics_reply(self, poll: m.PollRequest) -> bytes:
        p, off = self.patient, self.faults.probe_off
        parts = self._reply_parts(poll.invoke_id, poll.poll_number, t.NOM_MOC_VMO_METRIC_NU)
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

    def _waves_reply(self, invoke_id: int, poll_number: int) -> bytes:
        """The samples since the last wave reply (at most 1 s), with their attributes."""
        p = self.patient
        end = max(p.time, self._wave_t)
        start = max(self._wave_t, end - 1.0)
        self._wave_t = end
        parts = self._reply_parts(invoke_id, poll_number, t.NOM_MOC_VMO_METRIC_SA_RT)
        for handle, (physio, ticks, (lo, hi, lo_s, hi_s)) in WAVES.items():
            period = ticks / t.TICKS_PER_S
            times = np.arange(start, end, period)
            signal = p.ecg_at(times) if physio == ECG_II else p.pleth_at(times)
            raw = np.clip(np.round(lo_s + (signal - lo) * (hi_s - lo_s) / (hi - lo)), lo_s, hi_s)
            state = t.STATE_INVALID if physio == PLETH and self.faults.probe_off else 0
            samples = struct.pack(f">{len(raw)}H", *raw.astype(int))
            scale = struct.pack(">IIHH", t.encode_float(lo, 3), t.encode_float(hi, 3), lo_s, hi_s)
            parts.observations.append(
                m.Observation(
                    handle,
                    (
                        t.Ava(t.NOM_ATTR_TIME_PD_SAMP, ticks.to_bytes(4, "big")),
                        t.Ava(t.NOM_ATTR_SCALE_SPECN_I16, scale),
                        t.Ava(
                            t.NOM_ATTR_SA_VAL_OBS,
                            struct.pack(">HHH", physio, state, len(samples)) + samples,
                        ),
                    ),
                )
            )
        return m.poll_reply(parts)

    def frames_due(self, elapsed: float) -> int:
        return int(elapsed / WAVE_REPLY_S)

    def frames(self, count: int) -> bytes:
        self.patient.pleth(int(count * WAVE_REPLY_S * 125), 125.0)  # the patient's clock
        now = time.monotonic()
        if self.ready and now - self._last_host > self.host_timeout_s:
            self.associated = self.ready = False  # the host went silent
        if self.ready and now < self._waves_until:
            return encode_frame(self._waves_reply(self._wave_invoke, 0))
        return b""
