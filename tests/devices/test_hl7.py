"""HL7 v2 ORU^R01 (IHE PCD-01) over MLLP: parsing, ACK/NAK, framing faults, and a monitor
gateway simulator talking to the listener over real TCP."""

from __future__ import annotations

import asyncio
import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from devices import codes
from devices.model import DeviceEvent, FrameError, Observation, WaveformChunk
from devices.protocols.hl7_pcd import Hl7Decoder, Numeric, Wave, build_oru
from devices.protocols.mllp import MllpFramer, frame
from devices.simulation.hl7_monitor import Hl7MonitorSimulator
from devices.simulation.patient import Patient, PatientParameters
from devices.transports.mllp_tcp import Hl7Listener
from runtime.tasks import cancel_and_wait, spawn
from tests.helpers import eventually

NUMERIC_CODES = [c for c in codes.ALL_CODES if c not in (codes.ECG_II, codes.PLETH)]


def _obs(events: list[DeviceEvent]) -> list[tuple[str, float | None]]:
    return [(e.code.key, e.value) for e in events if isinstance(e, Observation)]


def _acks(decoder: Hl7Decoder) -> list[str]:
    framer = MllpFramer()
    out = []
    for body in framer.receive_data(decoder.data_to_send()):
        assert isinstance(body, bytes)
        msa = next(s for s in body.decode().split("\r") if s.startswith("MSA"))
        out.append(msa.split("|")[1])
    return out


def test_round_trip_numerics_and_waves() -> None:
    message = build_oru(
        [
            Numeric(codes.SPO2, 97),
            Numeric(codes.HEART_RATE, None),
            Numeric(codes.TEMPERATURE, 36.6),
        ],
        [Wave(codes.ECG_II, 500, [0.1, -0.2, math.nan, 1.1], 1_700_000_000.5)],
        when=1_700_000_001.0,
        device_eui="00A0B0C0D0E0F001",
    )
    decoder = Hl7Decoder("gw")
    events = decoder.receive_data(frame(message), now=5.0)
    assert _obs(events) == [("spo2", 97.0), ("heart_rate", None), ("temperature", 36.6)]
    spo2 = next(e for e in events if isinstance(e, Observation))
    assert spo2.device_id == "gw@MONITOR:ICU/00A0B0C0D0E0F001"
    assert spo2.device_time == 1_700_000_001.0
    assert spo2.receive_time == 5.0
    (wave,) = [e for e in events if isinstance(e, WaveformChunk)]
    assert (wave.code, wave.sample_rate, wave.first_sample_time) == (
        codes.ECG_II,
        500,
        1_700_000_000.5,
    )
    assert wave.samples[:2].tolist() == pytest.approx([0.1, -0.2])
    assert wave.gap_mask.tolist() == [False, False, True, False]
    assert _acks(decoder) == ["AA"]


@settings(max_examples=60, deadline=None)
@given(
    st.lists(
        st.tuples(st.sampled_from(NUMERIC_CODES), st.none() | st.integers(0, 300)),
        min_size=1,
        max_size=8,
    ),
    st.data(),
)
def test_generated_messages_round_trip_and_split(
    values: list[tuple[codes.VitalCode, int | None]], data: st.DataObject
) -> None:
    message = frame(build_oru([Numeric(c, v) for c, v in values], [], when=1000.0))
    whole = Hl7Decoder("gw").receive_data(message, 0.0)
    expected = [(c.key, None if v is None or float(v) in (-1.0,) else float(v)) for c, v in values]
    assert _obs(whole) == expected
    cut = data.draw(st.integers(1, len(message) - 1))
    decoder = Hl7Decoder("gw")
    split = decoder.receive_data(message[:cut], 0.0) + decoder.receive_data(message[cut:], 0.0)
    assert _obs(split) == _obs(whole)
    assert decoder.stats.error_count == 0


def test_every_byte_boundary_of_a_real_sized_message() -> None:
    message = frame(
        build_oru([Numeric(codes.SPO2, 95)], [Wave(codes.PLETH, 125, [0.5] * 125, 10.0)], 11.0)
    )
    for cut in range(1, len(message)):
        decoder = Hl7Decoder("gw")
        events = decoder.receive_data(message[:cut], 0.0) + decoder.receive_data(message[cut:], 0.0)
        assert _obs(events) == [("spo2", 95.0)]
        assert sum(len(e.samples) for e in events if isinstance(e, WaveformChunk)) == 125


