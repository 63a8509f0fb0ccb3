"""The servers the signaling benchmarks start, each in its own OS process so that the
benchmark's client load is not counted against the server (and the server's CPU time and
memory can be read from ``/proc``): ``telemed serve`` (one process or several on one
database, with the in-memory hub or a Redis one), the bare ``websockets`` relay of
``baseline_relay.py``, and a throwaway ``redis-server``.

Each server is handed a socket bound here (port 0, ``--fd``): the port is never picked,
closed and named again. Every context manager ends its processes on the way out.
"""

from __future__ import annotations

import asyncio
import os
import resource
import shutil
import socket
import subprocess
import sys
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
import websockets

from telemed.serve import listening_socket

SECRET = "benchmark-secret-key-0123456789-abcdefghij"  # noqa: S105 (throwaway server)
#: What the password policy of telemed users takes (12+ characters, not common).
PASSWORD = "relay-bench-strong-pass-8Kd"  # noqa: S105 (throwaway server)
_CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
_PAGE_KIB = os.sysconf("SC_PAGE_SIZE") // 1024


def raise_fd_limit() -> None:
    """Open files up to the hard limit (at most 65,536): thousands of sockets."""
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = 65536 if hard == resource.RLIM_INFINITY else min(hard, 65536)
    resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))


