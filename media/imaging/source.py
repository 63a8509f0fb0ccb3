"""A Part-10 file read, its Image Pixel module checked, and one frame decoded.

Every check that bounds work happens before any decoding, so hostile values (absurd rows,
columns, bits or frames, a deflate bomb, pixel data shorter than declared) are refused with
a reason instead of exhausting memory. What pydicom or a codec raises on input it cannot
read becomes a :class:`RenderError` naming the file's transfer syntax.
"""

from __future__ import annotations

import io
import struct
import zlib
from dataclasses import dataclass
from typing import Any

import numpy as np
import pydicom
from numpy.typing import NDArray
from pydicom.dataset import Dataset
from pydicom.encaps import get_frame, parse_basic_offsets, parse_fragments
from pydicom.filereader import _read_file_meta_info, read_preamble
from pydicom.pixels.decoders.base import get_decoder
from pydicom.pixels.utils import as_pixel_options, get_expected_length
from pydicom.uid import UID, DeflatedExplicitVRLittleEndian

from media.imaging import codestream
from media.imaging.errors import RenderError

# Bounds on what one call may allocate. A frame of 2**25 pixels (e.g. 5792 x 5792, beyond
# the largest mammography detectors) takes 128 MiB as float32 while it is windowed.
MAX_FRAME_PIXELS = 2**25
# A deflated dataset is inflated in memory by pydicom: refused past this size.
MAX_INFLATED_BYTES = 512 * 2**20
_INFLATE_CHUNK = 16 * 2**20

GREY = frozenset({"MONOCHROME1", "MONOCHROME2"})
COLOUR = frozenset({"RGB", "YBR_FULL", "YBR_FULL_422", "YBR_ICT", "YBR_RCT"})
PALETTE = "PALETTE COLOR"
_FLOAT_PIXELS = {0x7FE00008: "FloatPixelData", 0x7FE00009: "DoubleFloatPixelData"}


@dataclass(frozen=True, slots=True)
class Image:
    """A parsed instance with a checked Image Pixel module."""

    ds: Dataset
    transfer_syntax: UID
    rows: int
    columns: int
    frames: int
    samples_per_pixel: int
    photometric: str
    bits_allocated: int
    bits_stored: int
    signed: bool
    pixels: PixelValue


@dataclass(frozen=True, slots=True)
class PixelValue:
    """Where the (7FE0,0010) Pixel Data value lies in `buffer`: from `start`, `length`
    bytes (None: encapsulated, up to its sequence delimiter), and its VR (None: implicit)."""

    buffer: bytes
    start: int
    length: int | None
    vr: str | None

    def reader(self) -> io.BytesIO:
        """A file-like at the value's first byte (sharing the bytes, not copying them)."""
        fp = io.BytesIO(self.buffer)
        fp.seek(self.start)
        return fp

    def available(self) -> int:
        """How many bytes of the value the buffer holds."""
        end = len(self.buffer) if self.length is None else self.start + self.length
        return max(0, min(end, len(self.buffer)) - self.start)


def open_image(source: bytes) -> Image:
    """Parse `source` (a whole Part-10 file) and check what rendering needs of it.

    The data set is parsed up to the pixel data only, and the pixel data is not copied:
    frames are read from `source` where they lie (a 92 MB multi-frame took 95 ms of CPU
    a frame when pydicom read it whole)."""
    if not isinstance(source, bytes | bytearray | memoryview):
        raise RenderError(f"source must be the bytes of a Part-10 file, not {type(source)}")
    data = bytes(source)  # no copy when it is bytes already
    deflated = _refuse_deflate_bomb(data)
    fp = io.BytesIO(data)
    try:
        # A deflated data set is inflated by pydicom, so offsets in `data` mean nothing:
        # it is read whole (its size is bounded above).
        ds = pydicom.dcmread(fp, stop_before_pixels=not deflated)
    except Exception as exc:  # any parse failure of hostile bytes is the input's fault
        raise RenderError(f"not a readable DICOM Part-10 file: {why(exc)}") from exc
    tsyntax = ds.file_meta.get("TransferSyntaxUID") if hasattr(ds, "file_meta") else None
    if not tsyntax:
        raise RenderError("the file meta has no (0002,0010) Transfer Syntax UID")
    try:
        tsyntax = UID(str(tsyntax))
        pixels = _pixel_element(ds) if deflated else _pixel_value(data, fp.tell(), tsyntax)
        return _checked(ds, tsyntax, pixels)
    except RenderError:
        raise
    except Exception as exc:  # a value pydicom cannot convert (e.g. IS "1A")
        raise RenderError(f"invalid Image Pixel module: {why(exc)}") from exc


