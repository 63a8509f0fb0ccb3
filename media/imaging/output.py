"""An 8-bit frame fitted to a viewport and encoded as JPEG or PNG (OpenCV)."""

from __future__ import annotations

from typing import Any

import cv2
import numpy as np
from numpy.typing import NDArray

from media.imaging.errors import RenderError

MEDIA_TYPES = ("image/jpeg", "image/png")
# A viewport side is bounded (memory of the output); a frame is enlarged at most this much:
# past it, interpolation only adds pixels the browser can make as well.
MAX_VIEWPORT_SIDE = 8192
MAX_UPSCALE = 4.0


def check_viewport(viewport: tuple[int, int] | None) -> None:
    """Refuse a viewport that is not two positive whole numbers within the bound."""
    if viewport is None:
        return
    if (
        not isinstance(viewport, tuple | list)
        or len(viewport) != 2
        or not all(isinstance(v, int) and not isinstance(v, bool) for v in viewport)
    ):
        raise RenderError(f"viewport must be (width, height) in pixels, not {viewport!r}")
    if not all(1 <= v <= MAX_VIEWPORT_SIDE for v in viewport):
        raise RenderError(f"viewport sides must be 1..{MAX_VIEWPORT_SIDE}, not {viewport}")


def fit(pixels: NDArray[np.uint8], viewport: tuple[int, int] | None) -> NDArray[np.uint8]:
    """Scale to fit inside `viewport` (width, height), keeping the aspect ratio: down with
    INTER_AREA, up with INTER_LINEAR, and up by at most MAX_UPSCALE."""
    if viewport is None:
        return pixels
    rows, columns = pixels.shape[:2]
    scale = min(viewport[0] / columns, viewport[1] / rows, MAX_UPSCALE)
    size = (max(1, round(columns * scale)), max(1, round(rows * scale)))
    if size == (columns, rows):
        return pixels
    interpolation = cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR
    out: NDArray[np.uint8] = np.asarray(
        cv2.resize(pixels, size, interpolation=interpolation), dtype=np.uint8
    )
    return out


def encode(pixels: NDArray[np.uint8], media_type: str, quality: int) -> bytes:
    """JPEG (at `quality`) or PNG of a grey (rows, columns) or RGB (rows, columns, 3) frame."""
    if pixels.ndim == 3:
        pixels = np.asarray(cv2.cvtColor(pixels, cv2.COLOR_RGB2BGR), np.uint8)  # OpenCV: BGR
    params: list[Any]
    if media_type == "image/jpeg":
        extension, params = ".jpg", [cv2.IMWRITE_JPEG_QUALITY, quality]
    else:
        extension, params = ".png", [cv2.IMWRITE_PNG_COMPRESSION, 3]
    ok, buffer = cv2.imencode(extension, pixels, params)
    if not ok:
        raise RenderError(f"OpenCV could not encode a {pixels.shape} frame as {media_type}")
    return bytes(buffer)
