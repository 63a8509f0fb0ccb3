"""Philips IntelliVue Data Export: the real host captures, framing, data types, and the
gateway's session state machine against the monitor side's own encoders."""

from __future__ import annotations

import asyncio
import itertools
import re
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from devices.errors import MessageError
from devices.model import (
    DeviceEvent,
    DeviceState,
    DeviceStatus,
    FrameError,
    Observation,
    WaveformChunk,
)
from devices.protocols.intellivue import alarms as al
from devices.protocols.intellivue import messages as m
from devices.protocols.intellivue import types as t
from devices.protocols.intellivue.framing import Deframer, FramingError, crc16_x25, encode_frame
from devices.protocols.intellivue.host import HostState, IntelliVueHost
from devices.simulation.intellivue_monitor import IntelliVueLanSimulator
from devices.transports.intellivue_lan import IntelliVueLanReader
from runtime.tasks import cancel_and_wait, spawn


def _payloads(data: bytes) -> tuple[list[bytes], list[FramingError]]:
    out = Deframer().receive_data(data)
    return [o for o in out if isinstance(o, bytes)], [o for o in out if isinstance(o, FramingError)]


def test_every_frame_of_the_host_log_checks_and_parses(captures: Path) -> None:
    raw = (captures / "philips-intellivue-mib-rs232" / "MPRawoutput1.raw").read_bytes()
    payloads, errors = _payloads(raw)
    assert len(payloads) == 182
    # The one non-frame: 15 bytes of an abort the host cut off to start a new association.
    assert [(e.reason, e.skipped) for e in errors] == [("frame cut short by a new start", 15)]
    kinds: Counter[object] = Counter()
    for payload in payloads:
        message = m.parse_host(payload)
        if isinstance(message, m.PollRequest):
            kinds[(message.object_type, message.period_s)] += 1
        else:
            kinds[type(message).__name__] += 1
    assert kinds == {
        "AssociationRequest": 4,
        (t.NOM_MOC_VMO_METRIC_NU, 30.0): 85,
        (t.NOM_MOC_VMO_METRIC_SA_RT, 600.0): 84,
        "EventReportResult": 4,
        "GetRequest": 4,
        "SetRequest": 1,
    }
    gets = [m.parse_host(p) for p in payloads if isinstance(m.parse_host(p), m.GetRequest)]
    assert {g.attribute_ids for g in gets} == {(t.NOM_ATTR_POLL_RTSA_PRIO_LIST,)}  # type: ignore[union-attr]
    # Our own association request is the one standard hosts send, byte for byte.
    assert payloads[0] == m.ASSOCIATION_REQUEST


def test_test_tool_log_retries_and_releases(captures: Path) -> None:
    text = (
        captures / "philips-intellivue-mib-rs232" / "DevIfTest_20181102_130901_COM4_115200.txt"
    ).read_text()
    blocks = re.findall(
        r":(\d+):(\d+) [AP]M:(\d+) (Association|Release) Request[^\n]*\n\n((?:[0-9A-F]{2} ?\s*)+)",
        text,
    )
    assert len(blocks) == 10
    times = []
    for minute, second, millis, kind, hexdump in blocks:
        message = m.parse_host(bytes.fromhex("".join(hexdump.split())))
        assert type(message) is (
            m.AssociationRequest if kind == "Association" else m.ReleaseRequest
        )
        times.append(int(minute) * 60 + int(second) + int(millis) / 1000)
    gaps = [b - a for a, b in itertools.pairwise(times[:-1])]  # the last one is the release
    assert all(4.3 < g < 4.6 for g in gaps)  # the tool's retry interval


def test_crc_check_value() -> None:
    assert crc16_x25(b"123456789") == 0x906E


@settings(max_examples=100, deadline=None)
@given(st.binary(min_size=1, max_size=300), st.data())
def test_frames_round_trip_at_any_split(payload: bytes, data: st.DataObject) -> None:
    framed = encode_frame(payload)
    assert framed.count(0xC0) == 1 and framed.count(0xC1) == 1
    cut = data.draw(st.integers(0, len(framed)))
    deframer = Deframer()
    assert deframer.receive_data(framed[:cut]) + deframer.receive_data(framed[cut:]) == [payload]


def test_framing_faults_and_resynchronisation() -> None:
    good = encode_frame(b"\xe1\x00payload")
    bad_fcs = bytearray(good)
    bad_fcs[-2] ^= 0x01 if bad_fcs[-2] not in (0xC1, 0xC0, 0x7D) else 0x02
    wrong_length = encode_frame(b"abc").replace(b"\x00\x03", b"\x00\x04", 1)
    stream = b"zz" + bytes(bad_fcs) + good + wrong_length + good + b"\xc0\x11\x01" + good
    payloads, errors = _payloads(stream)
    assert payloads == [b"\xe1\x00payload"] * 3
    assert [e.reason for e in errors] == [
        "bytes outside a frame",
        "bad frame check sequence",
        "frame length does not match its header",
        "frame cut short by a new start",
    ]


