"""What a snapshot's bytes must be: a whole JPEG or PNG of the type it is declared as.

Sans-I/O and pure: :func:`check_image` walks the file's structure (a PNG's chunks with their
CRCs from the signature to ``IEND``; a JPEG's marker segments from ``SOI`` through a frame
header to the scan, ending in ``EOI``) without decoding pixels, and raises
:class:`~signaling.errors.InvalidImage` with what is wrong. Random bytes, a truncated upload,
a PNG sent as ``image/jpeg`` or anything appended after the image's end are refused.

The walk is linear in the size (the CRCs dominate): callers on an event loop run it in a
worker thread.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass

from signaling.errors import InvalidImage

JPEG = "image/jpeg"
PNG = "image/png"
#: The content types a snapshot may have.
CONTENT_TYPES = frozenset({JPEG, PNG})

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_JPEG_SOI = b"\xff\xd8"
_JPEG_EOI = b"\xff\xd9"
# Markers without a length: TEM and RST0-7 (SOI and EOI are handled apart).
_STANDALONE = frozenset({0x01, *range(0xD0, 0xD8)})
# Start-of-frame markers: SOF0-15 but DHT (C4), JPG (C8) and DAC (CC).
_SOF = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}
_SOS = 0xDA


@dataclass(frozen=True)
class ImageInfo:
    content_type: str
    width: int
    height: int


def media_type(header: str | None) -> str:
    """The bare media type of a ``Content-Type`` header, lower case, parameters dropped."""
    return (header or "").split(";", 1)[0].strip().lower()


def check_image(data: bytes, content_type: str) -> ImageInfo:
    """Check that ``data`` is a whole image of ``content_type`` (one of
    :data:`CONTENT_TYPES`); raises :class:`InvalidImage` saying what is wrong."""
    if not data:
        raise InvalidImage("the body is empty: send the image's bytes")
    if content_type == PNG:
        if data.startswith(_JPEG_SOI + b"\xff"):
            raise InvalidImage("these bytes are a JPEG, not the PNG the Content-Type says")
        return _check_png(data)
    if content_type == JPEG:
        if data.startswith(PNG_SIGNATURE):
            raise InvalidImage("these bytes are a PNG, not the JPEG the Content-Type says")
        return _check_jpeg(data)
    raise ValueError(f"not a snapshot content type: {content_type!r}")


def _check_png(data: bytes) -> ImageInfo:
    if not data.startswith(PNG_SIGNATURE):
        raise InvalidImage("not a PNG: it does not start with the PNG signature")
    pos, size = len(PNG_SIGNATURE), len(data)
    width = height = 0
    seen_data = False
    while True:
        if pos + 12 > size:
            raise InvalidImage(f"truncated PNG: it ends at byte {size} inside a chunk header")
        length = int.from_bytes(data[pos : pos + 4], "big")
        kind = data[pos + 4 : pos + 8]
        end = pos + 12 + length
        if not kind.isalpha() or length > 0x7FFFFFFF:
            raise InvalidImage(f"corrupt PNG: no valid chunk at byte {pos}")
        if end > size:
            raise InvalidImage(
                f"truncated PNG: chunk {kind.decode()} needs {end} bytes, the body has {size}"
            )
        stored = int.from_bytes(data[end - 4 : end], "big")
        if zlib.crc32(data[pos + 4 : end - 4]) != stored:
            raise InvalidImage(f"corrupt PNG: chunk {kind.decode()} fails its CRC")
        if pos == len(PNG_SIGNATURE):
            if kind != b"IHDR" or length != 13:
                raise InvalidImage("corrupt PNG: the first chunk is not a header (IHDR)")
            width = int.from_bytes(data[pos + 8 : pos + 12], "big")
            height = int.from_bytes(data[pos + 12 : pos + 16], "big")
            if width == 0 or height == 0:
                raise InvalidImage(f"corrupt PNG: the header says {width}x{height} pixels")
        elif kind == b"IDAT":
            seen_data = True
        elif kind == b"IEND":
            if not seen_data:
                raise InvalidImage("corrupt PNG: it ends without image data (IDAT)")
            if end != size:
                raise InvalidImage(f"{size - end} bytes follow the end of the PNG (IEND)")
            return ImageInfo(PNG, width, height)
        pos = end


def _check_jpeg(data: bytes) -> ImageInfo:
    if not data.startswith(_JPEG_SOI + b"\xff"):
        raise InvalidImage("not a JPEG: it does not start with the JPEG start-of-image marker")
    pos, size = len(_JPEG_SOI), len(data)
    frame: tuple[int, int] | None = None
    while True:
        if pos + 2 > size:
            raise InvalidImage(f"truncated JPEG: it ends at byte {size} before its image data")
        if data[pos] != 0xFF:
            raise InvalidImage(f"corrupt JPEG: a marker was expected at byte {pos}")
        marker = data[pos + 1]
        if marker == 0xFF:  # fill byte before a marker
            pos += 1
            continue
        if marker in _STANDALONE:
            pos += 2
            continue
        if marker in (0xD8, 0xD9):
            raise InvalidImage(f"corrupt JPEG: marker FF{marker:02X} before the image data")
        if pos + 4 > size:
            raise InvalidImage(f"truncated JPEG: it ends at byte {size} inside a segment")
        length = int.from_bytes(data[pos + 2 : pos + 4], "big")
        end = pos + 2 + length
        if length < 2 or end > size:
            raise InvalidImage(
                f"truncated JPEG: segment FF{marker:02X} needs {end} bytes, the body has {size}"
            )
        if marker in _SOF:
            if length < 8:
                raise InvalidImage("corrupt JPEG: its frame header is too short")
            height = int.from_bytes(data[pos + 5 : pos + 7], "big")
            width = int.from_bytes(data[pos + 7 : pos + 9], "big")
            if width == 0:
                raise InvalidImage("corrupt JPEG: the frame header says 0 pixels wide")
            frame = (width, height)
        elif marker == _SOS:
            if frame is None:
                raise InvalidImage("corrupt JPEG: image data comes before any frame header")
            if not data.endswith(_JPEG_EOI) or size - len(_JPEG_EOI) <= end:
                raise InvalidImage("truncated JPEG: it does not end with the end-of-image marker")
            return ImageInfo(JPEG, *frame)
        pos = end
