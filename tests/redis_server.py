"""A real Redis (Debian's ``redis-server``) for the tests: its own directory, no persistence,
on a free port of 127.0.0.1, ended with the test.

Outside CI a machine without ``redis-server`` skips the test and says why; under ``CI=true``
a missing binary fails it (``scripts/bootstrap`` installs the package)."""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import socket
import subprocess
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest
import redis.asyncio as aioredis


@dataclass(frozen=True)
class RedisServer:
    port: int
    proc: subprocess.Popen[bytes]

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"


def _binary() -> str:
    binary = shutil.which("redis-server")
    if binary is None:
        why = "redis-server is not installed (Debian package redis-server; bootstrap installs it)"
        if os.environ.get("CI"):
            pytest.fail(f"CI must run the Redis hub tests: {why}")
        pytest.skip(why)
    return binary


def _free_port() -> int:
    # redis-server takes a port number, not a bound socket: a port is picked here and the
    # start retried when another process took it meanwhile (redis-server then exits).
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def _answers(url: str) -> bool:
    client = aioredis.Redis.from_url(url)
    try:
        return bool(await client.ping())
    except (aioredis.ConnectionError, OSError):
        return False
    finally:
        await client.aclose()


@asynccontextmanager
async def redis_server(directory: Path) -> AsyncIterator[RedisServer]:
    """A running Redis; stopped (and awaited) when the block ends."""
    binary = _binary()
    os.makedirs(directory, exist_ok=True)
    for _ in range(3):
        port = _free_port()
        proc = subprocess.Popen(
            [
                binary,
                "--bind",
                "127.0.0.1",
                "--port",
                str(port),
                "--dir",
                str(directory),
                "--save",
                "",
                "--appendonly",
                "no",
                "--protected-mode",
                "no",
                "--logfile",
                str(directory / f"redis-{port}.log"),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        server = RedisServer(port, proc)
        try:
            for _ in range(400):
                if proc.poll() is not None:
                    break  # the port was taken: try another
                if await _answers(server.url):
                    yield server
                    return
                await asyncio.sleep(0.05)
        finally:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                await asyncio.to_thread(proc.wait, 10)
    raise RuntimeError(f"redis-server did not start (see {directory})")
