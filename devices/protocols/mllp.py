"""MLLP framing (HL7 v2 over TCP): ``0B <message> 1C 0D``. Sans-I/O."""

from __future__ import annotations

from dataclasses import dataclass

START = 0x0B
END = b"\x1c\x0d"
MAX_MESSAGE = 1 << 20


def frame(message: str | bytes) -> bytes:
    body = message.encode() if isinstance(message, str) else message
    return bytes([START]) + body + END


@dataclass(frozen=True)
class FramingError:
    reason: str
    skipped: int


class MllpFramer:
    """Splits a byte stream into message bodies; bytes outside frames and oversized frames
    are reported and skipped."""

    def __init__(self, max_message: int = MAX_MESSAGE) -> None:
        self.max_message = max_message
        self._buf = bytearray()

    def receive_data(self, data: bytes) -> list[bytes | FramingError]:
        self._buf += data
        out: list[bytes | FramingError] = []
        buf = self._buf
        while buf:
            start = buf.find(START)
            if start < 0:
                out.append(FramingError("bytes outside an MLLP frame", len(buf)))
                buf.clear()
                break
            if start > 0:
                out.append(FramingError("bytes outside an MLLP frame", start))
                del buf[:start]
            end = buf.find(END, 1)
            nested = buf.find(START, 1)
            if 0 < nested < (end if end >= 0 else len(buf)):
                # A new start block before this frame ended: the frame was cut short.
                out.append(FramingError("MLLP frame cut short by a new start", nested))
                del buf[:nested]
                continue
            if end < 0:
                if len(buf) > self.max_message + 1:
                    out.append(FramingError("MLLP frame too large", len(buf)))
                    buf.clear()
                break
            out.append(bytes(buf[1:end]))
            del buf[: end + len(END)]
        return out
