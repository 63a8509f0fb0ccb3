"""Ask the viewer to render the bedside video on arrival: the RTP playout-delay extension.

``http://www.webrtc.org/experiments/rtp-hdrext/playout-delay`` carries the sender's bounds on
the receiver's playout delay: 3 bytes, a 12-bit minimum and a 12-bit maximum in 10 ms units.
With min = max = 0 a WebRTC receiver (Chromium) renders each frame as soon as it is decoded
instead of smoothing playout behind a jitter buffer it sizes itself (8-10 ms measured, with
a 12-17 ms target, on loopback): what cloud gaming and remote-control video ask for.

aiortc neither offers nor writes the extension. :func:`use_playout_delay` adds both, for one
video sender: the extension joins aiortc's table of video header extensions (one table for
every connection of the process: a receiver that does not know it ignores it, and an aiortc
receiver ignores any extension it was not built for), and the sender's header-extension map
is replaced by one that writes the delay on every packet once the other side has accepted
it. Every packet, not key frames only: a receiver takes a frame's delay from the frame's
first packet and keeps the last one it saw, so carrying it on each packet costs 4 bytes
(about 0.3 % of a full packet) and holds whatever packets are lost or retransmitted, a new
receiver joins mid-stream, or an encoder's key frame is not known at packetisation (aiortc's
map is not told which frame is a key frame).

A viewer whose path loses or delays packets needs a jitter buffer, which a WebRTC receiver
only keeps while the maximum is above 0: :meth:`PlayoutDelayExtensionsMap.set_delay` raises it
for one connection (``media.rtc.peer.MediaPeer.set_playout_delay``, on the viewer's
``playout-delay`` request through the gateway).

This is the one place that reaches into aiortc's sender and its table of extensions. The
offering side (the gateway offers to every viewer) is covered; an aiortc that *answers* only
accepts the extension once some sender of the process has called :func:`use_playout_delay`.
"""

from __future__ import annotations

from aiortc import RTCRtpSender
from aiortc import codecs as aiortc_codecs
from aiortc.rtcrtpparameters import RTCRtpHeaderExtensionParameters, RTCRtpParameters
from aiortc.rtp import (
    HeaderExtensions,
    HeaderExtensionsMap,
    pack_header_extensions,
    unpack_header_extensions,
)

from media.errors import ReceiverUnsupported

PLAYOUT_DELAY_URI = "http://www.webrtc.org/experiments/rtp-hdrext/playout-delay"
#: The extension's unit and range: 12 bits of 10 ms each (0 to 40.95 s).
UNIT_MS = 10
MAX_MS = 0xFFF * UNIT_MS
_SENDER_MAP = "_RTCRtpSender__rtp_header_extensions_map"
_SENDER_STARTED = "_RTCRtpSender__started"


def encode_playout_delay(min_ms: int, max_ms: int) -> bytes:
    """The extension's 3 bytes for these bounds (multiples of 10 ms). Raises ValueError for
    a bound outside 0..40950 ms, not a multiple of 10 ms, or min above max."""
    for value in (min_ms, max_ms):
        if not 0 <= value <= MAX_MS or value % UNIT_MS:
            raise ValueError(f"playout delay {value} ms: not a multiple of 10 ms in 0..{MAX_MS}")
    if min_ms > max_ms:
        raise ValueError(f"playout delay minimum {min_ms} ms above its maximum {max_ms} ms")
    word = (min_ms // UNIT_MS) << 12 | (max_ms // UNIT_MS)
    return word.to_bytes(3, "big")


def in_units(ms: int) -> int:
    """``ms`` rounded up to the extension's unit (10 ms) and held within 0..40950 ms: the
    bound nearest to what was asked that the extension can carry, never below it."""
    return max(0, min(MAX_MS, -(-ms // UNIT_MS) * UNIT_MS))


def decode_playout_delay(data: bytes) -> tuple[int, int]:
    """(min ms, max ms) from the extension's bytes. Raises ValueError unless 3 bytes."""
    if len(data) != 3:
        raise ValueError(f"playout delay extension of {len(data)} bytes, not 3")
    word = int.from_bytes(data, "big")
    return (word >> 12) * UNIT_MS, (word & 0xFFF) * UNIT_MS


class PlayoutDelayExtensionsMap(HeaderExtensionsMap):
    """aiortc's map of a sender's header extensions, writing the playout delay as well once
    the negotiated parameters give it an id."""

    def __init__(self, min_ms: int = 0, max_ms: int = 0) -> None:
        super().__init__()
        self._value = encode_playout_delay(min_ms, max_ms)
        #: The bounds written now (ms).
        self.min_ms, self.max_ms = min_ms, max_ms
        #: The id negotiated for the extension (None: the other side did not accept it).
        self.extension_id: int | None = None
        #: Packets written with the extension (retransmissions included).
        self.written = 0

    def set_delay(self, min_ms: int, max_ms: int) -> None:
        """Write these bounds on the packets from now on (the receiver keeps the last it saw).
        While the maximum is 0 a WebRTC receiver renders on arrival and ignores its own
        jitter-buffer target: a viewer whose link needs a buffer needs a maximum above 0.
        Raises ValueError as :func:`encode_playout_delay`."""
        self._value = encode_playout_delay(min_ms, max_ms)
        self.min_ms, self.max_ms = min_ms, max_ms

    def configure(self, parameters: RTCRtpParameters) -> None:
        super().configure(parameters)
        for extension in parameters.headerExtensions:
            if extension.uri == PLAYOUT_DELAY_URI:
                self.extension_id = extension.id

    def set(self, values: HeaderExtensions) -> tuple[int, bytes]:
        profile, packed = super().set(values)
        if self.extension_id is None:
            return profile, packed
        extensions = unpack_header_extensions(profile, packed) if packed else []
        extensions.append((self.extension_id, self._value))
        self.written += 1
        return pack_header_extensions(extensions)


def _offer_extension() -> None:
    """Put the extension in aiortc's table of video header extensions (once), with an id no
    other extension of either kind has: under BUNDLE the id space is shared."""
    table = aiortc_codecs.HEADER_EXTENSIONS
    if any(e.uri == PLAYOUT_DELAY_URI for e in table["video"]):
        return
    taken = {e.id for extensions in table.values() for e in extensions}
    free = next(k for k in range(1, 15) if k not in taken)
    table["video"].append(RTCRtpHeaderExtensionParameters(id=free, uri=PLAYOUT_DELAY_URI))


def use_playout_delay(
    sender: RTCRtpSender, min_ms: int = 0, max_ms: int = 0
) -> PlayoutDelayExtensionsMap:
    """Offer the playout-delay extension and write it (``min_ms``, ``max_ms``) on every
    packet this video sender sends. Call before the offer (or answer) is made: the sender
    must not have started. Raises :class:`~media.errors.ReceiverUnsupported` on an aiortc
    whose sender has no header-extension map where this code expects it, ValueError for
    bounds :func:`encode_playout_delay` refuses."""
    if not hasattr(sender, _SENDER_MAP) or getattr(sender, _SENDER_STARTED, True):
        raise ReceiverUnsupported(
            "this aiortc's sender has no header-extension map to extend, or it has started"
        )
    extensions = PlayoutDelayExtensionsMap(min_ms, max_ms)
    _offer_extension()
    setattr(sender, _SENDER_MAP, extensions)
    return extensions
