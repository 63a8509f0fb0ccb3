"""``telemed serve`` as a process of its own, for tests that kill and restart it.

The port is bound here, once, and handed to the server as an inherited listening socket
(``telemed serve --fd``): never picked and released. A restart binds the same port again
(SO_REUSEADDR) and hands the new socket over: the port is free only while the server is
down, as in any restart."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import httpx

from tests.helpers import SECRET
from tests.processes import start_serve


class ServerProcess:
    def __init__(self, data_dir: Path) -> None:
        self.env = {
            **os.environ,
            "TELEMED_DATA_DIR": str(data_dir),
            "TELEMED_SECRET_KEY": SECRET,
            "TELEMED_LOG_LEVEL": "warning",
        }
        self.port = 0  # bound at the first start
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def cli(self, *args: str, stdin: bytes = b"") -> str:
        """Run another ``telemed`` command against the same data; its standard output."""
        done = subprocess.run(
            [sys.executable, "-m", "telemed", *args],
            env=self.env,
            input=stdin,
            check=True,
            capture_output=True,
        )
        return done.stdout.decode()

    def _listening_socket(self) -> socket.socket:
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", self.port))
        sock.listen(128)
        self.port = sock.getsockname()[1]
        return sock

    async def start(self) -> None:
        """Start serving (on the port of the first start) and wait until it answers."""
        sock = self._listening_socket()
        # The server holds its own copy of the socket; start_serve closes this one.
        self.proc = start_serve(sock, env=self.env, stderr=subprocess.DEVNULL)
        async with httpx.AsyncClient() as http:
            for _ in range(300):
                try:
                    await http.get(f"{self.base_url}/healthz")
                    return
                except httpx.TransportError:
                    await asyncio.sleep(0.05)
        raise RuntimeError("server did not start")

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(10)
