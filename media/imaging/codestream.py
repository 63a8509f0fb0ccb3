"""The size a compressed frame's own header declares, read before any codec sees it.

A JPEG, JPEG-LS or JPEG 2000 decoder allocates what its codestream's header says, not what
the DICOM Rows and Columns say: a 100-byte frame declaring 60000 x 60000 made libjpeg take
3.5 GB and 30 s (measured) before pydicom could notice the mismatch. So the header is read
here, and a frame whose size or component count differs from the Image Pixel module is
refused.
"""

from __future__ import annotations

import struct

from pydicom.uid import (
    UID,
    JPEG2000TransferSyntaxes,
    JPEGLSTransferSyntaxes,
    JPEGTransferSyntaxes,
)

from media.imaging.errors import RenderError

_JPEG_FAMILY = frozenset(JPEGTransferSyntaxes) | frozenset(JPEGLSTransferSyntaxes)
_J2K_FAMILY = frozenset(JPEG2000TransferSyntaxes) | frozenset(
    # HTJ2K (its UIDs are not all in pydicom's JPEG2000TransferSyntaxes list everywhere)
    UID(u)
    for u in ("1.2.840.10008.1.2.4.201", "1.2.840.10008.1.2.4.202", "1.2.840.10008.1.2.4.203")
)
# Start of frame markers: JPEG's SOF0..SOF15 but DHT (C4), JPG (C8) and DAC (CC); JPEG-LS SOF55.
_SOF = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC} | {0xF7}
_STANDALONE = frozenset(range(0xD0, 0xD8)) | {0x01}
# A JPEG 2000 codestream (raw, or inside a JP2 box) starts with SOC then SIZ.
_SOC_SIZ = b"\xff\x4f\xff\x51"


def is_checked(tsyntax: UID) -> bool:
    """Whether frames of this transfer syntax have a header :func:`check_frame` reads."""
    return tsyntax in _JPEG_FAMILY or tsyntax in _J2K_FAMILY


def check_frame(codestream: bytes, tsyntax: UID, columns: int, rows: int, samples: int) -> None:
    """Refuse a frame whose header declares another size or component count."""
    if tsyntax in _JPEG_FAMILY:
        declared = _jpeg_header(codestream)
    elif tsyntax in _J2K_FAMILY:
        declared = _j2k_header(codestream)
    else:
        return
    if declared != (columns, rows, samples):
        width, height, components = declared
        raise RenderError(
            f"the frame's codestream declares {width}x{height} with {components} "
            f"component(s); the dataset says {columns}x{rows} with {samples}"
        )


def _jpeg_header(data: bytes) -> tuple[int, int, int]:
    if data[:2] != b"\xff\xd8":
        raise RenderError("the frame is not a JPEG codestream (no SOI marker)")
    at = 2
    while at + 4 <= len(data):
        if data[at] != 0xFF:
            raise RenderError(f"the JPEG codestream has no marker at byte {at}")
        marker = data[at + 1]
        if marker == 0xFF:  # fill byte
            at += 1
            continue
        if marker in _STANDALONE:
            at += 2
            continue
        (length,) = struct.unpack_from(">H", data, at + 2)
        if marker in _SOF:
            if at + 10 > len(data):
                break
            height, width = struct.unpack_from(">HH", data, at + 5)
            if height == 0:
                raise RenderError("a JPEG height set by a DNL marker is not rendered")
            return width, height, data[at + 9]
        if marker == 0xDA or length < 2:  # scan data before any frame header
            break
        at += 2 + length
    raise RenderError("the JPEG codestream has no frame header (SOF)")


def _j2k_header(data: bytes) -> tuple[int, int, int]:
    at = data.find(_SOC_SIZ, 0, 4096)
    if at < 0 or at + 4 + 38 > len(data):
        raise RenderError("the frame is not a JPEG 2000 codestream (no SOC and SIZ)")
    # SIZ after its marker: Lsiz, Rsiz, Xsiz, Ysiz, XOsiz, YOsiz, 4 tile values, Csiz.
    fields = struct.unpack_from(">HHIIIIIIIIH", data, at + 4)
    xsiz, ysiz, xosiz, yosiz, csiz = fields[2], fields[3], fields[4], fields[5], fields[10]
    if xosiz > xsiz or yosiz > ysiz:
        raise RenderError("the JPEG 2000 image offset lies outside its reference grid")
    return xsiz - xosiz, ysiz - yosiz, csiz
