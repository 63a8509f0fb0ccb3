"""Greyscale: stored values → Modality LUT → VOI (window or LUT) → 8-bit grey.

The order and the functions are PS3.3's: C.11.1 (Modality LUT: a Modality LUT Sequence, or
Rescale Slope and Intercept), C.11.2 (VOI LUT: a VOI LUT Sequence, or Window Center and Width
with the VOI LUT Function LINEAR, LINEAR_EXACT or SIGMOID), MONOCHROME1 inverted last. For
an enhanced multi-frame instance the rescale and the window come from the frame's functional
groups (per-frame first, then shared) when the top level has none.

Which window: the caller's, else the file's own (its first VOI LUT Sequence item, else its
first Window Center/Width), else the frame's own range (its minimum to black, its maximum
to white; pixel padding left out of the range).
"""

from __future__ import annotations

from typing import Any

import numpy as np
from numpy.typing import NDArray
from pydicom.dataset import Dataset

from media.imaging.errors import RenderError
from media.imaging.source import Image, finite

Grey8 = NDArray[np.uint8]
Floats = NDArray[np.float32]


def to_grey8(
    image: Image, stored: NDArray[Any], frame: int, window: tuple[float, float] | None
) -> Grey8:
    """Render one decoded greyscale frame to 8 bits. `window` is the caller's (centre,
    width), applied with the LINEAR function of C.11.2.1.2.1; None: the file's own."""
    values = modality(image.ds, stored, frame)
    if window is not None:
        grey = linear(values, *window)
    else:
        voi = _file_voi(image.ds, values, frame)
        grey = _full_range(image.ds, values, stored) if voi is None else voi
    out = to_uint8(grey)
    if image.photometric == "MONOCHROME1":
        np.subtract(255, out, out=out)
    return out


def modality(ds: Dataset, stored: NDArray[Any], frame: int) -> Floats:
    """The Modality LUT (C.11.1): its sequence, else rescale slope and intercept."""
    seq = ds.get("ModalityLUTSequence")
    if seq:
        signed = int(ds.get("PixelRepresentation") or 0) == 1
        first, table, _ = lut(seq[0], ds, "Modality LUT", signed=signed)
        return apply_lut(stored, first, table)
    item = _frame_group(ds, frame, "PixelValueTransformationSequence")
    source = ds if "RescaleSlope" in ds or item is None else item
    slope = finite(source.get("RescaleSlope", 1.0) or 1.0, "Rescale Slope")
    intercept = finite(source.get("RescaleIntercept", 0.0) or 0.0, "Rescale Intercept")
    values = stored.astype(np.float32)
    if slope != 1.0:
        values *= np.float32(slope)
    if intercept != 0.0:
        values += np.float32(intercept)
    return values


def linear(x: Floats, centre: float, width: float) -> Floats:
    """PS3.3 C.11.2.1.2.1, output range 0..255: the DICOM LINEAR window (width >= 1)."""
    if width < 1:
        raise RenderError(f"a LINEAR window needs a width of at least 1, not {width}")
    lo = centre - 0.5 - (width - 1) / 2
    if width == 1:  # the formula divides by zero: the step its two other clauses define
        step: Floats = np.where(x <= lo, 0.0, 255.0).astype(np.float32)
        return step
    # ((x - (c - 0.5)) / (w - 1) + 0.5) * 255 as one multiply and one add, in place.
    scale = 255 / (width - 1)
    y = x * np.float32(scale)
    y += np.float32((0.5 - (centre - 0.5) / (width - 1)) * 255)
    # Exact between the clauses' bounds; clipping gives the clauses' 0 and 255 beyond them.
    np.clip(y, 0, 255, out=y)
    return y


def linear_exact(x: Floats, centre: float, width: float) -> Floats:
    """PS3.3 C.11.2.1.3.2: LINEAR_EXACT (width > 0)."""
    if width <= 0:
        raise RenderError(f"a LINEAR_EXACT window needs a width above 0, not {width}")
    y = ((x - np.float32(centre)) / np.float32(width) + np.float32(0.5)) * 255
    clipped: Floats = np.clip(y, 0, 255).astype(np.float32)
    return clipped


def sigmoid(x: Floats, centre: float, width: float) -> Floats:
    """PS3.3 C.11.2.1.3.1: SIGMOID (width > 0)."""
    if width <= 0:
        raise RenderError(f"a SIGMOID window needs a width above 0, not {width}")
    exponent = np.clip(-4 * (x - np.float32(centre)) / np.float32(width), -80, 80)
    y: Floats = (255 / (1 + np.exp(exponent))).astype(np.float32)
    return y


