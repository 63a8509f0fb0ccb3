"""A latency stamp drawn into the pixels: frame id and capture time, readable after a lossy
video codec.

72 bits (32-bit frame id, 32-bit capture time in ms modulo 2^32, 8-bit CRC) as a 9 x 8 grid
of ``block`` x ``block`` squares in the top-left corner, white for 1 and black for 0, inside
a grey frame. Blocks of 8 px survive VP8 and H.264 at ordinary bitrates: each block is read
from its centre, thresholded at mid-grey, and the CRC rejects a misread.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

COLUMNS, ROWS = 9, 8
BITS = COLUMNS * ROWS
DEFAULT_BLOCK = 8
_MARGIN = 2  # grey border (in blocks' fraction) around the code


def _crc8(data: bytes) -> int:
    """CRC-8 (poly 0x07) with init 0xFF and xor-out 0x55: neither a blank (all-black) nor
    an all-white corner can pass for a stamp."""
    crc = 0xFF
    for byte in data:
        crc ^= byte
        for _ in range(8):
            crc = ((crc << 1) ^ 0x07) & 0xFF if crc & 0x80 else (crc << 1) & 0xFF
    return crc ^ 0x55


def _bits(frame_id: int, capture_ms: int) -> NDArray[np.bool_]:
    payload = (frame_id & 0xFFFFFFFF).to_bytes(4, "big") + (capture_ms & 0xFFFFFFFF).to_bytes(
        4, "big"
    )
    data = payload + bytes([_crc8(payload)])
    return np.unpackbits(np.frombuffer(data, dtype=np.uint8)).astype(bool)


def stamp_size(block: int = DEFAULT_BLOCK) -> tuple[int, int]:
    """(width, height) in pixels the stamp covers."""
    return COLUMNS * block + 2 * _MARGIN, ROWS * block + 2 * _MARGIN


def draw_stamp(
    frame: NDArray[np.uint8], frame_id: int, capture_ms: int, block: int = DEFAULT_BLOCK
) -> None:
    """Draw into ``frame`` (H x W x 3, uint8) in place."""
    width, height = stamp_size(block)
    frame[:height, :width] = 128
    bits = _bits(frame_id, capture_ms).reshape(ROWS, COLUMNS)
    for r in range(ROWS):
        for c in range(COLUMNS):
            y, x = _MARGIN + r * block, _MARGIN + c * block
            frame[y : y + block, x : x + block] = 255 if bits[r, c] else 0


def read_stamp(frame: NDArray[np.uint8], block: int = DEFAULT_BLOCK) -> tuple[int, int] | None:
    """(frame id, capture ms) from a frame, or None when there is no valid stamp."""
    width, height = stamp_size(block)
    if frame.shape[0] < height or frame.shape[1] < width:
        return None
    gray = frame[:height, :width].astype(np.float32)
    if gray.ndim == 3:
        gray = gray.mean(axis=2)
    lo, hi = block // 4, block - block // 4
    levels = np.zeros(BITS, dtype=np.float32)
    for r in range(ROWS):
        for c in range(COLUMNS):
            y, x = _MARGIN + r * block, _MARGIN + c * block
            levels[r * COLUMNS + c] = gray[y + lo : y + hi, x + lo : x + hi].mean()
    bits = levels > 128
    if bits.all() or not bits.any() or levels[bits].mean() - levels[~bits].mean() < 64:
        return None  # no black-and-white code here
    data = np.packbits(bits).tobytes()
    if _crc8(data[:8]) != data[8]:
        return None
    return int.from_bytes(data[:4], "big"), int.from_bytes(data[4:8], "big")
