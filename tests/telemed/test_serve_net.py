"""How ``telemed serve`` listens: TCP without Nagle's delay, TLS from the settings."""

from __future__ import annotations

import asyncio
import gc
import socket
from pathlib import Path

import pytest

from tests.helpers import make_config, run_server


def _plain_socket() -> socket.socket:
    sock = socket.socket()  # proto 0, as most callers create it
    sock.bind(("127.0.0.1", 0))
    return sock


@pytest.mark.parametrize("given", [None, _plain_socket])
async def test_served_connections_send_without_delay(tmp_path: Path, given: object) -> None:
    """Every accepted connection has TCP_NODELAY: asyncio sets it only on a socket whose
    protocol is TCP, and without it each response whose headers and body are written apart
    waited for the client's delayed ACK (about 40 ms on Linux)."""
    sock = given() if callable(given) else None
    async with run_server(make_config(tmp_path), sock=sock) as server:
        port = int(server.base_url.rsplit(":", 1)[1])
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        try:
            writer.write(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
            await reader.readuntil(b"\r\n\r\n")
            local = writer.get_extra_info("sockname")
            nodelay = [
                t.get_extra_info("socket").getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY)
                for t in _server_transports()
                if t.get_extra_info("peername") == local
            ]
            assert nodelay == [1]
        finally:
            writer.close()
            await writer.wait_closed()


def _server_transports() -> list[asyncio.Transport]:
    """The transports of this process: the server runs in the test's own event loop."""
    return [o for o in gc.get_objects() if _is_transport(o)]


def _is_transport(o: object) -> bool:
    # A weak proxy whose referent is gone raises on any look at it, isinstance too (other
    # tests of the run leave such proxies about): it is no transport.
    try:
        return isinstance(o, asyncio.Transport)
    except ReferenceError:
        return False
