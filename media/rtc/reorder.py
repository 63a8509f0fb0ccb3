"""The receiving end of the unordered, no-retransmit waveform channel. Sans-I/O.

Packets may arrive late, twice, out of order or not at all. Per channel, :class:`Reorderer`
releases packets in sequence order; it waits up to ``reorder_s`` for a missing one, then
releases a gap in its place: NaN samples (never zeros) for exactly the sample indices
between the last packet released and the next one (wire format version 2). Packets
whose data ended more than ``horizon_s`` ago are dropped as stale: a late sample is worse
than a missing one on a live trace. Memory is bounded by ``max_pending`` packets a channel.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from media.rtc.wire import WirePacket

_HALF = 1 << 31
MAX_GAP_SAMPLES = 8192


def _ahead(seq: int, reference: int) -> int:
    """Signed distance from ``reference`` to ``seq`` on the wrapping 32-bit counter."""
    d = (seq - reference) & 0xFFFFFFFF
    return d - (1 << 32) if d >= _HALF else d


@dataclass
class ReorderStats:
    released: int = 0
    stale: int = 0
    duplicates: int = 0
    gaps: int = 0
    gap_samples: int = 0
    overflow: int = 0


@dataclass
class _Channel:
    next_seq: int | None = None
    next_index: int | None = None
    pending: dict[int, tuple[WirePacket, float]] = field(default_factory=dict)


class Reorderer:
    def __init__(self, horizon_s: float = 2.0, reorder_s: float = 0.1, max_pending: int = 64):
        self.horizon_s = horizon_s
        self.reorder_s = reorder_s
        self.max_pending = max_pending
        self.stats = ReorderStats()
        self._channels: dict[int, _Channel] = {}

    def push(self, packet: WirePacket, now: float) -> None:
        """A packet arrived at ``now`` (seconds, the same clock as the packets' times)."""
        ch = self._channels.setdefault(packet.channel, _Channel())
        if packet.end_time < now - self.horizon_s:
            self.stats.stale += 1
            return
        if ch.next_seq is not None and _ahead(packet.sequence, ch.next_seq) < 0:
            self.stats.duplicates += 1  # already released, or given up as a gap
            return
        if packet.sequence in ch.pending:
            self.stats.duplicates += 1
            return
        if len(ch.pending) >= self.max_pending:
            oldest = min(ch.pending, key=lambda s: _ahead(s, packet.sequence))
            del ch.pending[oldest]
            self.stats.overflow += 1
        ch.pending[packet.sequence] = (packet, now)

    def pop(self, now: float) -> list[WirePacket]:
        """Packets ready at ``now``, in order per channel, gaps included."""
        out: list[WirePacket] = []
        for channel, ch in self._channels.items():
            while ch.pending:
                if ch.next_seq is None:
                    first = min(ch.pending, key=lambda s: _ahead(s, next(iter(ch.pending))))
                    ch.next_seq = first
                if ch.next_seq in ch.pending:
                    packet, _ = ch.pending.pop(ch.next_seq)
                    out.append(self._release(ch, packet))
                    continue
                earliest = min(ch.pending, key=lambda s: _ahead(s, ch.next_seq or 0))
                waited = now - min(arrival for _, arrival in ch.pending.values())
                if waited < self.reorder_s:
                    break  # the missing packet may still come
                following, _ = ch.pending[earliest]
                gap = self._gap(channel, ch, following)
                if gap is not None:
                    out.append(gap)
                ch.next_seq = earliest
        return out

    def _release(self, ch: _Channel, packet: WirePacket) -> WirePacket:
        ch.next_seq = (packet.sequence + 1) & 0xFFFFFFFF
        ch.next_index = packet.first_index + len(packet.samples)
        self.stats.released += 1
        return packet

    def _gap(self, channel: int, ch: _Channel, following: WirePacket) -> WirePacket | None:
        self.stats.gaps += 1
        if ch.next_index is None:
            return None  # nothing before it: there is no trace to break
        missing = following.first_index - ch.next_index
        if missing <= 0:
            return None
        self.stats.gap_samples += missing
        # A longer gap is shortened to its last MAX_GAP_SAMPLES: what lies before them is
        # older than any trace shows, and the indices still say where each sample goes.
        shown = min(missing, MAX_GAP_SAMPLES)
        return WirePacket(
            channel,
            (following.sequence - 1) & 0xFFFFFFFF,
            following.sample_rate,
            following.first_time - shown / following.sample_rate,
            np.full(shown, np.nan, dtype=np.float32),
            following.first_index - shown,
        )