def _raw(*obx: str, kind: str = "ORU^R01") -> bytes:
    head = f"MSH|^~\\&|MON|ICU|GW|H|20260101120000+0900||{kind}|C1|P|2.6\rOBR|1\r"
    return frame(head + "\r".join(obx) + "\r")


def test_sentinels_status_x_nibp_families_and_loinc() -> None:
    message = _raw(
        "OBX|1|NM|150456^MDC_PULS_OXIM_SAT_O2^MDC|1.1.1.1|-999|%^%^UCUM|||||R",
        "OBX|2|NM|147842^MDC_ECG_HEART_RATE^MDC|1.1.1.2|-1|/min^/min^UCUM|||||R",
        "OBX|3|NM|150021^MDC_PRESS_BLD_NONINV_SYS^MDC|1.1.1.3|121|mm[Hg]^mm[Hg]^UCUM|||||R",
        "OBX|4|NM|150301^MDC_PRESS_CUFF_SYS^MDC|1.1.1.4|122|mm[Hg]^mm[Hg]^UCUM|||||R",
        "OBX|5|NM|9279-1^Respiratory rate^LN|1.1.1.5|16|/min^/min^UCUM|||||R",
        "OBX|6|NM|150344^MDC_TEMP^MDC|1.1.1.6|36.9|Cel^Cel^UCUM|||||X",
        "OBX|7|NM|999999^MDC_SOMETHING_ELSE^MDC|1.1.1.7|3|1^1^UCUM|||||R",
        "OBX|8|NM|151562^MDC_RESP_RATE^MDC|1.1.1.8|-99.9|/min^/min^UCUM|||||R",
    )
    events = Hl7Decoder("gw").receive_data(message, 0.0)
    assert _obs(events) == [
        ("spo2", None),
        ("heart_rate", None),
        ("nibp_sys", 121.0),
        ("nibp_sys", 122.0),
        ("resp_rate", 16.0),
        ("temperature", None),
        ("resp_rate", None),
    ]
    device_time = next(e for e in events if isinstance(e, Observation)).device_time
    assert device_time == 1767236400.0  # 2026-01-01 12:00 at +09:00


@pytest.mark.parametrize(
    ("message", "ack", "reason"),
    [
        (_raw(kind="ADT^A01"), "AR", "not ORU^R01"),
        (frame(b"this is not HL7 at all"), "AE", "not an HL7"),
    ],
)
def test_refused_messages_get_a_nak_and_the_stream_goes_on(
    message: bytes, ack: str, reason: str
) -> None:
    good = frame(build_oru([Numeric(codes.SPO2, 96)], [], 1.0))
    decoder = Hl7Decoder("gw")
    events = decoder.receive_data(b"junk" + message + good, 0.0)
    errors = [e for e in events if isinstance(e, FrameError)]
    assert [e.reason for e in errors] == ["bytes outside an MLLP frame", "refused HL7 message"]
    assert reason in errors[1].detail
    assert _obs(events) == [("spo2", 96.0)]
    assert _acks(decoder) == [ack, "AA"]


#: Messages python-hl7 once raised on (TypeError, AssertionError), found by mutating valid
#: messages: each ended the connection's handler.
_BROKEN = [
    # MSH-9 lost a separator: python-hl7's create_ack calls a str.
    "MSH|^~\\&|MON|ICU|GW|H20260101120000||ORU^R01|C1|P|2.6\rOBX",
    # The encoding characters cut short by a segment end: python-hl7 asserts.
    "MSH|\r~\\&|MON|ICU\rOBX|",
]


@pytest.mark.parametrize("broken", _BROKEN)
def test_messages_that_broke_the_parser_get_a_nak_and_the_stream_goes_on(broken: str) -> None:
    good = frame(build_oru([Numeric(codes.SPO2, 96)], [], 1.0))
    decoder = Hl7Decoder("gw")
    events = decoder.receive_data(frame(broken) + good, 0.0)
    assert [e.reason for e in events if isinstance(e, FrameError)] == ["refused HL7 message"]
    assert _obs(events) == [("spo2", 96.0)]
    acks = _acks(decoder)
    assert len(acks) == 2 and acks[0] in ("AE", "AR") and acks[1] == "AA"


