"""The playout-delay header extension: its 3 bytes, and on the wire between two real aiortc
peers (the sender's offer names it, the answer accepts it, and every video packet that
arrives carries min = max = 0), for video encoded per connection and for the one encode
shared by every viewer."""

from __future__ import annotations

import asyncio
import contextlib
import re
from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiortc import MediaStreamTrack, RTCRtpSender
from aiortc.rtp import HeaderExtensions, unpack_header_extensions

from media.errors import ReceiverUnsupported
from media.rtc.peer import MediaPeer
from media.rtc.playout_delay import (
    PLAYOUT_DELAY_URI,
    PlayoutDelayExtensionsMap,
    decode_playout_delay,
    encode_playout_delay,
    use_playout_delay,
)
from media.rtc.shared_encoder import SharedFrames, bind_senders
from media.rtc.tracks import PipelineVideoTrack
from media.video.capture import CaptureThread, LatestFrame, SyntheticSource
from media.video.processing import FrameProcessor, ProcessingSettings
from runtime.tasks import cancel_and_wait, spawn


def test_the_three_bytes_round_trip() -> None:
    assert encode_playout_delay(0, 0) == b"\x00\x00\x00"
    # The draft's example layout: min 12 bits, then max 12 bits, in 10 ms units.
    assert encode_playout_delay(100, 40950) == bytes([0x00, 0xAF, 0xFF])
    for bounds in ((0, 0), (0, 10), (20, 1000), (40950, 40950)):
        assert decode_playout_delay(encode_playout_delay(*bounds)) == bounds


@pytest.mark.parametrize("bounds", [(-10, 0), (0, 40960), (5, 10), (20, 10)])
def test_bounds_the_extension_cannot_carry_are_refused(bounds: tuple[int, int]) -> None:
    with pytest.raises(ValueError, match="playout delay"):
        encode_playout_delay(*bounds)


def test_only_three_bytes_decode() -> None:
    for data in (b"", b"\x00\x00", b"\x00\x00\x00\x00"):
        with pytest.raises(ValueError, match="not 3"):
            decode_playout_delay(data)


def test_nothing_is_written_until_the_extension_is_negotiated() -> None:
    extensions = PlayoutDelayExtensionsMap()
    values = HeaderExtensions(abs_send_time=1234)
    assert extensions.set(values) == (0, b"")  # aiortc's own ids are not configured either
    assert extensions.written == 0


def test_the_bounds_written_can_change() -> None:
    extensions = PlayoutDelayExtensionsMap()
    extensions.extension_id = 4  # as configure() sets it from the negotiated parameters
    profile, packed = extensions.set(HeaderExtensions())
    assert unpack_header_extensions(profile, packed) == [(4, b"\x00\x00\x00")]
    extensions.set_delay(0, 100)
    profile, packed = extensions.set(HeaderExtensions())
    assert [(i, decode_playout_delay(v)) for i, v in unpack_header_extensions(profile, packed)] == [
        (4, (0, 100))
    ]
    with pytest.raises(ValueError, match="playout delay"):
        extensions.set_delay(100, 0)
    assert extensions.written == 2


def test_a_sender_not_built_as_this_code_expects_is_refused() -> None:
    sender: Any = object.__new__(RTCRtpSender)  # no header-extension map: not this aiortc's
    with pytest.raises(ReceiverUnsupported):
        use_playout_delay(sender)


def _extension_id(sdp: str) -> int:
    found = re.findall(r"a=extmap:(\d+) " + re.escape(PLAYOUT_DELAY_URI), sdp)
    assert found, "the extension is not in the SDP"
    return int(found[0])


def _playout_delays(packet: bytes, extension_id: int) -> list[tuple[int, int]]:
    """The playout delays an RTP packet carries (its header parsed here, not by aiortc)."""
    if not packet[0] & 0x10:
        return []
    at = 12 + 4 * (packet[0] & 0x0F)
    profile = int.from_bytes(packet[at : at + 2], "big")
    words = int.from_bytes(packet[at + 2 : at + 4], "big")
    value = packet[at + 4 : at + 4 + 4 * words]
    return [
        decode_playout_delay(data)
        for x_id, data in unpack_header_extensions(profile, value)
        if x_id == extension_id
    ]


@contextlib.asynccontextmanager
async def _video_track(kind: str) -> AsyncIterator[MediaStreamTrack]:
    """A stamped synthetic camera as the gateway sends it: encoded per connection by aiortc
    (``pipeline``), or once for every viewer and only packetised by aiortc (``shared``)."""
    mailbox = LatestFrame(asyncio.get_running_loop())
    capture = CaptureThread(SyntheticSource(320, 240, 30.0), mailbox)
    processor = FrameProcessor(ProcessingSettings(320, 240))
    capture.start()
    tasks: list[asyncio.Task[None]] = []
    try:
        if kind == "pipeline":
            yield PipelineVideoTrack(mailbox, processor)
        else:
            shared = SharedFrames(mailbox, processor, name="test")
            tasks.append(spawn(shared.run(), "shared-frames"))
            yield shared.track()
    finally:
        await cancel_and_wait(tasks)
        await capture.stop()
        processor.close()


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["pipeline", "shared"])
async def test_every_video_packet_carries_min_and_max_zero(kind: str) -> None:
    async with _video_track(kind) as track:
        sender = MediaPeer([], video=track)
        receiver = MediaPeer([], receive_video=True)
        try:
            await _carries_the_extension(sender, receiver)
        finally:
            await sender.close()
            await receiver.close()


async def _carries_the_extension(sender: MediaPeer, receiver: MediaPeer) -> None:
    offer = await sender.create_offer()
    bind_senders(sender.pc)  # a shared track's key frame requests go to its layer
    offered_id = _extension_id(offer)
    answer = await receiver.accept_offer(offer)
    assert _extension_id(answer) == offered_id
    # What arrives, decrypted, before aiortc parses it: the receiver's DTLS transport.
    (transceiver,) = receiver.pc.getTransceivers()
    transport: Any = transceiver.receiver.transport
    handle = transport._handle_rtp_data
    packets: list[bytes] = []

    async def capture_rtp(data: bytes, arrival_time_ms: int) -> None:
        packets.append(data)
        await handle(data, arrival_time_ms)

    transport._handle_rtp_data = capture_rtp
    await sender.accept_answer(answer)
    async with asyncio.timeout(20):
        while len(packets) < 60:
            await asyncio.sleep(0.05)
    delays = [_playout_delays(packet, offered_id) for packet in packets]
    assert all(found == [(0, 0)] for found in delays), delays[:5]
    video_sender: Any = sender.pc.getTransceivers()[0].sender
    written = video_sender._RTCRtpSender__rtp_header_extensions_map
    assert written.extension_id == offered_id and written.written >= len(packets)
    frame = await receiver.video_frames.get()  # the extension takes nothing from decoding
    assert frame.width == 320
