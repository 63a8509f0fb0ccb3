"""Logging for the ``telemed`` command: set up once, at the entry point, to stderr.

Quiet by default: a command shows its user warnings and errors; what the user needs besides
(the demo's banner, a server's address, a benchmark's progress) is printed, not logged.
``-v`` turns on the rest of our INFO lines with the server's access log and httpx's line per
request, ``-vv`` our DEBUG lines and the WebRTC stack's INFO chatter, ``-vvv`` everything.
``--log-level`` names the level outright. Servers may log JSON, one object per line.
"""

from __future__ import annotations

import json
import logging
import sys
from datetime import UTC, datetime
from typing import Literal, TextIO

LogFormat = Literal["text", "json"]

LEVELS = ("debug", "info", "warning", "error", "critical")

#: Libraries whose INFO lines are chatter (aioice logs every ICE check, aiortc every
#: transceiver change): they stay at WARNING until -vv and show DEBUG only at -vvv.
CHATTY = (
    "aioice",
    "aiortc",
    "av",
    "httpcore",
    "hpack",
    "websockets",
    "multipart",
    # pynetdicom logs every association and PDU at INFO.
    "pynetdicom",
)
#: Libraries that log at ERROR, with a traceback, what our code already refuses with a reason:
#: pydicom logs each pixel decoder that fails on a file before the renderer or the bedside
#: check raises its own error, so a hostile file would flood the log. Silent until -vv.
MUTED = ("pydicom",)

#: The loggers of the gateway's record of what left the bedside (``telemed.audit.*``).
AUDIT = "telemed.audit"

TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


class JsonFormatter(logging.Formatter):
    """One JSON object per record and line: ``time`` (UTC, ISO 8601), ``level``, ``logger``,
    ``message``, and ``exception`` (the formatted traceback) when there is one."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, str] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        elif record.stack_info:
            entry["stack"] = self.formatStack(record.stack_info)
        return json.dumps(entry, ensure_ascii=False)


class _Handler(logging.StreamHandler[TextIO]):
    """Ours, so that configuring again replaces it and leaves others' handlers alone."""


def level_for(verbosity: int, level: str | None) -> int:
    """The root level: ``level`` when named, else WARNING, INFO at -v, DEBUG from -vv."""
    if level is not None:
        if level.lower() not in LEVELS:
            raise ValueError(f"unknown log level {level!r}; one of {', '.join(LEVELS)}")
        return logging.getLevelNamesMapping()[level.upper()]
    return (logging.WARNING, logging.INFO)[verbosity] if verbosity < 2 else logging.DEBUG


def configure(
    verbosity: int = 0,
    level: str | None = None,
    fmt: LogFormat = "text",
    stream: TextIO | None = None,
) -> int:
    """Send every log record at or above the chosen level to ``stream`` (stderr) in one
    format; return the level. Call once at start-up; calling again replaces the setup."""
    root_level = level_for(verbosity, level)
    handler = _Handler(stream if stream is not None else sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else logging.Formatter(TEXT_FORMAT))
    root = logging.getLogger()
    for old in [h for h in root.handlers if isinstance(h, _Handler)]:
        root.removeHandler(old)
        old.close()
    root.addHandler(handler)
    root.setLevel(root_level)
    if verbosity >= 3:
        chatty = logging.DEBUG
    elif root_level <= logging.DEBUG:
        chatty = logging.INFO
    else:
        chatty = max(root_level, logging.WARNING)
    for name in CHATTY:
        logging.getLogger(name).setLevel(chatty)
    for name in MUTED:
        logging.getLogger(name).setLevel(chatty if verbosity >= 2 else logging.CRITICAL)
    # httpx (a line per request) and uvicorn.access (a line per response) follow the root:
    # on from -v. uvicorn's loggers have no level or handler of their own here
    # (telemed.serve.uvicorn_config), so they reach this handler in this format.
    for name in ("httpx", "uvicorn", "uvicorn.error", "uvicorn.access"):
        logging.getLogger(name).setLevel(logging.NOTSET)
    # The bedside's own record of what left it (a kept frame, a PACS pull): shown at every
    # verbosity, as the server's audit log is kept whatever its log level.
    logging.getLogger(AUDIT).setLevel(min(root_level, logging.INFO))
    return root_level
