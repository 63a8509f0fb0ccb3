"""Release a video frame when its last packet (RTP marker bit) arrives.

aiortc's jitter buffer hands a frame to the decoder only when the *next* frame's first
packet arrives: a full frame interval (33 ms at 30 fps) of added latency. A sender sets the
marker bit on the last packet of each frame, so once every packet from the frame's first to
its marked last is present the frame is complete and can go at once. Padding-only packets
(bandwidth probes, no payload) are skipped, never taken for a frame. A missing packet holds
the frame, as in aiortc, until its retransmission (the receiver NACKs it); a sender that
never sets the marker bit gets aiortc's rule (the next frame's first packet ends the frame),
so nothing is ever later than before.

A hole whose retransmission never comes (lost again on a lossy or full path) is given up
after :data:`HOLE_WAIT_S`: the frames held behind it are dropped (they reference the lost
one), the newest goes on, and the receiver asks for a key frame (the PLI flag). aiortc waits
until the buffer overflows instead, which at a low bitrate is half a minute of frozen
picture (512 packets at 20 a second: measured 26 s on a 256 kbit/s uplink).

This is the one place that reaches into aiortc's receiver: :func:`use_marker_release`
replaces its (private) jitter buffer before any media has arrived.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from aiortc import RTCRtpReceiver
from aiortc.jitterbuffer import JitterBuffer, JitterFrame
from aiortc.rtp import RtpPacket
from aiortc.utils import uint16_add

from media.errors import ReceiverUnsupported

_RECEIVER_BUFFER = "_RTCRtpReceiver__jitter_buffer"
#: How long a hole may hold the frames after it: a NACK and its retransmission take one
#: round trip (the Koriyama-Wonju path: 40-120 ms), a second try two.
HOLE_WAIT_S = 0.3


class MarkerJitterBuffer(JitterBuffer):
    def __init__(self, capacity: int = 512, clock: Callable[[], float] = time.monotonic) -> None:
        super().__init__(capacity=capacity, is_video=True)
        self.released_on_marker = 0
        self.released_on_next_frame = 0
        #: Holes given up on, and the frames dropped with them.
        self.holes_skipped = 0
        self.frames_skipped = 0
        self._clock = clock
        self._blocked_since: float | None = None

    def add(self, packet: RtpPacket) -> tuple[bool, JitterFrame | None]:
        pli, frame = super().add(packet)
        if frame is not None or self._origin is None:
            self._blocked_since = None
            return pli, frame
        hole = self._hole()
        if hole is None:
            self._blocked_since = None
            return pli, None
        now = self._clock()
        if self._blocked_since is None:
            self._blocked_since = now
            return pli, None
        if now - self._blocked_since < HOLE_WAIT_S:
            return pli, None
        self._skip_past(hole)
        self._blocked_since = None
        return True, self._remove_frame(packet.sequence_number)

    def _hole(self) -> int | None:
        """The offset from the origin of the first missing packet that has packets after
        it (None: nothing is held by a hole)."""
        assert self._origin is not None
        first_missing: int | None = None
        for count in range(self._capacity):
            packet = self._packets[uint16_add(self._origin, count) % self._capacity]
            if packet is None:
                if first_missing is None:
                    first_missing = count
            elif first_missing is not None:
                return first_missing
        return None

    def _skip_past(self, hole: int) -> None:
        """Drop what the hole held: every packet before the newest frame's. The frames
        after a lost one reference it, so until the key frame asked for they decode only
        to a damaged picture; releasing them one per arriving packet would also add their
        whole backlog to the latency."""
        assert self._origin is not None
        newest: int | None = None
        for count in range(hole, self._capacity):
            packet = self._packets[uint16_add(self._origin, count) % self._capacity]
            if packet is not None:
                newest = packet.timestamp
        dropped: set[int] = set()
        for _ in range(self._capacity):
            packet = self._packets[self._origin % self._capacity]
            if packet is not None:
                if packet.timestamp == newest:
                    break
                dropped.add(packet.timestamp)
            self.remove(1)
        self.holes_skipped += 1
        self.frames_skipped += len(dropped)  # of which a packet had arrived

    def _drop_padding_at_head(self) -> None:
        assert self._origin is not None
        for _ in range(self._capacity):
            packet = self._packets[self._origin % self._capacity]
            if packet is None or packet.payload:
                return
            self.remove(1)

    def _remove_frame(self, sequence_number: int) -> JitterFrame | None:
        if self._origin is None:
            return None
        self._drop_padding_at_head()
        first = self._packets[self._origin % self._capacity]
        if first is not None:
            timestamp = first.timestamp
            parts: list[bytes] = []
            for count in range(self._capacity):
                packet = self._packets[uint16_add(self._origin, count) % self._capacity]
                if packet is None or packet.timestamp != timestamp:
                    break  # a hole, or the next frame: not complete by its marker
                if packet.payload:
                    parts.append(packet._data)  # type: ignore[attr-defined]
                if packet.marker:
                    self.remove(count + 1)
                    self.released_on_marker += 1
                    return JitterFrame(data=b"".join(parts), timestamp=timestamp)
        frame = super()._remove_frame(sequence_number)
        if frame is not None:
            self.released_on_next_frame += 1
        return frame


def use_marker_release(receiver: RTCRtpReceiver) -> MarkerJitterBuffer:
    """Give a video receiver the marker-releasing buffer. Call before media flows (right
    after the remote description is set). Raises :class:`~media.errors.ReceiverUnsupported`
    on an aiortc without the buffer where this code expects it."""
    if not hasattr(receiver, _RECEIVER_BUFFER):
        raise ReceiverUnsupported("this aiortc's receiver has no jitter buffer where expected")
    buffer = MarkerJitterBuffer()
    setattr(receiver, _RECEIVER_BUFFER, buffer)
    return buffer
