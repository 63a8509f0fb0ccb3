"""Issue 11: no decoder lets an exception out of ``receive_data`` (each message is a boundary:
a fault there is a counted "decoder fault" and the stream goes on), and the serial
oximeters' smaller findings (Nonin's format-select answer, cms50-legacy's perfusion index,
Masimo's non-finite numbers)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import pytest

from devices.drivers import Decoder
from devices.model import DeviceEvent, FrameError, Observation, Quality, WaveformChunk
from devices.protocols import cms50, datex, masimo, nonin
from devices.protocols.common import DECODER_FAULT, DecoderBase

_WHEN = datetime(2026, 1, 1, tzinfo=UTC)


def _nonin_2() -> bytes:
    floats = nonin.packet_floats(72, 97)
    return b"".join(
        nonin.encode_frame(
            nonin.Format.PLETH_8,
            nonin.Frame(nonin.Status.SYNC if k == 0 else nonin.Status(0), 100, floats[k]),
        )
        for k in range(nonin.FRAMES_PER_PACKET)
    )


def _cms50() -> bytes:
    return b"".join(cms50.encode_live(cms50.LiveSample(50, 70, 97, 2.5)) for _ in range(60))


def _legacy() -> bytes:
    return b"".join(cms50.encode_legacy(cms50.LiveSample(50, 70, 97, None)) for _ in range(60))


def _datex() -> bytes:
    return datex.frame(datex.encode_phdb(datex.PhdbValues(1, {"spo2": 97.0})))


#: (name, a decoder class, its constructor's extra arguments, the method that decodes one
#: message and takes the events list as its last argument, a stream of good messages)
CODECS: list[tuple[str, type[DecoderBase], tuple[Any, ...], str, Callable[[], bytes]]] = [
    ("cms50", cms50.Cms50Decoder, (), "_live", _cms50),
    ("cms50-legacy", cms50.Cms50LegacyDecoder, (), "_frame", _legacy),
    ("nonin-2", nonin.NoninDecoder, (nonin.Format.PLETH_8,), "_frame", _nonin_2),
    (
        "nonin-8",
        nonin.NoninDecoder,
        (nonin.Format.NUMERICS,),
        "_numerics_frame",
        lambda: nonin.encode_numerics(nonin.Status(0), 72, 97) * 3,
    ),
    ("masimo", masimo.MasimoDecoder, (), "_line", lambda: masimo.encode_line(_WHEN, 97, 72, 1.5)),
    ("datex", datex.DatexDecoder, (), "_checked", _datex),
]


def _faulty(cls: type[DecoderBase], method: str) -> type[DecoderBase]:
    """``cls`` whose one-message method raises while ``armed`` (a bug met on input)."""

    def raising(self: Any, *args: Any, **kwargs: Any) -> None:
        if self.armed:
            raise ZeroDivisionError("a decoder bug")
        getattr(cls, method)(self, *args, **kwargs)

    return type(f"Faulty{cls.__name__}", (cls,), {method: raising, "armed": False})


def _data(events: list[DeviceEvent]) -> list[DeviceEvent]:
    return [e for e in events if isinstance(e, Observation | WaveformChunk)]


@pytest.mark.parametrize(("name", "cls", "args", "method", "stream"), CODECS, ids=lambda x: "")
def test_an_exception_inside_a_message_is_counted_and_the_stream_goes_on(
    name: str,
    cls: type[DecoderBase],
    args: tuple[Any, ...],
    method: str,
    stream: Callable[[], bytes],
) -> None:
    decoder: Any = _faulty(cls, method)(name, *args)
    decoder.armed = True
    events = decoder.receive_data(stream(), 0.0)  # must not raise
    faults = [e for e in events if isinstance(e, FrameError)]
    assert faults and {e.reason for e in faults} == {DECODER_FAULT}
    assert "ZeroDivisionError: a decoder bug" in faults[0].detail
    assert decoder.stats.errors == {DECODER_FAULT: len(faults)}
    decoder.armed = False
    later = decoder.receive_data(stream(), 1.0)
    assert _data(later), f"{name}: nothing decoded after the fault"
    assert not [e for e in later if isinstance(e, FrameError)]


@pytest.mark.parametrize("fmt", [nonin.Format.PLETH_8, nonin.Format.NUMERICS])
def test_the_format_select_ack_is_not_a_frame_error(fmt: nonin.Format) -> None:
    data = (
        _nonin_2()
        if fmt is nonin.Format.PLETH_8
        else nonin.encode_numerics(nonin.Status(0), 72, 97) * 2
    )
    decoder: Decoder = nonin.NoninDecoder("n", fmt)
    events = decoder.receive_data(bytes([nonin.ACK]) + data, 0.0)
    assert decoder.stats.errors == {}
    assert ("spo2", 97.0) in [(e.code.key, e.value) for e in events if isinstance(e, Observation)]
    # Only the one answer: a later stray ACK byte is garbage like any other.
    decoder.receive_data(bytes([nonin.ACK]) + data, 1.0)
    assert decoder.stats.error_count == 1


def test_a_refused_format_select_is_reported() -> None:
    decoder = nonin.NoninDecoder("n", nonin.Format.NUMERICS)
    decoder.receive_data(bytes([nonin.NAK]) + nonin.encode_numerics(nonin.Status(0), 72, 97), 0.0)
    assert decoder.stats.errors == {"format select refused (NAK)": 1}


def test_the_legacy_cms50_reports_no_perfusion_index_it_does_not_have() -> None:
    events = cms50.Cms50LegacyDecoder("legacy").receive_data(_legacy(), 0.0)
    keys = {e.code.key for e in events if isinstance(e, Observation)}
    assert keys == {"spo2", "pulse_rate"}
    current = cms50.Cms50Decoder("cms50").receive_data(_cms50(), 0.0)
    assert "perfusion_index" in {e.code.key for e in current if isinstance(e, Observation)}


@pytest.mark.parametrize("text", ["nan", "inf", "-inf", "1e999"])
def test_a_masimo_non_finite_number_is_no_value_with_a_flag(text: str) -> None:
    line = masimo.encode_line(_WHEN, 97, 72, 1.5).replace(b"PI=01.50", f"PI={text}".encode())
    assert f"PI={text}".encode() in line
    events = masimo.MasimoDecoder("m").receive_data(line, 0.0)
    (pi,) = [e for e in events if isinstance(e, Observation) and e.code.key == "perfusion_index"]
    assert pi.value is None and pi.quality & Quality.INVALID
