"""The audio package's exceptions, in the media tree (:mod:`media.errors`)."""

from __future__ import annotations

from media.errors import MediaError


class AudioDeviceError(MediaError, OSError):
    """An audio source or sink that cannot be opened (no such device, file or backend);
    the message names it and says why."""
