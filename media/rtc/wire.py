"""The binary wire format of waveform chunks on the unordered data channel. Sans-I/O.

Version 2, little-endian::

    0   u8   version (2)
    1   u8   flags: bit 0 = a gap bitmap follows the samples
    2   u16  sample count n (1..8192)
    4   u32  channel: the id the gateway gave this (device, signal); its ``channel`` event
             (media.rtc.events.ChannelInfo) names the device and the MDC code
    8   u32  sequence number, per channel, wrapping
    12  f32  sample rate (Hz)
    16  f64  time of the first sample (s since the Unix epoch, on the channel's sample
             clock: index / rate + a drift-tracked offset, never a read's arrival time)
    24  f32  scale: the physical value of one count
    28  u64  index of the first sample in the channel's stream (the device's own sample
             counter, or the gateway's count; a silence the gateway saw advances it too)
    36  i16  n samples (value = count x scale)
    ..  u8   ceil(n / 8) gap bits, sample k in byte k // 8, bit k % 8 (1 = no value)

A receiver places samples by index: two packets whose indices follow on are continuous
whatever their arrival, and a hole in the indices is exactly the samples lost. Gaps travel as
bits, never as zeros. Counts are scaled per chunk so that the largest magnitude uses the full
16 bits (about 0.003 % of full scale per count).

Version 1 (a 28-byte header without the index, the channel being the MDC code) is refused
with its version named: its times jitter with each serial read, and a trace drawn from them
breaks.
"""

from __future__ import annotations

import math
import struct
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

# Re-exported: callers of this format catch its error from here.
from media.errors import WireError as WireError

VERSION = 2
HEADER = struct.Struct("<BBHIIfdfQ")
HEADER_SIZE = HEADER.size  # 36
MAX_SAMPLES = 8192
#: Indices stay below 2**53, so that a browser reads them exactly (a JavaScript number).
MAX_INDEX = 2**53 - 1
_FLAG_GAPS = 0x01


@dataclass(frozen=True, eq=False)
class WirePacket:
    #: The gateway's id of the (device, signal).
    channel: int
    sequence: int
    sample_rate: float
    first_time: float
    #: float32 samples; NaN where the device had no value.
    samples: NDArray[np.float32]
    #: The stream index of the first sample (0 <= first_index <= MAX_INDEX).
    first_index: int = 0

    @property
    def end_time(self) -> float:
        return self.first_time + len(self.samples) / self.sample_rate


def encode(packet: WirePacket) -> bytes:
    samples = np.asarray(packet.samples, dtype=np.float64)
    n = len(samples)
    if not 1 <= n <= MAX_SAMPLES:
        raise WireError(f"{n} samples; a packet carries 1 to {MAX_SAMPLES}")
    gaps = np.isnan(samples)
    finite = np.where(gaps, 0.0, samples)
    peak = float(np.max(np.abs(finite))) if n else 0.0
    scale = peak / 32767.0 if peak > 0 else 1.0
    counts = np.clip(np.round(finite / scale), -32767, 32767).astype("<i2")
    if not 0 <= packet.first_index <= MAX_INDEX:
        raise WireError(f"first index {packet.first_index} outside 0..{MAX_INDEX}")
    flags = _FLAG_GAPS if gaps.any() else 0
    out = HEADER.pack(
        VERSION,
        flags,
        n,
        packet.channel,
        packet.sequence & 0xFFFFFFFF,
        packet.sample_rate,
        packet.first_time,
        scale,
        packet.first_index,
    )
    out += counts.tobytes()
    if flags & _FLAG_GAPS:
        out += np.packbits(gaps, bitorder="little").tobytes()
    return out


def decode(data: bytes) -> WirePacket:
    """Raises :class:`WireError` for anything but a well-formed version-2 packet."""
    if len(data) >= 1 and data[0] != VERSION:
        raise WireError(f"wire format version {data[0]}; this side speaks {VERSION}")
    if len(data) < HEADER_SIZE:
        raise WireError(f"{len(data)} bytes is shorter than the {HEADER_SIZE}-byte header")
    _, flags, n, channel, sequence, rate, first, scale, index = HEADER.unpack_from(data)
    if not 1 <= n <= MAX_SAMPLES:
        raise WireError(f"sample count {n} outside 1..{MAX_SAMPLES}")
    gap_bytes = (n + 7) // 8 if flags & _FLAG_GAPS else 0
    expected = HEADER_SIZE + 2 * n + gap_bytes
    if len(data) != expected:
        raise WireError(f"{len(data)} bytes, but the header implies {expected}")
    if not (math.isfinite(rate) and rate > 0 and math.isfinite(first) and math.isfinite(scale)):
        raise WireError("sample rate, time or scale is not a finite number")
    if index > MAX_INDEX:
        raise WireError(f"first index {index} beyond {MAX_INDEX}")
    counts = np.frombuffer(data, dtype="<i2", count=n, offset=HEADER_SIZE)
    samples = (counts * scale).astype(np.float32)
    if gap_bytes:
        bits = np.frombuffer(data, dtype=np.uint8, count=gap_bytes, offset=HEADER_SIZE + 2 * n)
        samples[np.unpackbits(bits, count=n, bitorder="little").astype(bool)] = np.nan
    return WirePacket(channel, sequence, rate, first, samples, index)
