"""A real coturn on 127.0.0.1 with ``use-auth-secret``, which a test or a benchmark can stop and
start again on the same port (a TURN server crash and its return). Debian's ``coturn``
(``scripts/bootstrap`` installs it)."""

from __future__ import annotations

import os
import shutil
import socket
import struct
import subprocess
import time
from pathlib import Path

TURN_SECRET = "coturn-shared-secret-for-tests"  # noqa: S105 (a throwaway coturn on loopback)


def free_udp_port() -> int:
    # coturn takes a port number, not a socket: the one place a port is picked and released.
    # A clash (another process taking it meanwhile) fails the test loudly, never silently.
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class CoturnMissing(RuntimeError):
    pass


class Coturn:
    """``start`` runs coturn on :attr:`port`; ``stop`` ends it (SIGTERM, then waits). Both may
    be called again. Raises :class:`CoturnMissing` when ``turnserver`` is not installed."""

    def __init__(self, workdir: Path) -> None:
        binary = shutil.which("turnserver")
        if binary is None:
            raise CoturnMissing("coturn is not installed (scripts/bootstrap installs it)")
        self._binary = binary
        self._workdir = workdir
        self.port = free_udp_port()
        self._proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        assert self._proc is None
        self._proc = subprocess.Popen(
            [
                self._binary,
                "-n",
                "--listening-ip=127.0.0.1",
                f"--listening-port={self.port}",
                "--relay-ip=127.0.0.1",
                "--min-port=49152",
                "--max-port=49999",
                "--use-auth-secret",
                f"--static-auth-secret={TURN_SECRET}",
                "--realm=telemed",
                "--allow-loopback-peers",
                "--no-tls",
                "--no-dtls",
                "--no-cli",
                f"--pidfile={self._workdir / 'turn.pid'}",
                f"--log-file={self._workdir / 'turn.log'}",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )

    def wait_ready(self, timeout_s: float = 30.0) -> None:
        """Block until coturn answers a STUN Binding request on its port (it binds some time
        after it starts, longer on a loaded machine; a TURN request sent before then is lost
        and retransmitted for seconds). Raises RuntimeError when it does not by
        ``timeout_s``, or has exited."""
        request = struct.pack(">HHI", 0x0001, 0, 0x2112A442) + os.urandom(12)
        deadline = time.monotonic() + timeout_s
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            sock.settimeout(0.2)
            while time.monotonic() < deadline:
                if self._proc is not None and self._proc.poll() is not None:
                    raise RuntimeError(f"coturn exited with status {self._proc.returncode}")
                try:
                    sock.sendto(request, ("127.0.0.1", self.port))
                    answer = sock.recv(2048)
                except OSError:  # refused (not bound yet) or timed out: ask again
                    time.sleep(0.05)
                    continue
                if answer[8:20] == request[8:20]:
                    return
        raise RuntimeError(f"coturn did not answer on port {self.port} within {timeout_s} s")

    def stop(self) -> None:
        if self._proc is not None:
            self._proc.terminate()
            self._proc.wait(10)
            self._proc = None
