"""The media package's exceptions: one tree, rooted at :class:`MediaError`.

Catch the root to handle anything this package raises on purpose; programming errors stay
built-in exceptions. Subclasses that refuse input also derive from ``ValueError`` (a
malformed packet or message is a bad value), so callers may catch either.
"""

from __future__ import annotations


class MediaError(Exception):
    """The root of every exception the media package raises on purpose."""
