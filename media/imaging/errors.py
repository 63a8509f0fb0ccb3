"""The imaging renderer's one exception."""

from __future__ import annotations

from media.errors import MediaError


class RenderError(MediaError, ValueError):
    """A DICOM instance, frame or rendering request the renderer refuses; the message says
    why (not Part-10, no pixel data, an unsupported or undecodable transfer syntax, a frame
    out of range, an unknown preset...).

    A ``ValueError`` so that callers outside ``media`` (the server's rendered routes) catch it
    without importing this package."""