@given(st.integers(-(10**6), 10**6), st.integers(0, 3))
def test_float_type_round_trip(mantissa: int, decimals: int) -> None:
    value = mantissa / 10**decimals
    assert t.decode_float(t.encode_float(value, decimals)) == pytest.approx(value)


def test_float_specials_and_time() -> None:
    assert t.decode_float(0x007FFFFF) is None  # NaN
    assert t.decode_float(0x00800000) is None  # NRes
    assert t.decode_float(t.encode_float(36.8, 1)) == 36.8
    moment = datetime(2026, 11, 25, 9, 30, 15, 250000, tzinfo=UTC)
    assert t.decode_abs_time(t.encode_abs_time(moment), UTC) == moment.timestamp()
    assert t.decode_abs_time(b"\xff" * 8, UTC) is None


def _state(host: IntelliVueHost) -> HostState:
    return host.state  # read through a call: each read is a fresh value for the type checker


def _connect(host: IntelliVueHost, now: float = 0.0) -> bytes:
    """Drive the host to POLLING; returns what it sent on the way."""
    host.tick(now)
    sent = host.data_to_send()
    assert _state(host) is HostState.ASSOCIATING
    host.receive_data(encode_frame(m.association_result()), now)
    assert _state(host) is HostState.AWAIT_MDS
    events = host.receive_data(encode_frame(m.mds_create_event(7, 0, datetime.now(UTC), "MX")), now)
    assert _state(host) is HostState.POLLING
    assert [e.state for e in events if isinstance(e, DeviceStatus)] == [DeviceState.CONNECTED]
    return sent + host.data_to_send()


def _sent_messages(data: bytes) -> list[m.HostMessage]:
    payloads, errors = _payloads(data)
    assert not errors
    return [m.parse_host(p) for p in payloads]


def test_host_associates_acknowledges_and_polls() -> None:
    host = IntelliVueHost("iv")
    sent = _sent_messages(_connect(host))
    assert isinstance(sent[0], m.AssociationRequest)
    assert sent[1] == m.EventReportResult(7, t.NOM_NOTI_MDS_CREAT)
    polls = [s for s in sent if isinstance(s, m.PollRequest)]
    assert {p.object_type for p in polls} == {
        t.NOM_MOC_VMO_METRIC_NU,
        t.NOM_MOC_VMO_METRIC_SA_RT,
        al.NOM_MOC_VMO_AL_MON,
    }
    # Numerics and alarms again a second later; the wave poll is renewed before its period
    # ends.
    host.tick(1.0)
    again = _sent_messages(host.data_to_send())
    assert [p.object_type for p in again if isinstance(p, m.PollRequest)] == [
        t.NOM_MOC_VMO_METRIC_NU,
        al.NOM_MOC_VMO_AL_MON,
    ]
    host.receive_data(encode_frame(b"\xe1\x00\x00\x02\x00\x01\x00\x00"), 7.9)  # anything: alive
    host.tick(8.0)
    later = _sent_messages(host.data_to_send())
    assert t.NOM_MOC_VMO_METRIC_SA_RT in [
        p.object_type for p in later if isinstance(p, m.PollRequest)
    ]


def test_host_retries_association_and_recovers_from_silence() -> None:
    host = IntelliVueHost("iv", association_retry_s=4.4, silence_s=10.0)
    host.tick(0.0)
    host.data_to_send()
    host.tick(4.0)
    assert host.data_to_send() == b""
    host.tick(4.5)
    assert isinstance(_sent_messages(host.data_to_send())[0], m.AssociationRequest)
    _connect(host, 5.0)
    host.tick(16.0)  # nothing heard for 11 s
    host.tick(16.1)
    assert host.state is HostState.ASSOCIATING
    assert isinstance(_sent_messages(host.data_to_send())[-1], m.AssociationRequest)


