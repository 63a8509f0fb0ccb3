"""MIB/RS232 framing: ``C0 | 11 01 LL LL | payload | FCS | C1``.

Inside a frame, C0, C1 and 7D are sent as ``7D, b ^ 0x20``. The header is protocol id 0x11,
message type 0x01 and the payload length (big-endian); FCS is CRC-16/X.25 (reflected 0x1021,
init 0xFFFF, inverted) over header and payload, low byte first. Sans-I/O.
"""

from __future__ import annotations

from dataclasses import dataclass

BOF, EOF, ESC = 0xC0, 0xC1, 0x7D
PROTOCOL_ID, MESSAGE_TYPE = 0x11, 0x01
MAX_PAYLOAD = 8192


def crc16_x25(data: bytes) -> int:
    crc = 0xFFFF
    for byte in data:
        crc ^= byte
        for _ in range(8):
            crc = (crc >> 1) ^ 0x8408 if crc & 1 else crc >> 1
    return crc ^ 0xFFFF


def _escape(data: bytes) -> bytes:
    out = bytearray()
    for b in data:
        if b in (BOF, EOF, ESC):
            out += bytes([ESC, b ^ 0x20])
        else:
            out.append(b)
    return bytes(out)


def encode_frame(payload: bytes) -> bytes:
    header = bytes([PROTOCOL_ID, MESSAGE_TYPE]) + len(payload).to_bytes(2, "big")
    fcs = crc16_x25(header + payload).to_bytes(2, "little")
    return bytes([BOF]) + _escape(header + payload + fcs) + bytes([EOF])


@dataclass(frozen=True)
class FramingError:
    reason: str
    skipped: int


class Deframer:
    """Bytes in, payloads (or :class:`FramingError`) out; resynchronises on the next BOF."""

    def __init__(self) -> None:
        self._buf = bytearray()
        self._in_frame = False
        self._outside = 0

    def receive_data(self, data: bytes) -> list[bytes | FramingError]:
        out: list[bytes | FramingError] = []
        for b in data:
            if b == BOF:
                if self._in_frame and self._buf:
                    out.append(FramingError("frame cut short by a new start", len(self._buf) + 1))
                if self._outside:
                    out.append(FramingError("bytes outside a frame", self._outside))
                    self._outside = 0
                self._buf, self._in_frame = bytearray(), True
            elif not self._in_frame:
                self._outside += 1
            elif b == EOF:
                out.append(self._finish())
                self._buf, self._in_frame = bytearray(), False
            else:
                self._buf.append(b)
                if len(self._buf) > 2 * MAX_PAYLOAD:
                    out.append(FramingError("frame too long", len(self._buf) + 1))
                    self._buf, self._in_frame = bytearray(), False
        return out

    def _finish(self) -> bytes | FramingError:
        size = len(self._buf) + 2
        data = bytearray()
        escaped = False
        for b in self._buf:
            if escaped:
                data.append(b ^ 0x20)
                escaped = False
            elif b == ESC:
                escaped = True
            else:
                data.append(b)
        if escaped or len(data) < 6:
            return FramingError("frame too short", size)
        if data[0] != PROTOCOL_ID or data[1] != MESSAGE_TYPE:
            return FramingError("not a data export frame (protocol id)", size)
        length = int.from_bytes(data[2:4], "big")
        if length != len(data) - 6:
            return FramingError("frame length does not match its header", size)
        if crc16_x25(bytes(data[:-2])) != int.from_bytes(data[-2:], "little"):
            return FramingError("bad frame check sequence", size)
        return bytes(data[4:-2])
