"""Contec CMS50: the real capture, round trips, byte-boundary splits and garbage."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from devices.codes import PERFUSION_INDEX, PLETH, PULSE_RATE, SPO2
from devices.model import (
    DeviceEvent,
    DeviceState,
    DeviceStatus,
    FrameError,
    Observation,
    Quality,
    WaveformChunk,
)
from devices.protocols.cms50 import (
    Cms50CommandDecoder,
    Cms50Decoder,
    Cms50LegacyDecoder,
    Command,
    LiveSample,
    encode_command,
    encode_legacy,
    encode_live,
    parse_live,
)


def _capture(captures: Path) -> bytes:
    text = (captures / "contec-cms50" / "titinho11_cms50e_raw_stream.hex.txt").read_text()
    return bytes.fromhex(text.strip())


def _observations(events: list[DeviceEvent]) -> list[tuple[str, float | None, Quality]]:
    return [(e.code.key, e.value, e.quality) for e in events if isinstance(e, Observation)]


def _samples(events: list[DeviceEvent]) -> list[float]:
    out: list[float] = []
    for e in events:
        if isinstance(e, WaveformChunk):
            assert e.code is PLETH
            assert e.sample_rate == 60.0
            out.extend(float(x) for x in e.samples)
    return out


def test_real_cms50e_stream_decodes_without_a_frame_error(captures: Path) -> None:
    data = _capture(captures)
    decoder = Cms50Decoder("cms50e")
    events = decoder.receive_data(data, now=1000.0)
    assert decoder.stats.errors == {}
    assert decoder.stats.frames == len(data) // 9  # the file ends mid-packet
    first = parse_live(data[:9])
    assert (first.pleth, first.pulse_rate, first.spo2, first.perfusion_index) == (19, 60, 99, None)
    assert _observations(events)[:3] == [
        ("spo2", 99.0, Quality.OK),
        ("pulse_rate", 60.0, Quality.OK),
        ("perfusion_index", None, Quality.INVALID),
    ]
    samples = _samples(events)
    assert len(samples) == decoder.stats.frames
    assert samples[0] == 19.0
    assert all(0 <= s <= 127 for s in samples)
    assert [e.state for e in events if isinstance(e, DeviceStatus)] == [DeviceState.CONNECTED]


def test_documented_example_packet() -> None:
    s = parse_live(bytes.fromhex("01E085B396C1E1FFFF"))
    assert (s.pulse_rate, s.spo2, s.pleth) == (65, 97, 51)


live_samples = st.builds(
    LiveSample,
    pleth=st.integers(0, 127),
    pulse_rate=st.none() | st.integers(0, 254),
    spo2=st.none() | st.integers(0, 100),
    perfusion_index=st.none() | st.integers(0, 2000).map(lambda x: x / 100),
    signal_strength=st.integers(0, 15),
    bar_graph=st.integers(0, 15),
    probe_error=st.booleans(),
    searching=st.booleans(),
    searching_too_long=st.booleans(),
    low_spo2=st.booleans(),
    pulse_beep=st.booleans(),
)


@given(live_samples)
def test_live_packet_round_trip(sample: LiveSample) -> None:
    assert parse_live(encode_live(sample)) == sample


def _stream(samples: list[LiveSample]) -> bytes:
    return b"".join(encode_live(s) for s in samples)


def _decode_in_pieces(data: bytes, cuts: list[int]) -> tuple[list[DeviceEvent], Cms50Decoder]:
    decoder = Cms50Decoder("d", numerics_every=5)
    events: list[DeviceEvent] = []
    last = 0
    for cut in [*sorted(set(cuts)), len(data)]:
        events += decoder.receive_data(data[last:cut], now=0.0)
        last = cut
    return events, decoder


def _same(a: list[float], b: list[float]) -> bool:
    return len(a) == len(b) and all(
        (math.isnan(x) and math.isnan(y)) or x == y for x, y in zip(a, b, strict=True)
    )


@settings(max_examples=50, deadline=None)
@given(st.lists(live_samples, min_size=1, max_size=12))
def test_split_at_every_byte_boundary_decodes_the_same(samples: list[LiveSample]) -> None:
    data = _stream(samples)
    whole, _ = _decode_in_pieces(data, [])
    for cut in range(1, len(data)):
        split, decoder = _decode_in_pieces(data, [cut])
        assert _observations(split) == _observations(whole)
        assert _same(_samples(split), _samples(whole))
        assert decoder.stats.error_count == 0
    one_by_one, _ = _decode_in_pieces(data, list(range(1, len(data))))
    assert _same(_samples(one_by_one), _samples(whole))


garbage = st.one_of(
    st.binary(min_size=1, max_size=20).map(lambda b: bytes(x | 0x80 for x in b)),
    st.integers(1, 8).map(lambda n: encode_live(LiveSample(5, 60, 97, None))[:n]),
    st.sampled_from([bytes([0x05, 0x81, 0x82]), bytes([0x7E])]),
)


@settings(max_examples=100, deadline=None)
@given(st.lists(st.tuples(live_samples, st.none() | garbage), min_size=1, max_size=10))
def test_garbage_is_skipped_with_reasons_and_nothing_valid_is_lost(
    items: list[tuple[LiveSample, bytes | None]],
) -> None:
    data = b"".join(encode_live(s) + (g or b"") for s, g in items)
    decoder = Cms50Decoder("d", numerics_every=1)
    events = decoder.receive_data(data, now=0.0)
    valid = [s for s, _ in items]
    assert decoder.stats.frames == len(valid)
    expected = [float("nan") if s.probe_error else float(s.pleth) for s in valid]
    assert _same(_samples(events), expected)
    errors = [e for e in events if isinstance(e, FrameError)]
    garbage_count = sum(1 for _, g in items if g)
    trailing = items[-1][1] is not None
    # Every run of garbage is reported (the last one may still be waiting for more bytes).
    assert garbage_count - int(trailing) <= len(errors) <= garbage_count
    assert all(e.reason and e.skipped > 0 for e in errors)
    assert decoder.stats.error_count == len(errors)


def test_probe_off_is_a_gap_and_a_status_change() -> None:
    stream = [
        LiveSample(40, 70, 98, 2.5),
        LiveSample(0, None, None, None, probe_error=True),
        LiveSample(41, 70, 98, 2.5),
    ]
    events = Cms50Decoder("d").receive_data(_stream(stream), now=5.0)
    states = [e.state for e in events if isinstance(e, DeviceStatus)]
    assert states == [DeviceState.CONNECTED, DeviceState.PROBE_OFF, DeviceState.CONNECTED]
    chunk = next(e for e in events if isinstance(e, WaveformChunk))
    assert chunk.gap_mask.tolist() == [False, True, False]
    assert chunk.first_sample_time == pytest.approx(5.0 - 2 / 60)
    spo2 = [(v, q) for k, v, q in _observations(events) if k == SPO2.key]
    assert spo2 == [
        (98.0, Quality.OK),
        (None, Quality.INVALID | Quality.PROBE_OFF),
        (98.0, Quality.OK),
    ]
    pi = [v for k, v, _ in _observations(events) if k == PERFUSION_INDEX.key]
    assert pi[0] == 2.5
    assert PULSE_RATE.mdc == 149530


@given(st.lists(live_samples, min_size=1, max_size=20))
def test_legacy_stream_round_trip(samples: list[LiveSample]) -> None:
    legacy = [
        LiveSample(
            s.pleth,
            s.pulse_rate if s.pulse_rate else None,
            s.spo2 if s.spo2 else None,
            None,
            signal_strength=s.signal_strength,
            bar_graph=s.bar_graph,
            probe_error=s.probe_error,
            searching=s.searching,
            searching_too_long=s.searching_too_long,
            pulse_beep=s.pulse_beep,
        )
        for s in samples
    ]
    data = b"".join(encode_legacy(s) for s in legacy)
    decoder = Cms50LegacyDecoder("legacy", numerics_every=1)
    events = decoder.receive_data(b"\x00\x01" + data, now=0.0)  # leading noise
    assert decoder.stats.errors == {"bytes outside a frame (no start byte)": 1}
    expected = [float("nan") if s.probe_error else float(s.pleth) for s in legacy]
    assert _same(_samples(events), expected)
    observed = [v for k, v, _ in _observations(events) if k == "pulse_rate"]
    first = legacy[0].pulse_rate
    assert observed[0] == (None if first is None else float(first))


def test_commands_round_trip() -> None:
    decoder = Cms50CommandDecoder()
    stream = b"\x00" + encode_command(Command.START_LIVE) + encode_command(Command.STILL_CONNECTED)
    assert decoder.receive_data(stream[:5]) == []
    assert decoder.receive_data(stream[5:]) == [Command.START_LIVE, Command.STILL_CONNECTED]
    assert decoder.stats.errors == {"garbage before command": 1}
