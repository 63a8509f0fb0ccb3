"""Opus for the stethoscope, encoded here with PyAV's libopus, and what a packet says.

aiortc's own encoder is fixed to application ``voip`` at 96 kb/s: libopus then applies a
speech high-pass (measured through encode and decode: 20 Hz -19 dB, 30 Hz -12 dB, 40 Hz
-8 dB, 60 Hz -3 dB) that takes away most of a heart sound. The stethoscope's track encodes
with the settings below instead and hands aiortc finished packets, which its sender sends
as they are (``RTCRtpSender`` packs an ``av.Packet`` without encoding it again).

Measured with the same multi-tone (20-2000 Hz) at 64 and 96 kb/s: ``audio`` and
``lowdelay`` are both flat within 0.3 dB down to 20 Hz (libopus only removes DC, below
3 Hz, outside ``voip``), and both code it as CELT fullband; ``lowdelay`` delays the sound
by 2.5 ms against 6.5 ms for ``audio``, so it is the stethoscope's default.
"""

from __future__ import annotations

import enum
import fractions
from dataclasses import dataclass

import av
import numpy as np
from numpy.typing import NDArray

from media.audio.capture import BLOCK_SAMPLES, SAMPLE_RATE

TIME_BASE = fractions.Fraction(1, SAMPLE_RATE)


@dataclass(frozen=True)
class OpusSettings:
    """What the stethoscope's encoder is told. ``application``: ``lowdelay`` or ``audio``
    (never ``voip``, see the module); ``bitrate`` in b/s (>= 64 kb/s for heart and lung
    sounds); ``vbr``: ``constrained`` keeps each second near the bitrate (a WAN link can be
    planned), ``on`` lets hard passages take more; fullband (a 20 kHz cutoff) always."""

    application: str = "lowdelay"
    bitrate: int = 96_000
    vbr: str = "constrained"

    def __post_init__(self) -> None:
        if self.application not in ("lowdelay", "audio"):
            raise ValueError(f"application {self.application!r}: lowdelay or audio")
        if self.bitrate < 64_000:
            raise ValueError(f"{self.bitrate} b/s is below the 64 kb/s a stethoscope needs")
        if self.vbr not in ("constrained", "on", "off"):
            raise ValueError(f"vbr {self.vbr!r}: constrained, on or off")


STETHOSCOPE = OpusSettings()


class OpusPacketEncoder:
    """20 ms mono blocks in, one Opus packet (bytes) each out. Not thread-safe: one thread
    at a time (the feed calls it from a worker thread, one block after the other)."""

    def __init__(self, settings: OpusSettings = STETHOSCOPE) -> None:
        self.settings = settings
        codec = av.CodecContext.create("libopus", "w")
        codec.sample_rate = SAMPLE_RATE
        codec.layout = "mono"
        codec.format = "flt"
        codec.bit_rate = settings.bitrate
        codec.time_base = TIME_BASE
        codec.options = {
            "application": settings.application,
            "frame_duration": str(1000 * BLOCK_SAMPLES // SAMPLE_RATE),
            "vbr": settings.vbr,
            # FFmpeg's libopus wrapper maps the cutoff to Opus's maximum bandwidth:
            # 20 kHz is fullband.
            "cutoff": "20000",
        }
        self.codec = codec
        self._pts = 0
        #: The encoder's delay in samples (its look-ahead), from the first packet's pts.
        self.delay: int | None = None

    def encode(self, samples: NDArray[np.float32]) -> bytes:
        """One packet for one block of ``BLOCK_SAMPLES``."""
        if samples.shape != (BLOCK_SAMPLES,):
            raise ValueError(f"a block is {BLOCK_SAMPLES} mono samples, not {samples.shape}")
        frame = av.AudioFrame.from_ndarray(
            np.ascontiguousarray(samples, dtype=np.float32).reshape(1, -1),
            format="flt",
            layout="mono",
        )
        frame.sample_rate = SAMPLE_RATE
        frame.pts = self._pts
        frame.time_base = TIME_BASE
        self._pts += BLOCK_SAMPLES
        packets = self.codec.encode(frame)
        if len(packets) != 1:  # libopus codes each 20 ms frame at once, with no queue
            raise RuntimeError(f"libopus returned {len(packets)} packets for one frame")
        (packet,) = packets
        if self.delay is None and packet.pts is not None:
            self.delay = -int(packet.pts)
        return bytes(packet)


class OpusMode(enum.StrEnum):
    SILK = "silk"
    HYBRID = "hybrid"
    CELT = "celt"


class Bandwidth(enum.StrEnum):
    NARROW = "narrowband"
    MEDIUM = "mediumband"
    WIDE = "wideband"
    SUPERWIDE = "superwideband"
    FULL = "fullband"


@dataclass(frozen=True)
class Toc:
    """What an Opus packet's first byte says (RFC 6716 section 3.1)."""

    mode: OpusMode
    bandwidth: Bandwidth
    frame_ms: float
    stereo: bool

    @classmethod
    def parse(cls, packet: bytes) -> Toc:
        """Raises ValueError for an empty packet."""
        if not packet:
            raise ValueError("an Opus packet has at least its TOC byte")
        config, stereo = packet[0] >> 3, bool(packet[0] & 0x04)
        if config < 12:
            bandwidths = (Bandwidth.NARROW, Bandwidth.MEDIUM, Bandwidth.WIDE)
            return cls(OpusMode.SILK, bandwidths[config // 4], (10, 20, 40, 60)[config % 4], stereo)
        if config < 16:
            bandwidth = Bandwidth.SUPERWIDE if config < 14 else Bandwidth.FULL
            return cls(OpusMode.HYBRID, bandwidth, (10, 20)[config % 2], stereo)
        celt = (Bandwidth.NARROW, Bandwidth.WIDE, Bandwidth.SUPERWIDE, Bandwidth.FULL)
        celt_bandwidth = celt[(config - 16) // 4]
        return cls(OpusMode.CELT, celt_bandwidth, (2.5, 5, 10, 20)[config % 4], stereo)