def _pixel_value(data: bytes, at: int, tsyntax: UID) -> PixelValue:
    """The pixel data element at `at`, where pydicom stopped before it (the position
    ``stop_before_pixels`` leaves, as pydicom's own ``pixel_array(file, index=...)`` uses)."""
    end = "<" if tsyntax.is_little_endian else ">"
    if at + 8 > len(data):
        raise RenderError("the instance has no (7FE0,0010) Pixel Data")
    group, element = struct.unpack_from(f"{end}HH", data, at)
    tag = group << 16 | element
    if tag in _FLOAT_PIXELS:
        raise RenderError(f"{_FLOAT_PIXELS[tag]} is not rendered, only (7FE0,0010) Pixel Data")
    if tag != 0x7FE00010:
        raise RenderError("the instance has no (7FE0,0010) Pixel Data")
    vr: str | None = None
    if tsyntax.is_implicit_VR:
        (length,), start = struct.unpack_from(f"{end}L", data, at + 4), at + 8
    else:
        vr = data[at + 4 : at + 6].decode("latin-1")
        if vr not in ("OB", "OW", "UN"):
            raise RenderError(f"Pixel Data has the VR {vr!r}, not OB or OW")
        (length,), start = struct.unpack_from(f"{end}L", data, at + 8), at + 12
    return PixelValue(data, start, None if length == 0xFFFFFFFF else length, vr)


def _pixel_element(ds: Dataset) -> PixelValue:
    for tag, name in _FLOAT_PIXELS.items():
        if tag in ds:
            raise RenderError(f"{name} is not rendered, only (7FE0,0010) Pixel Data")
    if "PixelData" not in ds:
        raise RenderError("the instance has no (7FE0,0010) Pixel Data")
    value = ds.PixelData
    if not isinstance(value, bytes):
        raise RenderError("the Pixel Data value is not bytes")
    length = None if ds["PixelData"].is_undefined_length else len(value)
    return PixelValue(value, 0, length, ds["PixelData"].VR)


def decode_frame(image: Image, frame: int) -> tuple[NDArray[Any], str, int]:
    """Decode one frame (0-based) of `image`, and only that one.

    Returns the array ((rows, columns) or (rows, columns, samples)), the photometric
    interpretation of the array (pydicom converts YBR_FULL and YBR_FULL_422 to RGB, and a
    JPEG or JPEG 2000 decoder may already have converted a colour transform) and its bits
    stored.
    """
    if not 0 <= frame < image.frames:
        raise RenderError(f"frame {frame} is out of range: the instance has {image.frames}")
    name = image.transfer_syntax.name
    try:
        decoder = get_decoder(image.transfer_syntax)
    except NotImplementedError as exc:
        raise RenderError(f"no decoder for the transfer syntax {name}") from exc
    if not decoder.is_available:
        raise RenderError(f"no installed decoder plugin for the transfer syntax {name}")
    if codestream.is_checked(image.transfer_syntax):
        codestream.check_frame(
            _encapsulated_frame(image, frame),
            image.transfer_syntax,
            image.columns,
            image.rows,
            image.samples_per_pixel,
        )
    vr = image.pixels.vr
    if vr not in ("OB", "OW"):  # implicit VR (or UN): what PS3.5 A.1 says it would be
        vr = "OW" if image.bits_allocated > 8 else "OB"
    try:
        options: dict[str, Any] = {
            **as_pixel_options(image.ds),
            "pixel_keyword": "PixelData",
            "pixel_vr": vr,
            "as_rgb": True,
        }
        arr, meta = decoder.as_array(image.pixels.reader(), index=frame, **options)
    except (KeyboardInterrupt, SystemExit):
        raise
    except BaseException as exc:  # codecs raise anything on corrupt data: the input's fault
        # (the RLE plugin is Rust: a panic arrives as pyo3's PanicException, a BaseException)
        raise RenderError(f"cannot decode frame {frame} ({name}): {why(exc)}") from exc
    expected = (image.rows, image.columns)
    if arr.shape[:2] != expected or (arr.ndim == 3) != (image.samples_per_pixel > 1):
        raise RenderError(f"frame {frame} decoded to shape {arr.shape}, not {expected}")
    photometric = str(meta.get("photometric_interpretation", image.photometric))
    bits = int(meta.get("bits_stored", image.bits_stored))
    return arr, photometric, bits


def _encapsulated_frame(image: Image, frame: int) -> bytes:
    endianness = "<" if image.transfer_syntax.is_little_endian else ">"
    try:
        return get_frame(
            image.pixels.reader(),
            frame,
            number_of_frames=image.frames,
            endianness=endianness,
        )
    except Exception as exc:  # item tags, offsets or lengths that do not add up
        raise RenderError(f"cannot find frame {frame} in the pixel data: {why(exc)}") from exc


