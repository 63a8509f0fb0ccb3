"""A bedside gateway started before its server (a box that boots before the network or the
server is up) waits for the server and logs in once it answers, instead of exiting."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from pathlib import Path

import pytest

from signaling.config import ServerConfig
from tests.e2e.bedside import GATEWAY, KEY, bedside_at
from tests.helpers import eventually, make_config, run_server


async def test_a_gateway_started_before_its_server_waits_and_logs_in(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    config = make_config(tmp_path)
    async with run_server(config) as seeding:  # the gateway's account, in the database
        await seeding.add_gateway(GATEWAY, "wonju", KEY)
    # The server's port, bound but not listening yet: a connection there is refused.
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    url = f"http://127.0.0.1:{sock.getsockname()[1]}"
    caplog.set_level(logging.INFO, logger="telemed.gateway.runner")
    with contextlib.closing(sock):
        await _wait_for_server(config, sock, url, caplog)
    # Only the first refusal is a warning; the retries are INFO (a long outage at boot
    # does not fill the log with warnings).
    warnings = [r for r in caplog.records if "not reachable" in r.getMessage() and r.levelno >= 30]
    assert len(warnings) == 1


async def _wait_for_server(
    config: ServerConfig, sock: socket.socket, url: str, caplog: pytest.LogCaptureFixture
) -> None:
    async with bedside_at(url, GATEWAY, KEY) as gateway:
        await eventually(
            lambda: caplog.text.count("not reachable") >= 2, what="two refused first logins"
        )
        assert gateway.client.welcome is None
        async with run_server(config, sock=sock):
            welcome = await eventually(lambda: gateway.client.welcome, timeout=30)
            assert welcome.site == "wonju"
            assert "server " + url + " reached" in caplog.text
    # Only the first refusal is a warning; the retries are INFO (a long outage at boot
    # does not fill the log with warnings).
    warnings = [r for r in caplog.records if "not reachable" in r.getMessage() and r.levelno >= 30]
    assert len(warnings) == 1


async def test_a_refused_key_still_stops_the_gateway_at_once(tmp_path: Path) -> None:
    from signaling.client import SignalingError
    from telemed.gateway.runner import Gateway, GatewayConfig

    async with run_server(make_config(tmp_path)) as server:
        gateway = Gateway(GatewayConfig(server.base_url, GATEWAY, "not-the-key", mains_hz=50.0))
        async with asyncio.timeout(20):
            with pytest.raises(SignalingError):
                await gateway.run()
