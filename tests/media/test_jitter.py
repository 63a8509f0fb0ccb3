"""The marker-releasing jitter buffer against aiortc's own, packet by packet."""

from __future__ import annotations

import random

from aiortc.jitterbuffer import JitterBuffer
from aiortc.rtp import RtpPacket

from media.rtc.jitter import MarkerJitterBuffer


def _frames(count: int, per_frame: int, start_seq: int = 65530) -> list[RtpPacket]:
    packets = []
    seq = start_seq
    for f in range(count):
        for k in range(per_frame):
            p = RtpPacket(
                payload_type=96,
                marker=int(k == per_frame - 1),
                sequence_number=seq & 0xFFFF,
                timestamp=3000 * (f + 1),
                payload=bytes([f, k]),
            )
            p._data = bytes([f, k])  # type: ignore[attr-defined]
            packets.append(p)
            seq += 1
    return packets


def _feed(buffer: JitterBuffer, packets: list[RtpPacket]) -> list[tuple[int, int]]:
    """(index of the packet that released it, frame timestamp) for each released frame."""
    out = []
    for i, p in enumerate(packets):
        _, frame = buffer.add(p)
        if frame is not None:
            out.append((i, frame.timestamp))
    return out


def test_in_order_frames_go_on_their_marker_not_the_next_frame() -> None:
    packets = _frames(5, 3)
    ours = _feed(MarkerJitterBuffer(), packets)
    theirs = _feed(JitterBuffer(512, is_video=True), packets)
    assert [ts for _, ts in ours] == [3000, 6000, 9000, 12000, 15000]
    assert [i for i, _ in ours] == [2, 5, 8, 11, 14]  # the marked packet itself
    assert [i for i, _ in theirs] == [3, 6, 9, 12]  # one packet (a frame interval) later
    buffer = MarkerJitterBuffer()
    _feed(buffer, packets)
    assert buffer.released_on_marker == 5


def test_frame_data_is_complete_and_in_order_despite_reordering() -> None:
    packets = _frames(3, 4)
    shuffled = [*packets[:4], packets[6], packets[4], packets[7], packets[5], *packets[8:]]
    buffer = MarkerJitterBuffer()
    frames = []
    for p in shuffled:
        _, frame = buffer.add(p)
        if frame is not None:
            frames.append(frame)
    assert [f.data for f in frames] == [b"".join(bytes([f, k]) for k in range(4)) for f in range(3)]


def test_a_lost_marker_packet_holds_until_retransmitted() -> None:
    packets = _frames(3, 3)
    marker = packets.pop(5)  # the marked last packet of frame 2
    buffer = MarkerJitterBuffer()
    assert [ts for _, ts in _feed(buffer, packets)] == [3000]  # frames 2 and 3 wait
    _, frame = buffer.add(marker)  # the retransmission
    assert frame is not None
    assert frame.timestamp == 6000
    _, frame = buffer.add(packets[-1])  # frame 3's marker again: frame 3 goes too
    assert frame is not None
    assert frame.timestamp == 9000


def test_a_sender_without_marker_bits_gets_the_old_rule() -> None:
    packets = _frames(3, 2)
    for p in packets:
        p.marker = 0
    released = _feed(MarkerJitterBuffer(), packets)
    assert released == [(2, 3000), (4, 6000)]  # on the next frame's first packet


def test_a_lost_middle_packet_holds_the_frame_until_it_is_retransmitted() -> None:
    packets = _frames(2, 4)
    missing = packets.pop(1)
    buffer = MarkerJitterBuffer()
    assert _feed(buffer, packets[:3]) == []  # hole: not complete
    _, frame = buffer.add(missing)  # the NACKed retransmission
    assert frame is not None
    assert frame.data == b"".join(bytes([0, k]) for k in range(4))


def test_padding_only_packets_are_ignored() -> None:
    packets = _frames(3, 2)
    padding = []
    for p in packets:
        if p.marker:
            pad = RtpPacket(payload_type=96, sequence_number=0, timestamp=p.timestamp, payload=b"")
            pad._data = b""  # type: ignore[attr-defined]
            padding.append((p, pad))
    stream: list[RtpPacket] = []
    seq = 100
    for p in packets:
        for q in [p] + [pad for marked, pad in padding if marked is p]:
            q.sequence_number = seq
            seq += 1
            stream.append(q)
    released = _feed(MarkerJitterBuffer(), stream)
    assert [ts for _, ts in released] == [3000, 6000, 9000]


def test_random_loss_and_reordering_never_yield_a_mixed_frame() -> None:
    rng = random.Random(4)
    packets = _frames(200, 5)
    stream = [p for p in packets if rng.random() > 0.03]
    for i in range(0, len(stream) - 3, 7):
        stream[i], stream[i + 2] = stream[i + 2], stream[i]
    theirs = len(_feed(JitterBuffer(512, is_video=True), stream))
    buffer = MarkerJitterBuffer()
    for p in stream:
        _, frame = buffer.add(p)
        if frame is not None:
            frame_no = frame.timestamp // 3000 - 1
            pieces = [frame.data[k : k + 2] for k in range(0, len(frame.data), 2)]
            assert all(piece[0] == frame_no for piece in pieces)  # one frame's packets only
    assert buffer.released_on_marker + buffer.released_on_next_frame >= theirs


def test_a_hole_never_filled_is_given_up_and_a_key_frame_asked_for() -> None:
    """A packet lost for good (its retransmission lost too) held every later frame until
    the buffer overflowed: 512 packets, half a minute at a low bitrate."""
    now = [0.0]
    buffer = MarkerJitterBuffer(clock=lambda: now[0])
    packets = _frames(12, 3, start_seq=100)
    lost = packets[4]  # the middle of the second frame
    released: list[int] = []
    plis = 0
    for p in packets:
        if p is lost:
            continue
        now[0] += 1 / 30 / 3  # 30 frames a second, 3 packets each
        pli, frame = buffer.add(p)
        plis += pli
        if frame is not None:
            released.append(frame.timestamp // 3000)
    assert released[0] == 1
    assert 2 not in released  # the broken frame is dropped, never decoded
    # The frames after it wait out HOLE_WAIT_S (0.3 s: nine frames) and are dropped with it
    # (they reference it; a key frame is asked for); the newest ones go on at once.
    assert released[-1] == 12
    assert released == sorted(released)
    assert released == [1, 11, 12]  # the hole was found at frame 11's first packet + 0.3 s
    assert plis == 1
    assert buffer.holes_skipped == 1
    assert buffer.frames_skipped == 12 - len(released)


def test_a_retransmission_in_time_keeps_the_frame() -> None:
    now = [0.0]
    buffer = MarkerJitterBuffer(clock=lambda: now[0])
    packets = _frames(6, 3, start_seq=100)
    lost = packets[4]
    released = []
    for p in packets:
        if p is lost:
            continue
        now[0] += 0.01
        if p is packets[8]:  # 50 ms later: the NACK's answer arrives
            _, frame = buffer.add(lost)
            if frame is not None:
                released.append(frame.timestamp // 3000)
        _, frame = buffer.add(p)
        if frame is not None:
            released.append(frame.timestamp // 3000)
    assert released == [1, 2, 3, 4, 5, 6]
    assert buffer.holes_skipped == 0
