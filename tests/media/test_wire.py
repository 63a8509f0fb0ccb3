"""The waveform wire format and the reordering receiver."""

from __future__ import annotations

import random

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from media.rtc.reorder import Reorderer
from media.rtc.wire import HEADER_SIZE, WireError, WirePacket, decode, encode

samples = st.lists(
    st.none() | st.floats(-50, 50, allow_nan=False, width=32), min_size=1, max_size=600
)


@settings(max_examples=200)
@given(samples, st.integers(0, 2**32 - 1), st.sampled_from([125.0, 250.0, 300.0, 500.0]))
def test_round_trip(values: list[float | None], seq: int, rate: float) -> None:
    x = np.array([np.nan if v is None else v for v in values], dtype=np.float32)
    packet = WirePacket(131330, seq, rate, 1_795_000_000.123456, x)
    back = decode(encode(packet))
    assert (back.channel, back.sequence, back.sample_rate) == (131330, seq, rate)
    assert back.first_time == packet.first_time
    assert np.array_equal(np.isnan(back.samples), np.isnan(x))  # gaps stay gaps
    finite = ~np.isnan(x)
    peak = float(np.max(np.abs(x[finite]))) if finite.any() else 0.0
    assert np.allclose(back.samples[finite], x[finite], atol=peak / 32767 + 1e-6)


def test_size_is_compact() -> None:
    chunk = WirePacket(131330, 1, 500.0, 0.0, np.zeros(50, dtype=np.float32))
    assert len(encode(chunk)) == HEADER_SIZE + 100  # 100 ms of 500 Hz ECG


@pytest.mark.parametrize(
    ("mutate", "reason"),
    [
        (lambda b: b[:10], "shorter"),
        (lambda b: bytes([2]) + b[1:], "version"),
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
        WirePacket(131330, k, rate, 1000.0 + k * per / rate, np.full(per, float(k), np.float32))
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
