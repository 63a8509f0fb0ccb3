"""Colour: RGB, YCbCr and palette colour frames to 8-bit RGB.

pydicom decodes with ``as_rgb=True``: YBR_FULL and YBR_FULL_422 arrive converted to RGB
(and a JPEG or JPEG 2000 decoder may have undone a colour transform itself), with the
photometric interpretation of the array reported beside it. Only what is still YCbCr after
that is converted here, so nothing is converted twice. Planar configuration 1 arrives
interleaved like 0 (pydicom returns every multi-sample array as configuration 0).
"""

from __future__ import annotations

from typing import Any

import numpy as np
from numpy.typing import NDArray
from pydicom.pixels.processing import apply_color_lut, convert_color_space

from media.imaging.errors import RenderError
from media.imaging.source import Image

Rgb8 = NDArray[np.uint8]


def to_rgb8(decoded: NDArray[Any], photometric: str, bits_stored: int) -> Rgb8:
    """A decoded 3-sample frame as 8-bit RGB; samples above 8 bits keep their top 8."""
    if photometric in ("YBR_FULL", "YBR_FULL_422"):
        decoded = convert_color_space(decoded, photometric, "RGB")
    elif photometric != "RGB":
        raise RenderError(f"a colour frame decoded as {photometric} is not rendered")
    return _top_8_bits(decoded, bits_stored)


def palette_to_rgb8(image: Image, decoded: NDArray[Any]) -> Rgb8:
    """PALETTE COLOR (PS3.3 C.7.6.3.1.5): indices through the red, green and blue LUTs
    (normal or segmented); entries of 16 bits keep their top 8."""
    try:
        rgb = apply_color_lut(decoded, image.ds)
    except Exception as exc:  # missing, short or malformed palette LUTs
        raise RenderError(f"cannot apply the palette colour LUT: {exc}") from exc
    rgb = rgb[..., :3]  # an alpha palette adds a fourth channel: not shown
    descriptor = image.ds.get("RedPaletteColorLookupTableDescriptor")
    bits = int(descriptor[2]) if descriptor is not None and len(descriptor) == 3 else 8
    if rgb.dtype.itemsize == 1 or bits <= 8:
        small: Rgb8 = np.clip(rgb, 0, 255).astype(np.uint8)
        return small
    return _top_8_bits(rgb, 16)


def _top_8_bits(arr: NDArray[Any], bits_stored: int) -> Rgb8:
    if arr.dtype.kind not in "ui":
        raise RenderError(f"colour samples of type {arr.dtype} are not rendered")
    shift = max(0, min(bits_stored, arr.dtype.itemsize * 8) - 8)
    if shift:
        arr = arr >> shift
    out: Rgb8 = np.clip(arr, 0, 255).astype(np.uint8)
    return out
