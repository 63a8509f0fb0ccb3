"""The composition root: settings, the ``telemed`` command, and the wiring of
``devices``, ``media`` and ``signaling`` (which never import each other)."""

__version__ = "0.1.0"
