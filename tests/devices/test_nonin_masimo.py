"""Nonin formats #2, #7, #8 and Masimo ASCII: round trips, splits, garbage."""

from __future__ import annotations

import math
from datetime import UTC, datetime

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from devices.model import DeviceEvent, FrameError, Observation, Quality, WaveformChunk
from devices.protocols.masimo import MasimoDecoder, encode_line
from devices.protocols.nonin import (
    FRAMES_PER_PACKET,
    Format,
    Frame,
    NoninDecoder,
    Status,
    encode_frame,
    encode_numerics,
    packet_floats,
    parse_select,
    select_format,
)

Numerics = tuple[int | None, int | None]  # heart rate, SpO2
numerics = st.tuples(st.none() | st.integers(20, 300), st.none() | st.integers(50, 100))


def _packet(fmt: Format, hr: int | None, spo2: int | None, plethes: list[int]) -> bytes:
    floats = packet_floats(hr, spo2)
    return b"".join(
        encode_frame(fmt, Frame(Status.SYNC if k == 0 else Status(0), plethes[k], floats[k]))
        for k in range(FRAMES_PER_PACKET)
    )


def _values(events: list[DeviceEvent]) -> list[tuple[str, float | None]]:
    return [(e.code.key, e.value) for e in events if isinstance(e, Observation)]


def _samples(events: list[DeviceEvent]) -> list[float]:
    return [float(x) for e in events if isinstance(e, WaveformChunk) for x in e.samples]


def _expected(items: list[Numerics]) -> list[tuple[str, float | None]]:
    out: list[tuple[str, float | None]] = []
    for hr, spo2 in items:
        out += [
            ("pulse_rate", None if hr is None else float(hr)),
            ("spo2", None if spo2 is None else float(spo2)),
        ]
    return out


def test_documented_format_2_example() -> None:
    data = bytes.fromhex("018101008301800148CA01800161E3")
    events = NoninDecoder("n").receive_data(data, 0.0)
    assert _values(events) == [("pulse_rate", 72.0), ("spo2", 97.0)]


@pytest.mark.parametrize("fmt", [Format.PLETH_8, Format.PLETH_16])
@settings(max_examples=40, deadline=None)
@given(items=st.lists(numerics, min_size=1, max_size=4), data=st.data())
def test_frames_round_trip_and_split(
    fmt: Format, items: list[Numerics], data: st.DataObject
) -> None:
    top = 255 if fmt is Format.PLETH_8 else 65535
    plethes = [data.draw(st.lists(st.integers(0, top), min_size=25, max_size=25)) for _ in items]
    stream = b"".join(_packet(fmt, hr, s, p) for (hr, s), p in zip(items, plethes, strict=True))
    whole = NoninDecoder("n", fmt)
    events = whole.receive_data(stream, 0.0)
    assert whole.stats.errors == {}
    assert _samples(events) == [float(x) for p in plethes for x in p]
    assert _values(events) == _expected(items)
    cut = data.draw(st.integers(1, len(stream) - 1))
    split = NoninDecoder("n", fmt)
    pieces = split.receive_data(stream[:cut], 0.0) + split.receive_data(stream[cut:], 0.0)
    assert _samples(pieces) == _samples(events)
    assert _values(pieces) == _values(events)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(numerics, st.integers(0, 12)), min_size=1, max_size=4))
def test_format_2_garbage_and_bad_checksums_are_skipped(items: list[tuple[Numerics, int]]) -> None:
    stream = b""
    for (hr, spo2), junk in items:
        stream += _packet(Format.PLETH_8, hr, spo2, [9] * 25) + b"\x00" * junk
    corrupt = bytearray(_packet(Format.PLETH_8, 80, 95, [9] * 25))
    corrupt[4] ^= 0xFF  # first frame's checksum: SYNC is lost, so this packet's numerics too
    decoder = NoninDecoder("n")
    events = decoder.receive_data(bytes(corrupt) + stream, 0.0)
    assert _values(events)[-2 * len(items) :] == _expected([n for n, _ in items])
    assert decoder.stats.frames == 25 * len(items) + 24
    errors = [e for e in events if isinstance(e, FrameError)]
    assert errors
    assert sum(e.skipped for e in errors) == 5 + sum(j for _, j in items)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(numerics, st.booleans()), min_size=1, max_size=10))
def test_format_8_round_trip_with_garbage(items: list[tuple[Numerics, bool]]) -> None:
    stream = b"".join(
        encode_numerics(Status.GREEN_PERFUSION, hr, s) + (b"\x01\x02" if junk else b"")
        for (hr, s), junk in items
    )
    decoder = NoninDecoder("n", Format.NUMERICS)
    events = decoder.receive_data(stream, 0.0)
    assert decoder.stats.frames == len(items)
    assert decoder.stats.error_count == sum(1 for _, junk in items if junk)
    # The throttle passes every frame on here (once a frame is once a second).
    assert _values(events) == _expected([n for n, _ in items])


def test_sensor_off_marks_a_gap_and_the_quality() -> None:
    floats = packet_floats(70, 98)
    frames = [
        encode_frame(Format.PLETH_8, Frame(Status.SYNC, 10, floats[0])),
        encode_frame(Format.PLETH_8, Frame(Status.SENSOR_DISCONNECTED, 0, floats[1])),
        encode_frame(Format.PLETH_8, Frame(Status(0), 12, floats[2])),
    ]
    events = NoninDecoder("n").receive_data(b"".join(frames), 0.0)
    samples = _samples(events)
    assert samples[0] == 10.0
    assert math.isnan(samples[1])
    obs = [e for e in events if isinstance(e, Observation)]
    assert all(o.quality & Quality.PROBE_OFF for o in obs)


def test_select_format_command() -> None:
    assert select_format(Format.PLETH_16) == bytes.fromhex("027002020703")
    assert parse_select(select_format(Format.NUMERICS)) is Format.NUMERICS
    assert parse_select(bytes.fromhex("027002020903")) is None


def test_masimo_lines() -> None:
    when = datetime(2016, 3, 17, 19, 19, 36)
    good = encode_line(when, 98, 123, 0.55)
    probe_off = encode_line(when, None, None, None, exc=0x020)
    decoder = MasimoDecoder("m", "Asia/Seoul")
    events = decoder.receive_data(good[:10], 1.0) + decoder.receive_data(
        good[10:] + b"garbage line\r\n" + probe_off, 2.0
    )
    assert _values(events) == [
        ("spo2", 98.0),
        ("pulse_rate", 123.0),
        ("perfusion_index", 0.55),
        ("spo2", None),
        ("pulse_rate", None),
        ("perfusion_index", None),
    ]
    first = next(e for e in events if isinstance(e, Observation))
    expected = datetime(2016, 3, 17, 10, 19, 36, tzinfo=UTC).timestamp()  # KST is UTC+9
    assert first.device_time == expected
    assert first.receive_time == 2.0
    assert decoder.stats.errors == {"unreadable line": 1}
    assert decoder.stats.frames == 2
    last = [e for e in events if isinstance(e, Observation)][-1]
    assert last.quality == Quality.PROBE_OFF | Quality.INVALID
    (too_long,) = decoder.receive_data(b"x" * 600, 3.0)
    assert isinstance(too_long, FrameError)
    assert too_long.reason == "line too long"
