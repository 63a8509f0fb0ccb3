"""GE Datex-Ohmeda S/5 computer interface: records, escapes, checksums, faults."""

from __future__ import annotations

import math
import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from devices.model import DeviceEvent, FrameError, Observation, WaveformChunk
from devices.protocols.datex import (
    DatexDecoder,
    PhdbRequest,
    PhdbValues,
    WaveRequest,
    WaveType,
    encode_phdb,
    encode_waves,
    frame,
    parse_request,
    phdb_request,
    wave_request,
)

KEYS = [
    "heart_rate",
    "nibp_sys",
    "nibp_dia",
    "nibp_mean",
    "temperature",
    "spo2",
    "pulse_rate",
    "resp_rate",
]


def _obs(events: list[DeviceEvent]) -> dict[str, float | None]:
    return {e.code.key: e.value for e in events if isinstance(e, Observation)}


values = st.fixed_dictionaries(
    {
        "heart_rate": st.none() | st.integers(0, 300),
        "nibp_sys": st.none() | st.integers(0, 30000).map(lambda x: x / 100),
        "nibp_dia": st.none() | st.integers(0, 30000).map(lambda x: x / 100),
        "nibp_mean": st.none() | st.integers(0, 30000).map(lambda x: x / 100),
        "temperature": st.none() | st.integers(2500, 4500).map(lambda x: x / 100),
        "spo2": st.none() | st.integers(0, 10000).map(lambda x: x / 100),
        "pulse_rate": st.none() | st.integers(0, 300),
        "resp_rate": st.none() | st.integers(0, 150),
    }
)


@settings(max_examples=100, deadline=None)
@given(values, st.integers(0, 2**32 - 1))
def test_phdb_round_trip(vals: dict[str, float | None], t: int) -> None:
    decoder = DatexDecoder("dx")
    events = decoder.receive_data(frame(encode_phdb(PhdbValues(t, dict(vals)))), 0.0)
    assert decoder.stats.errors == {}
    assert _obs(events) == {k: (None if v is None else float(v)) for k, v in vals.items()}
    assert {e.device_time for e in events if isinstance(e, Observation)} == {float(t)}


def test_escaped_bytes_and_every_byte_boundary() -> None:
    # 126 = 0x7E and 125 = 0x7D inside the record must be escaped and restored.
    data = frame(encode_phdb(PhdbValues(0x7E7D7E7D, {"heart_rate": 126, "pulse_rate": 125})))
    assert data.count(0x7E) == 2
    for cut in range(1, len(data)):
        decoder = DatexDecoder("dx")
        events = decoder.receive_data(data[:cut], 0.0) + decoder.receive_data(data[cut:], 0.0)
        obs = _obs(events)
        assert (obs["heart_rate"], obs["pulse_rate"]) == (126.0, 125.0)
        assert decoder.stats.error_count == 0


@settings(max_examples=60, deadline=None)
@given(
    st.lists(st.integers(-32768, 32767), min_size=1, max_size=60),
    st.lists(st.integers(-32000, 32767), max_size=20),
)
def test_wave_round_trip_with_gaps(ecg: list[int], pleth: list[int]) -> None:
    waves = {WaveType.ECG1: ecg, WaveType.PLETH: pleth}
    events = DatexDecoder("dx").receive_data(frame(encode_waves(1, waves)), 0.0)
    chunks = {e.code.key: e for e in events if isinstance(e, WaveformChunk)}
    got = chunks["ecg_ii"]
    assert got.sample_rate == 300.0
    for raw, sample in zip(ecg, got.samples.tolist(), strict=True):
        if raw <= -32001:
            assert math.isnan(sample)
        else:
            # Samples are float32 in the data model: compare at its precision.
            assert sample == pytest.approx(raw / 1000, rel=1e-6)
    if pleth:
        assert chunks["pleth"].sample_rate == 100.0
        assert chunks["pleth"].samples.tolist() == pytest.approx([p / 100 for p in pleth], rel=1e-6)


def _with_bad_checksum(data: bytes) -> bytes:
    broken = bytearray(data)
    broken[-2] ^= 0x01 if broken[-2] not in (0x7E ^ 1, 0x7D ^ 1) else 0x02
    return bytes(broken)


def test_faults_are_reported_and_the_stream_goes_on() -> None:
    good = frame(encode_phdb(PhdbValues(1, {"spo2": 97.0})))
    record = bytearray(encode_phdb(PhdbValues(1, {})))
    struct.pack_into("<h", record, 16, 5000)  # first subrecord offset outside the record
    cases = [
        b"noise",  # outside a frame
        _with_bad_checksum(good),
        b"\x7e\x01\x02\x7e",  # too short
        b"\x7e" + bytes(50) + b"\x7d\x01\x7e",  # bad escape
        frame(bytes(record)),  # malformed subrecord list
    ]
    decoder = DatexDecoder("dx")
    events: list[DeviceEvent] = []
    for case in cases:
        events += decoder.receive_data(case + good, 0.0)
    reasons = [e.reason for e in events if isinstance(e, FrameError)]
    assert reasons == [
        "bytes outside a frame",
        "bad checksum",
        "frame too short",
        "bad escape sequence",
        "malformed record",
    ]
    assert sum(1 for e in events if isinstance(e, Observation) and e.code.key == "spo2") == 5


def test_requests_round_trip() -> None:
    assert parse_request(phdb_request(10)) == PhdbRequest(10)
    request = parse_request(wave_request([WaveType.ECG1, WaveType.PLETH]))
    assert request == WaveRequest((WaveType.ECG1, WaveType.PLETH), True)
    assert parse_request(wave_request([], start=False)) == WaveRequest((), False)
