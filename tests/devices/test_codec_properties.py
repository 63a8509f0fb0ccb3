"""Properties every decoder must have, checked on each protocol's own simulator stream:
bytes split anywhere decode the same, and arbitrary garbage before a clean stream never
raises and costs at most the first frame after it."""

from __future__ import annotations

import math
from collections.abc import Callable

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from benchmarks.device_decode import (
    cms50_stream,
    datex_stream,
    hl7_stream,
    intellivue_stream,
    masimo_stream,
    nonin_stream,
)
from devices.drivers import DECODERS
from devices.model import DeviceEvent, FrameError, Observation, WaveformChunk
from devices.protocols.intellivue.host import IntelliVueHost

STREAMS: dict[str, Callable[[int], list[bytes]]] = {
    "cms50": cms50_stream,
    "nonin": nonin_stream,
    "masimo": masimo_stream,
    "datex": datex_stream,
    "intellivue": intellivue_stream,
    "hl7": hl7_stream,
}
_CLEAN = {name: b"".join(make(2)) for name, make in STREAMS.items()}


def _decode(protocol: str, pieces: list[bytes]) -> tuple[list[DeviceEvent], int]:
    decoder = DECODERS[protocol](protocol)
    if isinstance(decoder, IntelliVueHost):
        decoder.start(0.0)
    events: list[DeviceEvent] = []
    for piece in pieces:
        events += decoder.receive_data(piece, 0.0)
    return events, decoder.stats.frames


def _values(events: list[DeviceEvent]) -> list[tuple[str, float | None]]:
    return [(e.code.key, e.value) for e in events if isinstance(e, Observation)]


def _samples(events: list[DeviceEvent]) -> dict[str, list[float]]:
    out: dict[str, list[float]] = {}
    for e in events:
        if isinstance(e, WaveformChunk):
            out.setdefault(e.code.key, []).extend(
                -1e9 if math.isnan(x) else float(x) for x in e.samples.tolist()
            )
    return out


@pytest.mark.parametrize("protocol", sorted(STREAMS))
@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(cuts=st.lists(st.floats(0, 1), max_size=6))
def test_any_split_decodes_the_same(protocol: str, cuts: list[float]) -> None:
    data = _CLEAN[protocol]
    whole, frames = _decode(protocol, [data])
    assert frames > 0
    positions = sorted({int(c * len(data)) for c in cuts})
    pieces = [data[a:b] for a, b in zip([0, *positions], [*positions, len(data)], strict=True)]
    split, _ = _decode(protocol, pieces)
    assert _values(split) == _values(whole)
    assert _samples(split) == _samples(whole)
    assert not [e for e in split if isinstance(e, FrameError)]


@pytest.mark.parametrize("protocol", sorted(STREAMS))
@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(garbage=st.binary(min_size=1, max_size=400))
def test_garbage_first_costs_at_most_one_frame(protocol: str, garbage: bytes) -> None:
    data = _CLEAN[protocol]
    _, clean_frames = _decode(protocol, [data])
    events, frames = _decode(protocol, [garbage, data])  # must not raise
    assert clean_frames - 1 <= frames <= clean_frames + len(garbage)
    for e in events:
        if isinstance(e, FrameError):
            assert e.reason
            assert e.skipped > 0
