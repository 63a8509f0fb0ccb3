"""The stethoscope's Opus encoder: its settings as its packets show them (CELT, fullband,
20 ms, mono, ~96 kb/s, the 2.5 ms look-ahead of application ``lowdelay``), and what they are
for: a 25 Hz heart-sound component passes, where aiortc's own ``voip`` encoder loses most
of it."""

from __future__ import annotations

import fractions

import av
import numpy as np
import pytest
from aiortc.codecs.opus import OpusEncoder
from numpy.typing import NDArray

from media.audio.capture import BLOCK_SAMPLES
from media.audio.opus import Bandwidth, OpusMode, OpusPacketEncoder, OpusSettings, Toc
from tests.media.audio_signals import FS


def _tones(seconds: float, *hz: float) -> NDArray[np.float32]:
    n = np.arange(round(seconds * FS))
    out = np.zeros(len(n))
    for f in hz:
        out += 0.1 * np.sin(2 * np.pi * f * n / FS)
    return out.astype(np.float32)


def _decode(packets: list[bytes]) -> NDArray[np.float64]:
    decoder = av.CodecContext.create("libopus", "r")
    out = []
    for payload in packets:
        for frame in decoder.decode(av.Packet(payload)):
            data = np.asarray(frame.to_ndarray(), dtype=np.float64)
            out.append(data.reshape(-1, len(frame.layout.channels)).mean(axis=1) / 32768)
    return np.concatenate(out)


def _gain_db(sent: NDArray[np.floating], received: NDArray[np.floating], hz: float) -> float:
    """Level of ``hz`` received against sent, over the steady middle (codec delay < 20 ms)."""
    middle = slice(FS // 2, len(sent) - FS // 2)
    sent, received = sent[middle], received[middle]

    def level(x: NDArray[np.floating]) -> float:
        n = np.arange(len(x))
        return float(np.abs(np.sum(x * np.exp(-2j * np.pi * hz * n / FS))))

    return float(20 * np.log10(level(received) / level(sent)))


def test_packets_are_celt_fullband_20_ms_mono_at_the_bitrate() -> None:
    encoder = OpusPacketEncoder()
    signal = _tones(2.0, 25, 60, 150, 1000, 8000)
    packets = [
        encoder.encode(signal[k : k + BLOCK_SAMPLES]) for k in range(0, len(signal), BLOCK_SAMPLES)
    ]
    assert len(packets) == 100  # one packet per 20 ms block, nothing held back
    tocs = {Toc.parse(p) for p in packets}
    assert tocs == {Toc(OpusMode.CELT, Bandwidth.FULL, 20, stereo=False)}
    bitrate = np.mean([len(p) for p in packets[10:]]) * 8 * 50
    assert 80_000 < bitrate < 110_000  # constrained VBR around 96 kb/s
    # libopus's look-ahead says which application it runs: 120 samples is "lowdelay"
    # ("audio" and "voip" look 312 ahead).
    assert encoder.delay == 120
    assert encoder.codec.bit_rate == 96_000


def test_a_25_hz_heart_sound_component_passes_where_the_voip_encoder_loses_it() -> None:
    signal = _tones(3.0, 25, 1000)
    blocks = [signal[k : k + BLOCK_SAMPLES] for k in range(0, len(signal), BLOCK_SAMPLES)]
    ours = OpusPacketEncoder()
    stethoscope = _decode([ours.encode(b) for b in blocks])

    voip = OpusEncoder()  # aiortc's: application voip, 96 kb/s
    packets: list[bytes] = []
    for k, block in enumerate(blocks):
        frame = av.AudioFrame.from_ndarray(
            (block * 32767).astype(np.int16).reshape(1, -1), format="s16", layout="mono"
        )
        frame.sample_rate, frame.pts = FS, k * BLOCK_SAMPLES
        frame.time_base = fractions.Fraction(1, FS)
        packets += voip.encode(frame)[0]
    voice = _decode(packets)

    assert abs(_gain_db(signal, stethoscope, 25)) < 1.0
    assert abs(_gain_db(signal, stethoscope, 1000)) < 1.0
    # aiortc upmixes mono at -3 dB: what matters is 25 Hz against 1 kHz (the high-pass).
    assert _gain_db(signal, voice, 25) - _gain_db(signal, voice, 1000) < -6.0


def test_settings_refuse_what_would_filter_or_starve_heart_sounds() -> None:
    with pytest.raises(ValueError, match="lowdelay or audio"):
        OpusSettings(application="voip")
    with pytest.raises(ValueError, match="64 kb/s"):
        OpusSettings(bitrate=32_000)
    with pytest.raises(ValueError, match="960 mono samples"):
        OpusPacketEncoder().encode(np.zeros(480, np.float32))


@pytest.mark.parametrize(
    ("toc", "expected"),
    [
        (0x00, Toc(OpusMode.SILK, Bandwidth.NARROW, 10, False)),
        (0x1C, Toc(OpusMode.SILK, Bandwidth.NARROW, 60, True)),  # config 3, stereo
        (0x48, Toc(OpusMode.SILK, Bandwidth.WIDE, 20, False)),  # config 9
        (0x78, Toc(OpusMode.HYBRID, Bandwidth.FULL, 20, False)),  # config 15
        (0xFC, Toc(OpusMode.CELT, Bandwidth.FULL, 20, True)),  # config 31, stereo
        (0x80, Toc(OpusMode.CELT, Bandwidth.NARROW, 2.5, False)),  # config 16
    ],
)
def test_toc_byte(toc: int, expected: Toc) -> None:
    assert Toc.parse(bytes([toc, 0])) == expected


def test_an_empty_packet_has_no_toc() -> None:
    with pytest.raises(ValueError, match="TOC"):
        Toc.parse(b"")
