"""The last N seconds of each waveform channel, by absolute sample index. Sans-I/O.

Waveforms lost in a link's gap stay gaps on the live trace; what the gateway sent meanwhile is
kept here so a clinician can review it once the link is back. Each channel is a ring of
float32 samples addressed by the stream index the wire packets carry
(:mod:`media.rtc.wire`): sample ``i`` lives in slot ``i % capacity``, and a slot holds sample
``i`` only while ``i`` is within the newest ``capacity`` indices seen. NaN marks a sample the
history does not have (never received, or the device's own gap), so a gap stays a gap.

Packets may come in any order and may overlap: a later write of an index replaces the
earlier one; a packet older than the ring's window is dropped (what of it is too old).
Memory is bounded: ``capacity = ceil(seconds x rate)`` float32 per channel (600 s of a 500 Hz
ECG is 1.2 MB), and at most :attr:`HistorySettings.max_channels` channels.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

#: Default length of the history (s).
DEFAULT_SECONDS = 600.0


@dataclass(frozen=True)
class HistorySettings:
    """How much waveform the gateway keeps for review after an outage."""

    #: Seconds kept per channel (at the channel's sample rate).
    seconds: float = DEFAULT_SECONDS
    #: Channels kept at most (a new channel beyond this is not recorded).
    max_channels: int = 32
    #: The highest sample rate recorded (bounds one channel's memory).
    max_rate: float = 2000.0

    def __post_init__(self) -> None:
        if not (math.isfinite(self.seconds) and 0 < self.seconds <= 24 * 3600):
            raise ValueError(f"history of {self.seconds} s: give 0 < seconds <= 86400")
        if self.max_channels < 1:
            raise ValueError("max_channels must be at least 1")


@dataclass(frozen=True, eq=False)
class Segment:
    """What the history holds of a requested range: ``samples[k]`` is sample ``first + k``
    (NaN: not held). ``first`` may be later than asked (the start is older than the history)
    and ``samples`` shorter (the end is newer than anything seen); empty when none of the
    range is held."""

    first: int
    samples: NDArray[np.float32]
    rate: float


class _Ring:
    def __init__(self, capacity: int, rate: float) -> None:
        self.rate = rate
        self.capacity = capacity
        self.buffer = np.full(capacity, np.nan, dtype=np.float32)
        #: One past the newest index written (0: nothing yet).
        self.end = 0

    @property
    def start(self) -> int:
        """The oldest index the ring can hold now."""
        return max(0, self.end - self.capacity)

    def add(self, first: int, samples: NDArray[np.float32]) -> None:
        n = len(samples)
        last = first + n
        if last > self.end:
            # Moving the window forward: the slots of indices between the old end and the
            # new packet's first index were never written in this lap; clear them so an old
            # lap's sample is never read as a new index.
            clear_from = max(self.end, last - self.capacity)
            clear_to = first
            if clear_to > clear_from:
                self._write(clear_from, np.full(clear_to - clear_from, np.nan, np.float32))
            self.end = last
        # Only the part within the window is kept.
        lo = max(first, self.start)
        if lo >= last:
            return
        self._write(lo, samples[lo - first :])

    def _write(self, first: int, values: NDArray[np.float32]) -> None:
        if len(values) > self.capacity:  # only the newest capacity of them fit
            first += len(values) - self.capacity
            values = values[-self.capacity :]
        slot = first % self.capacity
        head = min(len(values), self.capacity - slot)
        self.buffer[slot : slot + head] = values[:head]
        self.buffer[: len(values) - head] = values[head:]

    def read(self, first: int, count: int) -> tuple[int, NDArray[np.float32]]:
        lo = max(first, self.start)
        hi = min(first + count, self.end)
        if hi <= lo:
            return lo, np.empty(0, np.float32)
        slots = np.arange(lo, hi) % self.capacity
        return lo, self.buffer[slots].copy()


class WaveformHistory:
    """Per channel, the last :attr:`HistorySettings.seconds` of samples. Not thread-safe:
    one owner (the gateway's event loop) adds and reads."""

    def __init__(self, settings: HistorySettings | None = None) -> None:
        self.settings = settings or HistorySettings()
        self._rings: dict[int, _Ring] = {}

    @property
    def channels(self) -> list[int]:
        return sorted(self._rings)

    def add(
        self, channel: int, first_index: int, samples: NDArray[np.float32], rate: float
    ) -> None:
        """Records ``samples`` as indices ``first_index ...`` of ``channel`` (NaN: a gap).
        Raises ValueError for a negative index or a rate that is not a positive finite
        number at most ``max_rate``; a channel whose rate changes starts again."""
        if first_index < 0:
            raise ValueError(f"first index {first_index} is negative")
        if not (math.isfinite(rate) and 0 < rate <= self.settings.max_rate):
            raise ValueError(f"sample rate {rate} outside (0, {self.settings.max_rate}]")
        ring = self._rings.get(channel)
        if ring is None or ring.rate != rate:
            if ring is None and len(self._rings) >= self.settings.max_channels:
                raise ValueError(f"more than {self.settings.max_channels} channels")
            ring = _Ring(math.ceil(self.settings.seconds * rate), rate)
            self._rings[channel] = ring
        ring.add(first_index, np.asarray(samples, dtype=np.float32))

    def segment(self, channel: int, first: int, count: int) -> Segment | None:
        """What is held of indices ``first .. first + count - 1`` of ``channel`` (see
        :class:`Segment`); None for a channel never recorded."""
        ring = self._rings.get(channel)
        if ring is None:
            return None
        if first < 0 or count < 0:
            raise ValueError(f"range {first}+{count}: give first >= 0 and count >= 0")
        start, samples = ring.read(first, count)
        return Segment(start, samples, ring.rate)
