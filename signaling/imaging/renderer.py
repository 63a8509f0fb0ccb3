"""WADO-RS *rendered* (PS3.18 10.4.1.1.3): the renderer the server calls, and the request's
parameters.

The pixels are not signaling's to decode: the server is given a :class:`Renderer` (the
composition root passes ``media.imaging.render.render_frame``) and calls it in a worker
thread. A renderer raises ``ValueError`` (media's ``RenderError`` is one) with a reason a
person can read when it cannot render what it was given. :func:`render_request` reads and
bounds the query: ``window=centre,width[,linear]``, ``preset=soft-tissue|lung|bone|brain``
(ours), ``viewport=w,h``, ``quality=1..100``, and the ``Accept`` header (JPEG or PNG).
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Protocol

from signaling.errors import InvalidRequest

JPEG, PNG = "image/jpeg", "image/png"
#: The CT presets a renderer knows by name (``media.imaging.render.PRESETS``).
PRESETS = frozenset({"soft-tissue", "lung", "bone", "brain"})
#: The largest viewport rendered (a 4K screen); a thumbnail's default size.
MAX_VIEWPORT = 4096
THUMBNAIL = (128, 128)


class Renderer(Protocol):
    """Renders frame ``frame`` (0-based) of a whole Part 10 file to an image of
    ``media_type``; raises ``ValueError`` saying why it cannot."""

    def __call__(
        self,
        source: bytes,
        *,
        frame: int = 0,
        window: tuple[float, float] | None = None,
        preset: str | None = None,
        media_type: str = "image/jpeg",
        viewport: tuple[int, int] | None = None,
        quality: int = 90,
    ) -> bytes: ...


class NotAcceptable(InvalidRequest):
    """The ``Accept`` header allows no image type the renderer makes (406)."""


@dataclass(frozen=True)
class RenderRequest:
    window: tuple[float, float] | None = None
    preset: str | None = None
    viewport: tuple[int, int] | None = None
    quality: int = 90
    media_type: str = JPEG


def render_request(
    params: Iterable[tuple[str, str]], accept: str | None, *, thumbnail: bool = False
) -> RenderRequest:
    """The rendering a query and ``Accept`` header ask for; raises :class:`InvalidRequest`
    (a parameter) or :class:`NotAcceptable` (the media type)."""
    window: tuple[float, float] | None = None
    preset: str | None = None
    viewport: tuple[int, int] | None = THUMBNAIL if thumbnail else None
    quality = 90
    seen: set[str] = set()
    for name, value in params:
        if name in seen:
            raise InvalidRequest(f"{name[:32]} is given twice")
        seen.add(name)
        if name == "window":
            window = _window(value)
        elif name == "preset":
            if value not in PRESETS:
                raise InvalidRequest(
                    f"unknown preset {value[:32]!r}: one of {', '.join(sorted(PRESETS))}"
                )
            preset = value
        elif name == "viewport":
            viewport = _viewport(value)
        elif name == "quality":
            if not value.isdigit() or not 1 <= int(value) <= 100:
                raise InvalidRequest("quality is a whole number from 1 to 100")
            quality = int(value)
        else:
            raise InvalidRequest(
                f"unknown parameter {name[:32]!r}: window, preset, viewport or quality"
            )
    if window is not None and preset is not None:
        raise InvalidRequest("give a window or a preset, not both")
    return RenderRequest(window, preset, viewport, quality, _media_type(accept))


def _window(value: str) -> tuple[float, float]:
    parts = value.split(",")
    if len(parts) == 3:
        if parts[2].strip().lower() != "linear":
            raise InvalidRequest(f"window function {parts[2][:16]!r}: only linear is rendered")
        parts = parts[:2]
    if len(parts) != 2:
        raise InvalidRequest("window is centre,width[,linear]")
    try:
        centre, width = float(parts[0]), float(parts[1])
    except ValueError:
        raise InvalidRequest("window is centre,width[,linear]: two numbers") from None
    if not (math.isfinite(centre) and math.isfinite(width)) or abs(centre) > 1e7:
        raise InvalidRequest("window centre and width are finite numbers")
    # PS3.3 C.11.2.1.2: a LINEAR window is at least 1 wide (the renderer holds to it too).
    if not 1 <= width <= 1e7:
        raise InvalidRequest("the window width is at least 1 (a linear window)")
    return centre, width


def _viewport(value: str) -> tuple[int, int]:
    parts = value.split(",")
    if len(parts) != 2 or not all(p.isdigit() and len(p) <= 5 for p in parts):
        raise InvalidRequest("viewport is width,height in pixels")
    width, height = int(parts[0]), int(parts[1])
    if not (1 <= width <= MAX_VIEWPORT and 1 <= height <= MAX_VIEWPORT):
        raise InvalidRequest(f"viewport width and height are 1 to {MAX_VIEWPORT}")
    return width, height


def _media_type(accept: str | None) -> str:
    """JPEG unless the client prefers PNG; :class:`NotAcceptable` when it takes neither.
    Quality values are honoured to the extent of order: the first acceptable type wins."""
    if not accept or not accept.strip():
        return JPEG
    ranges = []
    for item in accept.split(",")[:32]:
        media, *params = (p.strip() for p in item.split(";"))
        q = 1.0
        for param in params:
            key, _, raw = param.partition("=")
            if key.strip().lower() == "q":
                try:
                    q = float(raw)
                except ValueError:
                    q = 0.0
        if q > 0:
            ranges.append((q, media.lower()))
    for _, media in sorted(ranges, key=lambda r: -r[0]):
        if media in (JPEG, PNG):
            return media
        if media in ("*/*", "image/*"):
            return JPEG
    raise NotAcceptable("a rendered image is image/jpeg or image/png")