def test_a_time_with_an_impossible_offset_is_unknown_and_the_value_kept() -> None:
    head = "MSH|^~\\&|MON|ICU|GW|H|20260101120000.000+70000||ORU^R01|C1|P|2.6\r"
    obx = "OBX|1|NM|150456^MDC_PULS_OXIM_SAT_O2^MDC|1.1.1.1|97|%^%^UCUM|||||R\r"
    decoder = Hl7Decoder("gw")
    (spo2,) = decoder.receive_data(frame(head + obx), 0.0)[1:]  # after CONNECTED
    assert isinstance(spo2, Observation)
    assert (spo2.value, spo2.device_time) == (97.0, None)
    assert _acks(decoder) == ["AA"]


def test_infinite_numerics_are_missing_values() -> None:
    message = _raw("OBX|1|NM|150456^MDC_PULS_OXIM_SAT_O2^MDC|1.1.1.1|1e999|%^%^UCUM|||||R")
    assert _obs(Hl7Decoder("gw").receive_data(message, 0.0)) == [("spo2", None)]


_VALID = build_oru(
    [Numeric(codes.SPO2, 97), Numeric(codes.HEART_RATE, 72)],
    [Wave(codes.ECG_II, 500, [0.1, -0.2, 0.3], 1_700_000_000.5)],
    when=1_700_000_001.0,
)
_ALPHABET = "|^~\\&\r0123456789.+-eEinfNAMSHOBXRU "


@settings(max_examples=300, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.integers(0, len(_VALID) - 1),
            st.sampled_from(["set", "delete", "insert"]),
            st.sampled_from(_ALPHABET),
        ),
        min_size=1,
        max_size=6,
    )
)
def test_any_mutated_message_is_answered_and_never_raises(
    edits: list[tuple[int, str, str]],
) -> None:
    text = list(_VALID)
    for index, edit, char in edits:
        index %= len(text)
        if edit == "set":
            text[index] = char
        elif edit == "delete" and len(text) > 1:
            del text[index]
        else:
            text.insert(index, char)
    decoder = Hl7Decoder("gw")
    decoder.receive_data(frame("".join(text)), 0.0)
    assert len(_acks(decoder)) == 1  # one ACK or NAK for the one message


def test_framing_faults() -> None:
    framer = MllpFramer(max_message=100)
    out = framer.receive_data(b"\x0bpartial\x0b" + b"x" * 300)
    assert [getattr(o, "reason", o) for o in out] == [
        "MLLP frame cut short by a new start",
        "MLLP frame too large",
    ]
    assert framer.receive_data(frame("ok")) == [b"ok"]


async def test_monitor_gateway_over_tcp_with_a_listener_restart() -> None:
    listener = Hl7Listener("127.0.0.1", 0)
    serving = spawn(listener.run(), "listener")
    await listener.ready.wait()
    port = listener.port
    patient = Patient(PatientParameters(heart_rate=88, spo2=95, rsa_bpm=0))
    monitor = Hl7MonitorSimulator("127.0.0.1", port, patient, period_s=0.2)
    sending = spawn(monitor.run(), "monitor")
    restarted: asyncio.Task[None] | None = None
    try:
        ecg_samples = 0
        async with asyncio.timeout(10):
            while ecg_samples < 500:
                event = await listener.events.get()
                if isinstance(event, WaveformChunk) and event.code is codes.ECG_II:
                    assert event.sample_rate == 500
                    ecg_samples += len(event.samples)
        assert monitor.acks
        assert all("MSA|AA|" in a for a in monitor.acks)

        await cancel_and_wait([serving])  # the gateway restarts
        await eventually(lambda: monitor.failures > 0)
        acked = len(monitor.acks)
        listener = Hl7Listener("127.0.0.1", port)
        restarted = spawn(listener.run(), "listener")
        async with asyncio.timeout(10):
            while True:
                event = await listener.events.get()
                if isinstance(event, Observation) and event.code is codes.SPO2:
                    assert event.value == pytest.approx(95, abs=2)
                    break
        # and the sender hears the new listener's ACK
        await eventually(lambda: len(monitor.acks) > acked)
    finally:
        await cancel_and_wait(t for t in (sending, serving, restarted) if t is not None)
