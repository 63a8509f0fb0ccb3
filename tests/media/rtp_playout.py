"""Reading the playout-delay extension off the wire, for tests: its id in an SDP, the delays
an RTP packet carries (its header parsed here, not by aiortc), and every RTP packet a
receiving aiortc peer takes in, decrypted, before aiortc parses it."""

from __future__ import annotations

import re
from typing import Any

from aiortc.rtp import unpack_header_extensions

from media.rtc.peer import MediaPeer
from media.rtc.playout_delay import PLAYOUT_DELAY_URI, decode_playout_delay


def extension_id(sdp: str) -> int:
    """The id an SDP gives the playout-delay extension (AssertionError: it names none)."""
    found = re.findall(r"a=extmap:(\d+) " + re.escape(PLAYOUT_DELAY_URI), sdp)
    assert found, "the extension is not in the SDP"
    return int(found[0])


def playout_delays(packet: bytes, ext_id: int) -> list[tuple[int, int]]:
    """The (min ms, max ms) playout delays an RTP packet carries under ``ext_id``."""
    if not packet[0] & 0x10:
        return []
    at = 12 + 4 * (packet[0] & 0x0F)
    profile = int.from_bytes(packet[at : at + 2], "big")
    words = int.from_bytes(packet[at + 2 : at + 4], "big")
    value = packet[at + 4 : at + 4 + 4 * words]
    return [
        decode_playout_delay(data)
        for x_id, data in unpack_header_extensions(profile, value)
        if x_id == ext_id
    ]


def capture_rtp(receiver: MediaPeer) -> list[bytes]:
    """Every RTP packet ``receiver`` takes in from now on (call after its answer is made),
    appended to the list returned as it arrives."""
    transport: Any = receiver.pc.getTransceivers()[0].receiver.transport
    handle = transport._handle_rtp_data
    packets: list[bytes] = []

    async def capture(data: bytes, arrival_time_ms: int) -> None:
        packets.append(data)
        await handle(data, arrival_time_ms)

    transport._handle_rtp_data = capture
    return packets
