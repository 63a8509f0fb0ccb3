"""Release a video frame when its last packet (RTP marker bit) arrives.

aiortc's jitter buffer hands a frame to the decoder only when the *next* frame's first
packet arrives: a full frame interval (33 ms at 30 fps) of added latency. A sender sets the
marker bit on the last packet of each frame, so once every packet from the frame's first to
its marked last is present the frame is complete and can go at once. Padding-only packets
(bandwidth probes, no payload) are skipped, never taken for a frame. A missing packet holds
the frame, as in aiortc, until its retransmission (the receiver NACKs it); a sender that
never sets the marker bit gets aiortc's rule (the next frame's first packet ends the frame),
so nothing is ever later than before.

This is the one place that reaches into aiortc's receiver: :func:`use_marker_release`
replaces its (private) jitter buffer before any media has arrived.
"""

from __future__ import annotations

from aiortc import RTCRtpReceiver
from aiortc.jitterbuffer import JitterBuffer, JitterFrame
from aiortc.utils import uint16_add

from media.errors import ReceiverUnsupported

_RECEIVER_BUFFER = "_RTCRtpReceiver__jitter_buffer"


class MarkerJitterBuffer(JitterBuffer):
    def __init__(self, capacity: int = 512) -> None:
        super().__init__(capacity=capacity, is_video=True)
        self.released_on_marker = 0
        self.released_on_next_frame = 0

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
