"""The media package's exceptions: one tree, rooted at :class:`MediaError`.

Catch the root to handle anything this package raises on purpose; programming errors stay
built-in exceptions. Subclasses that refuse input also derive from ``ValueError`` (a
malformed packet or message is a bad value), so callers may catch either; the others derive
from the built-in their callers caught before the tree existed. What a live path meets
(a malformed packet, a lost frame) is counted and logged where it happens, not raised on::

    MediaError
    ├── WireError              (ValueError)   a packet that is not a waveform chunk of ours
    ├── EventError             (ValueError)   an events-channel message that is not one of
    │                                         ours (defined in :mod:`media.rtc.events`)
    ├── WaveformError          (ValueError)   a signal the waveform pipeline cannot process
    ├── RenderError            (ValueError)   a DICOM instance or rendering request the
    │                                         renderer refuses (defined in
    │                                         :mod:`media.imaging.errors`)
    ├── VideoSourceError       (OSError)      a camera, file or stream that cannot be opened
    └── ReceiverUnsupported    (RuntimeError) the installed aiortc lacks what we reach into
"""

from __future__ import annotations


class MediaError(Exception):
    """The root of every exception the media package raises on purpose."""


class WireError(MediaError, ValueError):
    """A packet that is not a version-1 waveform chunk; the message says why."""


class WaveformError(MediaError, ValueError):
    """A signal the waveform pipeline cannot process (e.g. a sample rate too low for the
    filter asked for); the message says why."""


class VideoSourceError(MediaError, OSError):
    """A camera, video file or stream URL that cannot be opened."""


class ReceiverUnsupported(MediaError, RuntimeError):
    """The installed aiortc does not have the receiver internals this package replaces (the
    jitter buffer): a version this code was not written for."""
