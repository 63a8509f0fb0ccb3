"""The waveform wire format and the reordering receiver."""

from __future__ import annotations

import random

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from media.rtc.reorder import Reorderer
from media.rtc.wire import HEADER, HEADER_SIZE, MAX_INDEX, WireError, WirePacket, decode, encode

samples = st.lists(
    st.none() | st.floats(-50, 50, allow_nan=False, width=32), min_size=1, max_size=600
)


@settings(max_examples=200)
@given(
    samples,
    st.integers(0, 2**32 - 1),
    st.sampled_from([60.0, 125.0, 250.0, 300.0, 500.0]),
    st.integers(0, MAX_INDEX),
)
def test_round_trip(values: list[float | None], seq: int, rate: float, index: int) -> None:
    x = np.array([np.nan if v is None else v for v in values], dtype=np.float32)
    packet = WirePacket(7, seq, rate, 1_795_000_000.123456, x, index)
    back = decode(encode(packet))
    assert (back.channel, back.sequence, back.sample_rate) == (7, seq, rate)
    assert back.first_time == packet.first_time
    assert back.first_index == index
    assert np.array_equal(np.isnan(back.samples), np.isnan(x))  # gaps stay gaps
    finite = ~np.isnan(x)
    peak = float(np.max(np.abs(x[finite]))) if finite.any() else 0.0
    assert np.allclose(back.samples[finite], x[finite], atol=peak / 32767 + 1e-6)


def test_size_is_compact() -> None:
    chunk = WirePacket(1, 1, 500.0, 0.0, np.zeros(50, dtype=np.float32), 123_456)
    assert HEADER_SIZE == 36
    assert len(encode(chunk)) == HEADER_SIZE + 100  # 100 ms of 500 Hz ECG


def test_the_first_index_sits_after_the_scale() -> None:
    data = encode(WirePacket(3, 9, 60.0, 12.5, np.ones(2, np.float32), 2**40 + 5))
    assert data[0] == 2  # version
    assert int.from_bytes(data[28:36], "little") == 2**40 + 5
    assert HEADER.unpack_from(data)[3] == 3  # the channel id


def test_a_version_1_packet_is_refused_with_its_version() -> None:
    # What a gateway before the sample index sent: a 28-byte header, then the samples.
    old = bytes([1, 0, 2, 0]) + (150452).to_bytes(4, "little") + bytes(20) + bytes(4)
    with pytest.raises(WireError, match="version 1; this side speaks 2"):
        decode(old)


def test_an_index_beyond_what_a_browser_reads_exactly_is_refused() -> None:
    with pytest.raises(WireError, match="first index"):
        encode(WirePacket(1, 0, 60.0, 0.0, np.ones(1, np.float32), MAX_INDEX + 1))
    good = bytearray(encode(WirePacket(1, 0, 60.0, 0.0, np.ones(1, np.float32), 0)))
    good[28:36] = (MAX_INDEX + 1).to_bytes(8, "little")
    with pytest.raises(WireError, match="first index"):
        decode(bytes(good))


@pytest.mark.parametrize(
    ("mutate", "reason"),
    [
        (lambda b: b[:10], "shorter"),
        (lambda b: bytes([3]) + b[1:], "version 3"),
        (lambda b: bytes([1]) + b[1:], "version 1"),
        (lambda b: b + b"\x00", "implies"),
        (lambda b: b[:2] + b"\x00\x00" + b[4:], "sample count"),
    ],
)
def test_malformed_packets_are_refused(mutate: object, reason: str) -> None:
    good = encode(WirePacket(150452, 1, 125.0, 0.0, np.ones(10, dtype=np.float32)))
    with pytest.raises(WireError, match=reason):
        decode(mutate(good))  # type: ignore[operator]


def _stream(n: int, per: int = 25, rate: float = 250.0) -> list[WirePacket]:
    return [
        WirePacket(
            1, k, rate, 1000.0 + k * per / rate, np.full(per, float(k), np.float32), 7 + k * per
        )
        for k in range(n)
    ]


def test_reorders_and_fills_lost_packets_with_gaps() -> None:
    packets = _stream(40)
    lost = {7, 20, 21}
    arriving = [p for p in packets if p.sequence not in lost]
    random.Random(3).shuffle(arriving[5:15])  # local reordering
    r = Reorderer(horizon_s=2.0, reorder_s=0.05)
    out: list[WirePacket] = []
    now = 1000.0
    for p in arriving:
        now += 0.1
        r.push(p, now)
        out += r.pop(now)
    out += r.pop(now + 1.0)
    times = [p.first_time for p in out]
    assert times == sorted(times)
    # Every index once, in order: the gaps are exactly the lost packets' samples.
    indices = np.concatenate([p.first_index + np.arange(len(p.samples)) for p in out])
    assert (indices == 7 + np.arange(40 * 25)).all()
    trace = np.concatenate([p.samples for p in out])
    assert len(trace) == 40 * 25  # every sample slot accounted for
    nan_runs = np.isnan(trace).reshape(40, 25).all(axis=1)
    assert set(np.flatnonzero(nan_runs)) == lost
    assert r.stats.gaps == 2
    assert r.stats.gap_samples == 3 * 25


def test_stale_and_duplicate_packets_are_dropped() -> None:
    packets = _stream(10)
    r = Reorderer(horizon_s=1.0, reorder_s=0.05)
    r.push(packets[0], now=1000.2)
    assert [p.sequence for p in r.pop(1000.2)] == [0]
    r.push(packets[0], now=1000.3)  # again
    r.push(packets[1], now=1005.0)  # ended at 1000.2: more than 1 s ago
    assert r.pop(1005.0) == []
    assert (r.stats.duplicates, r.stats.stale) == (1, 1)


def test_sequence_numbers_wrap() -> None:
    r = Reorderer(reorder_s=0.0)
    seqs = [2**32 - 2, 2**32 - 1, 0, 1]
    for k, s in enumerate(seqs):
        r.push(WirePacket(1, s, 100.0, 10.0 + k * 0.1, np.ones(10, np.float32)), now=10.5)
    assert [p.sequence for p in r.pop(10.5)] == seqs


def test_a_gap_is_the_index_hole_whatever_the_times_say() -> None:
    """Times jitter (version 1 placed by them and shifted gaps in); indices do not."""
    r = Reorderer(reorder_s=0.0)
    r.push(WirePacket(1, 0, 60.0, 100.000, np.ones(3, np.float32), 60), now=100.1)
    # Its time says 1 sample late, its index says 5 samples lost.
    r.push(WirePacket(1, 2, 60.0, 100.067, np.ones(3, np.float32), 68), now=100.2)
    out = r.pop(100.2)
    assert [(p.first_index, len(p.samples)) for p in out] == [(60, 3), (63, 5), (68, 3)]
    assert np.isnan(out[1].samples).all()
