"""Real images for the snapshot tests: a PNG written chunk by chunk, a JPEG from FFmpeg's
encoder (PyAV), both of a small gradient."""

from __future__ import annotations

import struct
import zlib
from fractions import Fraction

import av
import numpy as np
import numpy.typing as npt


def _pixels(width: int, height: int) -> npt.NDArray[np.uint8]:
    y, x = np.mgrid[0:height, 0:width]
    rgb = np.stack([x * 255 // max(1, width - 1), y * 255 // max(1, height - 1), (x + y) % 256])
    return np.ascontiguousarray(rgb.transpose(1, 2, 0).astype(np.uint8))


def _chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


def png(width: int = 64, height: int = 48) -> bytes:
    """An 8-bit RGB PNG."""
    rows = b"".join(b"\x00" + row.tobytes() for row in _pixels(width, height))
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + _chunk(b"IHDR", header)
        + _chunk(b"IDAT", zlib.compress(rows))
        + _chunk(b"IEND", b"")
    )


def jpeg(width: int = 64, height: int = 48) -> bytes:
    """A baseline JPEG as FFmpeg's MJPEG encoder writes it."""
    codec = av.CodecContext.create("mjpeg", "w")
    codec.width, codec.height = width, height
    codec.pix_fmt = "yuvj420p"
    codec.time_base = Fraction(1, 25)
    frame = av.VideoFrame.from_ndarray(_pixels(width, height), format="rgb24")
    packets = codec.encode(frame.reformat(format="yuvj420p")) + codec.encode(None)
    return bytes(packets[0])
