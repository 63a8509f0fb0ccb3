"""IntelliVue under hostile input (issue 11): counts checked against the bytes present, unit
codes converted (never relabelled), invasive pressures decoded, and no exception out of
``receive_data``."""

from __future__ import annotations

from datetime import UTC, datetime

from devices import codes
from devices.model import DeviceEvent, FrameError, Observation, Quality
from devices.protocols.common import DECODER_FAULT, UNMAPPED
from devices.protocols.intellivue import messages as m
from devices.protocols.intellivue import types as t
from devices.protocols.intellivue.framing import encode_frame
from devices.protocols.intellivue.host import IntelliVueHost
from tests.devices.test_intellivue import _connect

DIM_MMHG, DIM_KPA, DIM_DEGC, DIM_FAHR, DIM_PERCENT = 0x0F20, 0x0F03, 0x17A0, 0x1140, 0x0220


def _numerics(*observations: m.Observation) -> bytes:
    parts = m.PollReplyParts(
        5, 2, t.NOM_MOC_VMO_METRIC_NU, 0, datetime(2026, 1, 1, tzinfo=UTC), list(observations)
    )
    return encode_frame(m.poll_reply(parts))


def _nu(handle: int, physio: int, value: float, unit: int) -> m.Observation:
    return m.Observation(
        handle, (t.Ava(t.NOM_ATTR_NU_VAL_OBS, m.numeric_value(physio, value, unit)),)
    )


def _observed(events: list[DeviceEvent]) -> list[tuple[str, float | None]]:
    return [(e.code.key, e.value) for e in events if isinstance(e, Observation)]


def _host() -> IntelliVueHost:
    host = IntelliVueHost("iv")
    _connect(host)
    return host


def test_compound_counts_beyond_the_bytes_present_are_refused_before_any_loop() -> None:
    """A CRC-valid reply whose compound numerics each claim 65,535 entries: refused at once
    by its count (the loop once ran over every claimed entry), the rest still decoded."""
    lying = b"\xff\xff\x00\x1e" + m.numeric_value(0x4A05, 118, DIM_MMHG)
    reply = _numerics(
        *[m.Observation(h, (t.Ava(t.NOM_ATTR_NU_CMPD_VAL_OBS, lying),)) for h in range(1, 200)],
        _nu(500, 0x4BB8, 97, DIM_PERCENT),
    )
    events = _host().receive_data(reply, 1.0)
    errors = [e for e in events if isinstance(e, FrameError)]
    assert len(errors) == 199
    assert {e.reason for e in errors} == {"malformed compound numeric"}
    assert "65535 entries claimed in 14 bytes" in errors[0].detail
    assert _observed(events) == [("spo2", 97.0)]


def test_unit_codes_are_converted_never_relabelled() -> None:
    reply = _numerics(
        _nu(1, 0x4A05, 16, DIM_KPA),  # NIBP systolic in kPa
        _nu(2, 0x4B48, 98.6, DIM_FAHR),  # temperature in degF
        _nu(3, 0x4A06, 80, DIM_MMHG),
    )
    events = _host().receive_data(reply, 1.0)
    assert _observed(events) == [
        ("nibp_sys", 120.01),  # 16 kPa = 120.0098 mm[Hg]
        ("temperature", 37.0),
        ("nibp_dia", 80.0),
    ]


def test_an_unknown_unit_gives_no_value_a_flag_and_one_report() -> None:
    host = _host()
    reply = _numerics(_nu(1, 0x4A05, 16, 0x1234), _nu(2, 0x4BB8, 97, DIM_DEGC))
    first = host.receive_data(reply, 1.0)
    values = [e for e in first if isinstance(e, Observation)]
    assert [(o.code.key, o.value) for o in values] == [("nibp_sys", None), ("spo2", None)]
    assert all(o.quality & Quality.UNIT_UNKNOWN for o in values)
    reports = [e for e in first if isinstance(e, FrameError)]
    assert [e.reason for e in reports] == [UNMAPPED, UNMAPPED]
    assert "0x1234" in reports[0].detail and "Cel" in reports[1].detail
    again = host.receive_data(reply, 2.0)
    assert not [e for e in again if isinstance(e, FrameError)]  # once per code and unit
    assert host.stats.unmapped[reports[0].detail] == 2
    assert host.stats.error_count == 0


def test_invasive_pressures_are_decoded() -> None:
    compound = (
        b"\x00\x03\x00\x1e"
        + m.numeric_value(0x4A15, 121, DIM_MMHG)  # MDC_PRESS_BLD_ART_ABP_SYS
        + m.numeric_value(0x4A16, 79, DIM_MMHG)
        + m.numeric_value(0x4A17, 93, DIM_MMHG)
    )
    reply = _numerics(
        m.Observation(1, (t.Ava(t.NOM_ATTR_NU_CMPD_VAL_OBS, compound),)),
        _nu(2, 0x4A47, 1.2, DIM_KPA),  # CVP mean in kPa
        _nu(3, 0x509C, 38, DIM_MMHG),  # EtCO2
    )
    events = _host().receive_data(reply, 1.0)
    assert _observed(events) == [
        ("abp_sys", 121.0),
        ("abp_dia", 79.0),
        ("abp_mean", 93.0),
        ("cvp_mean", 9.0),
        ("etco2", 38.0),
    ]
    assert codes.ETCO2.mdc == t.mdc_of(0x509C)


class _Faulty(IntelliVueHost):
    """A host with a bug met on input: its poll-reply handling raises."""

    armed = False

    def _poll_reply(self, reply: m.PollReply, events: list[DeviceEvent], now: float) -> None:
        if self.armed:
            raise KeyError("a bug")
        super()._poll_reply(reply, events, now)


def test_an_exception_in_a_message_is_a_counted_frame_error_and_the_stream_goes_on() -> None:
    host = _Faulty("iv")
    _connect(host)
    host.armed = True
    reply = _numerics(_nu(1, 0x4BB8, 97, DIM_PERCENT))
    events = host.receive_data(reply + reply, 1.0)
    assert [e.reason for e in events if isinstance(e, FrameError)] == [DECODER_FAULT] * 2
    assert host.stats.errors == {DECODER_FAULT: 2}
    host.armed = False
    assert _observed(host.receive_data(reply, 2.0)) == [("spo2", 97.0)]
