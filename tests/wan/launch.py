"""Start a process of the bed while the server is still starting: ``python -m
tests.wan.launch URL ARGS...`` imports the gateway's stack (aiortc, PyAV, OpenCV, numpy: most
of a gateway's start on a loaded machine), waits until the server at URL takes TCP
connections, then runs ``telemed ARGS...`` (the real command line). ``telemed gateway``
refuses to start without its server, and the server takes as long to start: this lets both
start at once."""

from __future__ import annotations

import socket
import sys
import time
import urllib.parse

#: How long a process of the bed waits for the server.
SERVER_WAIT_S = 120.0


def wait_for_server(url: str, seconds: float = SERVER_WAIT_S) -> None:
    """Return once ``url``'s host and port take a TCP connection; SystemExit after
    ``seconds``."""
    parsed = urllib.parse.urlsplit(url)
    host, port = parsed.hostname or "", parsed.port or 80
    deadline = time.monotonic() + seconds
    while True:
        try:
            socket.create_connection((host, port), timeout=1.0).close()
            return
        except OSError:
            if time.monotonic() > deadline:
                raise SystemExit(f"the server at {url} did not answer in {seconds:.0f} s") from None
            time.sleep(0.1)


def main(argv: list[str]) -> int:
    import telemed.cli
    import telemed.gateway.runner  # imported now, while the server starts

    url, args = argv[0], argv[1:]
    wait_for_server(url)
    return telemed.cli.main(args)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
