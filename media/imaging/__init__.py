"""Imaging: DICOM frames rendered to JPEG or PNG for a screen (pure functions, no I/O).

:func:`render_frame` and :func:`frame_count` take a whole Part-10 file as bytes; each call is
independent (no state between calls, no global settings touched), so the server runs them in
worker threads. Everything refused raises :class:`RenderError` (a ``ValueError``).
"""

from media.imaging.errors import RenderError
from media.imaging.render import PRESETS, frame_count, render_frame

__all__ = ["PRESETS", "RenderError", "frame_count", "render_frame"]