@dataclass
class Proc:
    """A server process and the port it serves on."""

    popen: subprocess.Popen[bytes]
    port: int
    name: str

    @property
    def pid(self) -> int:
        return self.popen.pid

    def cpu_s(self) -> float:
        """CPU time (user + system) the process has used so far, in seconds."""
        fields = Path(f"/proc/{self.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / _CLOCK_TICKS

    def rss_kib(self) -> int:
        """Resident memory now, in KiB."""
        return int(Path(f"/proc/{self.pid}/statm").read_text().split()[1]) * _PAGE_KIB


#: The source tree these benchmarks belong to: the code a server runs unless told otherwise.
SOURCE_TREE = Path(__file__).resolve().parents[1]


def _start(
    name: str,
    argv: Sequence[str],
    env: Mapping[str, str] | None = None,
    tree: Path = SOURCE_TREE,
) -> Proc:
    sock = listening_socket("127.0.0.1", 0)
    sock.listen(4096)
    try:
        popen = subprocess.Popen(
            [*argv, "--fd", str(sock.fileno())],
            # Run from the tree (its packages first on the path, before any installed copy).
            cwd=tree,
            env={**(env if env is not None else os.environ), "PYTHONPATH": str(tree)},
            stdout=subprocess.DEVNULL,
            pass_fds=[sock.fileno()],
            preexec_fn=raise_fd_limit,
        )
        return Proc(popen, int(sock.getsockname()[1]), name)
    finally:
        sock.close()  # the child has its own copy


def _stop(proc: Proc) -> None:
    proc.popen.terminate()
    try:
        proc.popen.wait(15)
    except subprocess.TimeoutExpired:
        proc.popen.kill()
        proc.popen.wait()


def telemed_env(data_dir: Path, **options: object) -> dict[str, str]:
    """The environment of a ``telemed`` process on ``data_dir``: quiet, with a throwaway
    secret, and ``options`` as server settings (``ws_rate_per_s=...`` becomes
    ``TELEMED_SERVER__WS_RATE_PER_S``)."""
    env = {
        **os.environ,
        "TELEMED_DATA_DIR": str(data_dir),
        "TELEMED_SECRET_KEY": SECRET,
        "TELEMED_LOG_LEVEL": "warning",
    }
    # The benchmarks measure; asyncio's debug mode (which the test suite sets) is not theirs.
    env.pop("PYTHONASYNCIODEBUG", None)
    for key, value in options.items():
        env[f"TELEMED_SERVER__{key.upper()}"] = str(value)
    return env


def add_user(env: Mapping[str, str], user: str, site: str, password: str = PASSWORD) -> None:
    """Create a doctor's account with ``telemed users add`` (migrates the database first)."""
    subprocess.run(
        [
            *(sys.executable, "-m", "telemed", "users", "add", user),
            *("--role", "doctor", "--site", site, "--password-stdin"),
        ],
        input=f"{password}\n".encode(),
        env=dict(env),
        check=True,
        capture_output=True,
    )


async def _wait_http(url: str, proc: Proc) -> None:
    async with httpx.AsyncClient(timeout=60) as http:
        for _ in range(600):
            if proc.popen.poll() is not None:
                raise RuntimeError(f"{proc.name} exited with {proc.popen.returncode}")
            try:
                await http.get(url)
                return
            except httpx.TransportError:
                await asyncio.sleep(0.05)
    raise RuntimeError(f"{url} did not come up")


@asynccontextmanager
async def telemed_servers(
    env: Mapping[str, str], count: int = 1, name: str = "telemed", tree: Path = SOURCE_TREE
) -> AsyncIterator[list[Proc]]:
    """``count`` ``telemed serve`` processes with ``env`` (one database: with several, the
    settings should name a shared hub), each on its own port, running the code in ``tree``
    (another checkout compares a change in the same run); ended on the way out."""
    procs: list[Proc] = []
    try:
        for i in range(count):
            label = name if count == 1 else f"{name}[{i}]"
            procs.append(_start(label, [sys.executable, "-m", "telemed", "serve"], env, tree))
        for proc in procs:
            await _wait_http(f"http://127.0.0.1:{proc.port}/healthz", proc)
        yield procs
    finally:
        for proc in procs:
            _stop(proc)


@asynccontextmanager
async def bare_relay() -> AsyncIterator[Proc]:
    """The bare ``websockets`` room relay (``baseline_relay.py``), ended on the way out."""
    proc = _start("bare", [sys.executable, "-m", "benchmarks.baseline_relay"])
    try:
        url = f"ws://127.0.0.1:{proc.port}"
        for _ in range(600):
            try:
                probe = await websockets.connect(url)
                await probe.close()
                break
            except OSError:
                if proc.popen.poll() is not None:
                    raise RuntimeError("the bare relay exited") from None
                await asyncio.sleep(0.05)
        yield proc
    finally:
        _stop(proc)


def redis_available() -> bool:
    return shutil.which("redis-server") is not None


async def _redis_ping(port: int) -> bool:
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
    except OSError:
        return False
    try:
        writer.write(b"PING\r\n")
        await writer.drain()
        return (await reader.readline()).startswith(b"+PONG")
    finally:
        writer.close()


@asynccontextmanager
async def redis_server(directory: Path) -> AsyncIterator[str]:
    """A ``redis-server`` with nothing persisted, working in ``directory``; yields its URL.

    Redis binds its own port: one found free here is named to it (the one place the
    benchmarks do so; a clash is retried with another)."""
    for _ in range(5):
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = int(probe.getsockname()[1])
        popen = subprocess.Popen(
            [
                *("redis-server", "--port", str(port), "--bind", "127.0.0.1"),
                *("--save", "", "--appendonly", "no", "--dir", str(directory)),
                *("--maxclients", "20000", "--loglevel", "warning"),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            preexec_fn=raise_fd_limit,
        )
        try:
            for _ in range(200):
                if popen.poll() is not None or await _redis_ping(port):
                    break
                await asyncio.sleep(0.025)
            if popen.poll() is None:
                yield f"redis://127.0.0.1:{port}/0"
                return
        finally:
            if popen.poll() is None:
                popen.terminate()
                popen.wait(10)
    raise RuntimeError("redis-server did not start")


def hub_url_setting() -> str | None:
    """The environment variable naming the server's hub (``hub_url``), or None while the
    server has no such setting (then only the in-memory hub exists)."""
    from signaling.config import ServerOptions
    from telemed.settings import Settings

    if "hub_url" in ServerOptions.model_fields:
        return "TELEMED_SERVER__HUB_URL"
    if "hub_url" in Settings.model_fields:
        return "TELEMED_HUB_URL"
    return None