def _wave_reply(
    ticks: int | None,
    samples: list[int],
    state: int = 0,
    *,
    body: bytes | None = None,
    scale: tuple[int, int] | None = None,
) -> bytes:
    """A wave poll reply; ``body`` replaces the encoded samples, ``scale`` the raw FLOATs of
    the scale's absolute range."""
    attrs = []
    if ticks is not None:
        attrs.append(t.Ava(t.NOM_ATTR_TIME_PD_SAMP, ticks.to_bytes(4, "big")))
    lo, hi = scale or (t.encode_float(-40.96, 3), t.encode_float(40.955, 3))
    scale_value = (lo.to_bytes(4, "big") + hi.to_bytes(4, "big") + (0).to_bytes(2, "big")) + (
        16383
    ).to_bytes(2, "big")
    attrs.append(t.Ava(t.NOM_ATTR_SCALE_SPECN_I16, scale_value))
    if body is None:
        body = b"".join(s.to_bytes(2, "big") for s in samples)
    attrs.append(
        t.Ava(
            t.NOM_ATTR_SA_VAL_OBS,
            (0x0102).to_bytes(2, "big")
            + state.to_bytes(2, "big")
            + len(body).to_bytes(2, "big")
            + body,
        )
    )
    parts = m.PollReplyParts(
        3,
        1,
        t.NOM_MOC_VMO_METRIC_SA_RT,
        0,
        datetime(2026, 1, 1, tzinfo=UTC),
        [m.Observation(0x0101, tuple(attrs))],
    )
    return encode_frame(m.poll_reply(parts))


def test_wave_sample_period_is_read_from_the_monitor_never_assumed() -> None:
    host = IntelliVueHost("iv")
    _connect(host)
    assert host.receive_data(_wave_reply(None, [8192] * 4), 1.0) == []  # no period yet: nothing
    events = host.receive_data(_wave_reply(32, [8192, 8292, 0, 16383]), 1.0)  # 4 ms -> 250 Hz
    (wave,) = [e for e in events if isinstance(e, WaveformChunk)]
    assert wave.sample_rate == 250.0
    assert wave.code.refid == "MDC_ECG_ELEC_POTL_II"
    assert wave.samples.tolist() == pytest.approx([0.0, 0.5, -40.96, 40.955], abs=1e-3)
    assert wave.first_sample_time == datetime(2026, 1, 1, tzinfo=UTC).timestamp() - 4 / 250
    # The period sticks to the object: a later reply without it still decodes.
    invalid = host.receive_data(_wave_reply(None, [1, 2], state=t.STATE_INVALID), 2.0)
    (gap,) = [e for e in invalid if isinstance(e, WaveformChunk)]
    assert gap.sample_rate == 250.0
    assert gap.gap_mask.all()


def test_a_wave_of_an_odd_byte_count_is_a_frame_error_not_a_crash() -> None:
    host = IntelliVueHost("iv")
    _connect(host)
    events = host.receive_data(_wave_reply(32, [], body=b"\x20\x00\x20"), 1.0)
    assert [e.reason for e in events if isinstance(e, FrameError)] == ["malformed wave"]
    assert not [e for e in events if isinstance(e, WaveformChunk)]
    later = host.receive_data(_wave_reply(32, [8192, 8192]), 2.0)  # and the stream goes on
    assert [len(e.samples) for e in later if isinstance(e, WaveformChunk)] == [2]


def test_a_scale_beyond_float32_gives_gaps_not_infinities() -> None:
    host = IntelliVueHost("iv")
    _connect(host)
    huge = (127 << 24) | 1000  # 1000 x 10^127: a FLOAT-Type can say it, a float32 cannot
    events = host.receive_data(_wave_reply(32, [0, 16383], scale=(huge, huge + 1)), 1.0)
    (wave,) = [e for e in events if isinstance(e, WaveformChunk)]
    assert wave.gap_mask.all()


def test_numerics_and_compound_nibp() -> None:
    host = IntelliVueHost("iv")
    _connect(host)
    compound = (
        b"\x00\x03\x00\x1e"
        + m.numeric_value(0x4A05, 118, 0x0F20)
        + m.numeric_value(0x4A06, 76, 0x0F20)
        + m.numeric_value(0x4A07, 90, 0x0F20)
    )
    parts = m.PollReplyParts(
        5,
        2,
        t.NOM_MOC_VMO_METRIC_NU,
        0,
        datetime(2026, 1, 1, tzinfo=UTC),
        [
            m.Observation(1, (t.Ava(t.NOM_ATTR_NU_VAL_OBS, m.numeric_value(0x4BB8, 97, 0x0220)),)),
            m.Observation(
                2, (t.Ava(t.NOM_ATTR_NU_VAL_OBS, m.numeric_value(0x481A, 70, 0x0AA0, valid=False)),)
            ),
            m.Observation(3, (t.Ava(t.NOM_ATTR_NU_CMPD_VAL_OBS, compound),)),
            m.Observation(
                4, (t.Ava(t.NOM_ATTR_NU_VAL_OBS, m.numeric_value(0x1234, 1, 0)),)
            ),  # not ours
        ],
    )
    events = host.receive_data(encode_frame(m.poll_reply(parts)), 1.0)
    obs = [(e.code.key, e.value) for e in events if isinstance(e, Observation)]
    assert obs == [
        ("spo2", 97.0),
        ("pulse_rate", None),
        ("nibp_sys", 118.0),
        ("nibp_dia", 76.0),
        ("nibp_mean", 90.0),
    ]
    malformed = host.receive_data(encode_frame(b"\xe1\x00\x00\x02\x00\x02\x00\x40"), 1.0)
    assert [e.reason for e in malformed if isinstance(e, FrameError)] == ["malformed message"]