def _checked(ds: Dataset, tsyntax: UID, pixels: PixelValue) -> Image:
    missing = [
        k for k in ("Rows", "Columns", "BitsAllocated", "SamplesPerPixel") if ds.get(k) is None
    ]
    if missing:
        raise RenderError(f"the Image Pixel module lacks {', '.join(missing)}")
    rows, columns = int(ds.Rows), int(ds.Columns)
    if rows < 1 or columns < 1:
        raise RenderError(f"the image is {columns}x{rows} pixels")
    if rows * columns > MAX_FRAME_PIXELS:
        raise RenderError(
            f"a frame of {columns}x{rows} pixels is larger than {MAX_FRAME_PIXELS} pixels"
        )
    bits_allocated = int(ds.BitsAllocated)
    if bits_allocated not in (1, 8, 16, 32):
        raise RenderError(f"Bits Allocated {bits_allocated} is not 1, 8, 16 or 32")
    bits_stored = int(ds.get("BitsStored") or bits_allocated)
    if not 1 <= bits_stored <= bits_allocated:
        raise RenderError(f"Bits Stored {bits_stored} with Bits Allocated {bits_allocated}")
    samples = int(ds.SamplesPerPixel)
    photometric = str(ds.get("PhotometricInterpretation") or "").strip()
    if photometric in GREY or photometric == PALETTE:
        if samples != 1:
            raise RenderError(f"{photometric} with {samples} samples per pixel")
    elif photometric in COLOUR:
        if samples != 3:
            raise RenderError(f"{photometric} with {samples} samples per pixel")
        if int(ds.get("PlanarConfiguration") or 0) not in (0, 1):
            raise RenderError(f"Planar Configuration {ds.PlanarConfiguration} is not 0 or 1")
    else:
        raise RenderError(f"the photometric interpretation {photometric!r} is not rendered")
    frames = _frames(ds)
    image = Image(
        ds=ds,
        transfer_syntax=tsyntax,
        rows=rows,
        columns=columns,
        frames=frames,
        samples_per_pixel=samples,
        photometric=photometric,
        bits_allocated=bits_allocated,
        bits_stored=bits_stored,
        signed=int(ds.get("PixelRepresentation") or 0) == 1,
        pixels=pixels,
    )
    _check_length(image)
    return image


def _frames(ds: Dataset) -> int:
    value = ds.get("NumberOfFrames")
    if value is None or value == "":
        return 1
    frames = int(value)
    if frames < 1:
        raise RenderError(f"Number of Frames is {frames}")
    return frames


def _check_length(image: Image) -> None:
    """Pixel data long enough for every declared frame (native), or with at least one
    fragment per frame (encapsulated): a Number of Frames the data cannot hold is refused
    here, so frame_count never promises a frame that is not there."""
    pixels = image.pixels
    if not image.transfer_syntax.is_encapsulated:
        if pixels.length is None:
            raise RenderError("native pixel data of undefined length")
        expected = get_expected_length(image.ds, unit="bytes")
        if pixels.available() < expected:
            raise RenderError(
                f"the pixel data holds {pixels.available()} bytes, {expected} expected for "
                f"{image.frames} frame(s) of {image.columns}x{image.rows}"
            )
        return
    endianness = "<" if image.transfer_syntax.is_little_endian else ">"
    try:
        reader = pixels.reader()
        offsets = parse_basic_offsets(reader, endianness=endianness)
        # The first item is the basic offset table: 8 bytes of header and its offsets.
        reader.seek(pixels.start + 8 + 4 * len(offsets))
        fragments, _ = parse_fragments(reader, endianness=endianness)
    except Exception as exc:  # malformed item tags or lengths
        raise RenderError(f"malformed encapsulated pixel data: {why(exc)}") from exc
    if fragments < image.frames:
        raise RenderError(
            f"{image.frames} frames declared but the encapsulated pixel data has "
            f"{fragments} fragment(s)"
        )


def _refuse_deflate_bomb(source: bytes) -> bool:
    """pydicom inflates a deflated dataset whole: measure it first, in bounded chunks.
    Whether the data set is deflated."""
    fp = io.BytesIO(source)
    try:
        read_preamble(fp, False)
        meta = _read_file_meta_info(fp)
    except Exception as exc:  # no preamble, no DICM, a broken meta group
        raise RenderError(f"not a DICOM Part-10 file: {why(exc)}") from exc
    if meta.get("TransferSyntaxUID") != DeflatedExplicitVRLittleEndian:
        return False
    inflater = zlib.decompressobj(-zlib.MAX_WBITS)
    data = fp.read()
    size = 0
    try:
        while data and not inflater.eof:
            size += len(inflater.decompress(data, _INFLATE_CHUNK))
            if size > MAX_INFLATED_BYTES:
                raise RenderError(
                    f"the deflated dataset inflates to more than {MAX_INFLATED_BYTES} bytes"
                )
            data = inflater.unconsumed_tail
    except zlib.error as exc:
        raise RenderError(f"the deflated dataset is corrupt: {exc}") from exc
    return True


def why(exc: BaseException) -> str:
    """An exception on one bounded line: its type and its message's lines joined (pydicom
    lists each plugin's failure on a line of its own)."""
    text = " ".join(line.strip() for line in str(exc).splitlines() if line.strip())
    if len(text) > 300:
        text = text[:297] + "..."
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def finite(value: Any, name: str) -> float:
    """`value` as a finite float, or a RenderError naming the attribute."""
    try:
        number = float(value)
    except (TypeError, ValueError) as exc:
        raise RenderError(f"{name} {value!r} is not a number") from exc
    if not np.isfinite(number):
        raise RenderError(f"{name} is {number}")
    return number