def to_uint8(y: Floats) -> Grey8:
    """Round to the nearest grey level (halves up) and clip to 0..255."""
    rounded = y + np.float32(0.5)
    np.floor(rounded, out=rounded)
    np.clip(rounded, 0, 255, out=rounded)
    out: Grey8 = rounded.astype(np.uint8)
    return out


def lut(
    item: Dataset, ds: Dataset, name: str, *, signed: bool
) -> tuple[int, NDArray[np.int64], int]:
    """A LUT item's (first mapped value, table, bits per entry), checked against its
    descriptor (C.11.1.1.1): entries, first mapped value (SS when the values it maps are
    `signed`, else US), bits 8..16."""
    descriptor = item.get("LUTDescriptor")
    data = item.get("LUTData")
    if descriptor is None or data is None or len(descriptor) != 3:
        raise RenderError(f"the {name} has no valid LUT Descriptor and LUT Data")
    entries, first, bits = (int(v) for v in descriptor)
    entries = entries or 2**16
    if signed and first >= 2**15:  # read as US by pydicom, meant as SS
        first -= 2**16
    if not 8 <= bits <= 16:
        raise RenderError(f"the {name} has {bits} bits per entry")
    if isinstance(data, bytes | bytearray):
        little = getattr(ds, "original_encoding", (None, True))[1] is not False
        if len(data) == entries and bits == 8:
            table = np.frombuffer(data, np.uint8)
        else:
            table = np.frombuffer(data[: len(data) // 2 * 2], "<u2" if little else ">u2")
    else:
        values = data if isinstance(data, list | tuple) or hasattr(data, "__len__") else [data]
        table = np.asarray([int(v) for v in values], dtype=np.int64)
    if len(table) < entries:
        raise RenderError(f"the {name} has {len(table)} entries, {entries} declared")
    return first, table[:entries].astype(np.int64), bits


def apply_lut(x: NDArray[Any], first: int, table: NDArray[np.int64]) -> Floats:
    """Map values through a LUT: below the first mapped value the first entry, beyond the
    last the last (C.11.1.1.1)."""
    index = np.clip(np.floor(x.astype(np.float64)) - first, 0, len(table) - 1)
    mapped: Floats = table[index.astype(np.intp)].astype(np.float32)
    return mapped


def _file_voi(ds: Dataset, values: Floats, frame: int) -> Floats | None:
    seq = ds.get("VOILUTSequence")
    if seq:
        # Its input is the Modality LUT's output: signed when that can be negative.
        signed = int(ds.get("PixelRepresentation") or 0) == 1 or float(values.min()) < 0
        first, table, bits = lut(seq[0], ds, "VOI LUT", signed=signed)
        return apply_lut(values, first, table) * np.float32(255 / (2**bits - 1))
    source: Dataset | None = ds
    if ds.get("WindowCenter") is None or ds.get("WindowWidth") is None:
        source = _frame_group(ds, frame, "FrameVOILUTSequence")
    if source is None or source.get("WindowCenter") is None or not source.get("WindowWidth"):
        return None
    centre = finite(_first(source.WindowCenter), "Window Center")
    width = finite(_first(source.WindowWidth), "Window Width")
    function = str(source.get("VOILUTFunction") or "LINEAR").strip().upper()
    if function == "SIGMOID":
        return sigmoid(values, centre, width)
    if function == "LINEAR_EXACT":
        return linear_exact(values, centre, width)
    return linear(values, centre, width)


def _full_range(ds: Dataset, values: Floats, stored: NDArray[Any]) -> Floats:
    """The frame's minimum to 0 and maximum to 255; a flat frame is black (0)."""
    considered = values
    padding = ds.get("PixelPaddingValue")
    if padding is not None and not isinstance(padding, bytes | bytearray):
        limit = ds.get("PixelPaddingRangeLimit", padding)
        lo, hi = sorted((int(padding), int(limit)))
        kept = (stored < lo) | (stored > hi)
        if kept.any():
            considered = values[kept]
    low, high = float(considered.min()), float(considered.max())
    if high <= low:
        return np.zeros_like(values)
    return (values - np.float32(low)) * np.float32(255 / (high - low))


def _frame_group(ds: Dataset, frame: int, group: str) -> Dataset | None:
    """The item of a functional group macro for `frame`: per-frame, else shared."""
    for name, index in (
        ("PerFrameFunctionalGroupsSequence", frame),
        ("SharedFunctionalGroupsSequence", 0),
    ):
        seq = ds.get(name)
        if seq and index < len(seq):
            items = seq[index].get(group)
            if items:
                item: Dataset = items[0]
                return item
    return None


def _first(value: Any) -> Any:
    """The first of a multi-valued attribute (several windows: the first is the default)."""
    if isinstance(value, str | bytes) or not hasattr(value, "__getitem__"):
        return value
    return value[0] if len(value) else None
