"""Starting ``telemed serve`` as a process of its own on a port bound here (the port is bound
once and handed over with ``--fd``, never picked, closed and named)."""

from __future__ import annotations

import socket
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import IO


def listening(backlog: int = 128) -> socket.socket:
    """A socket listening on a port of 127.0.0.1 the kernel picked, to hand to a process."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.bind(("127.0.0.1", 0))
    sock.listen(backlog)
    return sock


def port_of(sock: socket.socket) -> int:
    return int(sock.getsockname()[1])


def start_serve(
    sock: socket.socket,
    *serve_args: str,
    env: Mapping[str, str],
    config: Path | None = None,
    stdout: int | IO[bytes] | None = subprocess.DEVNULL,
    stderr: int | IO[bytes] | None = None,
) -> subprocess.Popen[bytes]:
    """``telemed [--config CONFIG] serve --fd SOCK SERVE_ARGS...`` with ``env``, serving on
    ``sock``, which this closes once the process holds it (also when it fails to start)."""
    options = ("--config", str(config)) if config is not None else ()
    try:
        return subprocess.Popen(
            [
                *(sys.executable, "-m", "telemed", *options),
                *("serve", "--fd", str(sock.fileno()), *serve_args),
            ],
            env=dict(env),
            pass_fds=(sock.fileno(),),
            stdout=stdout,
            stderr=stderr,
        )
    finally:
        sock.close()