def test_real_lan_connect_indication(captures: Path) -> None:
    text = (captures / "philips-intellivue-lan" / "my_assoc.hexdump.txt").read_text()
    frame_bytes = bytes.fromhex("".join(line[7:54] for line in text.splitlines() if line.strip()))
    udp_payload = frame_bytes[14 + 20 + 8 :]  # Ethernet, IPv4, UDP headers
    assert frame_bytes[36:38] == (24005).to_bytes(2, "big")  # destination port
    indication = m.parse_connect_indication(udp_payload)
    assert (indication.manufacturer, indication.model) == ("Philips", "866062")
    assert (indication.mac, indication.ip) == ("00:09:fb:88:c1:bd", "192.168.247.101")
    assert len(indication.attributes) == 16
    with pytest.raises(MessageError):
        m.parse_connect_indication(udp_payload[:30])


async def test_lan_monitor_over_udp() -> None:
    reader = IntelliVueLanReader(None, bind="127.0.0.1", indication_port=0)
    read_task = spawn(reader.run(), "reader")
    sim_task: asyncio.Task[None] | None = None
    try:
        async with asyncio.timeout(10):
            await reader.listening.wait()
        monitor = IntelliVueLanSimulator(
            "127.0.0.1", 0, ("127.0.0.1", reader.indication_port), announce_s=0.2
        )
        sim_task = spawn(monitor.run(), "monitor")
        async with asyncio.timeout(10):
            await monitor.ready.wait()
        reader.monitor_port = monitor.port
        seen: set[str] = set()
        async with asyncio.timeout(10):
            while not {"spo2", "pleth", "ecg_ii", "nibp_sys"} <= seen:
                event = await reader.events.get()
                if isinstance(event, Observation) and event.value is not None:
                    seen.add(event.code.key)
                elif isinstance(event, WaveformChunk):
                    assert event.sample_rate in (500.0, 125.0)
                    seen.add(event.code.key)
        assert reader.indication is not None
        assert reader.indication.model == "MX450"
    finally:
        await cancel_and_wait([read_task, *([sim_task] if sim_task else [])])


class _BrittleHost(IntelliVueHost):
    """A session with a bug that a datagram meets once the test arms it."""

    error = RuntimeError("a session bug met a datagram")

    def __init__(self, device_id: str, device_tz: str, armed: list[bool]) -> None:
        super().__init__(device_id, device_tz)
        self._armed = armed

    def receive_datagram(self, payload: bytes, now: float) -> list[DeviceEvent]:
        if self._armed and self._armed.pop():
            raise self.error
        return super().receive_datagram(payload, now)


async def test_a_lan_session_that_raises_is_logged_and_started_afresh(
    caplog: pytest.LogCaptureFixture,
) -> None:
    monitor = IntelliVueLanSimulator("127.0.0.1", 0, None)
    sim_task = spawn(monitor.run(), "monitor")
    armed: list[bool] = []
    read_task: asyncio.Task[None] | None = None
    try:
        async with asyncio.timeout(10):
            await monitor.ready.wait()
        reader = IntelliVueLanReader(
            "127.0.0.1",
            monitor_port=monitor.port,
            bind="127.0.0.1",
            make_host=lambda device_id, tz: _BrittleHost(device_id, tz, armed),
            restart_s=0.05,
        )
        read_task = spawn(reader.run(), "reader")

        async def next_spo2() -> None:
            async with asyncio.timeout(10):
                while True:
                    event = await reader.events.get()
                    if isinstance(event, Observation) and event.code.key == "spo2":
                        return

        await next_spo2()
        armed.append(True)
        async with asyncio.timeout(10):
            while True:
                event = await reader.events.get()
                if isinstance(event, DeviceStatus) and event.state is DeviceState.DISCONNECTED:
                    break
        assert "a session bug met a datagram" in event.detail
        await next_spo2()  # associated afresh
        assert not read_task.done()
        logged = [r for r in caplog.records if r.exc_info and r.exc_info[1] is _BrittleHost.error]
        assert len(logged) == 1
    finally:
        await cancel_and_wait([sim_task, *([read_task] if read_task else [])])
