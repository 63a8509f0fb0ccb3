"""The renderer the server's WADO-RS *rendered* routes call (contract: issue 13, section 4).

Pure: bytes in, bytes out, no state kept between calls and no global setting touched, so
calls run side by side in worker threads. Refusals raise :class:`RenderError` (a
``ValueError``) with the reason; the caller logs it and answers the client.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from types import MappingProxyType

from media.imaging.colour import palette_to_rgb8, to_rgb8
from media.imaging.errors import RenderError
from media.imaging.grey import to_grey8
from media.imaging.output import MEDIA_TYPES, check_viewport, encode, fit
from media.imaging.source import GREY, PALETTE, decode_frame, open_image, why

# CT windows (centre, width) in Hounsfield units, as viewers (OHIF, Horos) preset them.
PRESETS: Mapping[str, tuple[float, float]] = MappingProxyType(
    {
        "soft-tissue": (40.0, 400.0),
        "lung": (-600.0, 1500.0),
        "bone": (400.0, 1800.0),
        "brain": (40.0, 80.0),
    }
)


def render_frame(
    source: bytes,
    *,
    frame: int = 0,
    window: tuple[float, float] | None = None,
    preset: str | None = None,
    media_type: str = "image/jpeg",
    viewport: tuple[int, int] | None = None,
    quality: int = 90,
) -> bytes:
    """Render frame `frame` (0-based) of the Part-10 file `source` as JPEG or PNG.

    Greyscale: Modality LUT, then the window: `window` (centre, width, LINEAR) or `preset`
    (one of PRESETS; not both), else the file's own VOI, else the frame's range; MONOCHROME1
    inverted; 8 bits. Colour (RGB, YBR_FULL, YBR_FULL_422, palette) is shown as stored
    (window and preset do not apply). `viewport` (width, height): fitted inside, aspect
    kept, enlarged at most 4x. `quality` 1..100 applies to JPEG. Only the asked frame is
    decoded. Raises RenderError for anything refused.
    """
    chosen = _window(window, preset)
    if media_type not in MEDIA_TYPES:
        raise RenderError(f"media type {media_type!r} is not one of {', '.join(MEDIA_TYPES)}")
    if isinstance(quality, bool) or not isinstance(quality, int) or not 1 <= quality <= 100:
        raise RenderError(f"JPEG quality must be 1..100, not {quality!r}")
    if isinstance(frame, bool) or not isinstance(frame, int):
        raise RenderError(f"frame must be a whole number, not {frame!r}")
    check_viewport(viewport)
    with _refusing("cannot render"):
        image = open_image(source)
        decoded, photometric, bits_stored = decode_frame(image, frame)
        if image.photometric in GREY:
            pixels = to_grey8(image, decoded, frame, chosen)
        elif image.photometric == PALETTE:
            pixels = palette_to_rgb8(image, decoded)
        else:
            pixels = to_rgb8(decoded, photometric, bits_stored)
        return encode(fit(pixels, viewport), media_type, quality)


def frame_count(source: bytes) -> int:
    """How many frames the Part-10 file `source` holds (its pixel data checked to hold
    them). Raises RenderError when it has no renderable pixel data."""
    with _refusing("cannot count frames"):
        return open_image(source).frames


@contextmanager
def _refusing(what: str) -> Iterator[None]:
    """The contract's guarantee: nothing but RenderError leaves. pydicom converts a raw
    element when it is first read, so a malformed attribute can raise wherever it is
    looked at; the specific checks give the precise reasons, this one the rest."""
    try:
        yield
    except RenderError:
        raise
    except Exception as exc:  # hostile input reaching any library: the input's fault
        raise RenderError(f"{what}: {why(exc)}") from exc


def _window(window: tuple[float, float] | None, preset: str | None) -> tuple[float, float] | None:
    if preset is not None:
        if window is not None:
            raise RenderError("give a window or a preset, not both")
        if preset not in PRESETS:
            raise RenderError(f"unknown preset {preset!r}: one of {', '.join(PRESETS)}")
        return PRESETS[preset]
    if window is None:
        return None
    try:
        centre, width = (float(v) for v in window)
    except (TypeError, ValueError) as exc:
        raise RenderError(f"window must be (centre, width), not {window!r}") from exc
    if not (math.isfinite(centre) and math.isfinite(width)) or width < 1:
        raise RenderError(f"window width must be at least 1 and both finite: {window!r}")
    return centre, width
