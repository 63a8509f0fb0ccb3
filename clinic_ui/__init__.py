"""The clinic browser application (HTML/CSS/JS with ja/ko/en translations), served by the
signaling server."""

from pathlib import Path

#: The files the server serves at ``/``.
STATIC_DIR = Path(__file__).parent / "static"
