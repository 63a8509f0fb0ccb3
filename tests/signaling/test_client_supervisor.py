"""The client's supervisor survives every failure but cancellation.

The defect this guards: the server refuses the token (the session ended), the client logs in
again, and the server is unreachable at that moment. ``login()`` then raised
``httpx.ConnectError`` out of the supervisor, which ended for good with nothing logged; the
client's ``recv()`` (and the gateway reading it) waited forever."""

from __future__ import annotations

import asyncio
import logging
import socket
from pathlib import Path

import httpx
import pytest

from signaling.client import ClientOptions, SignalingClient, UserCredentials
from signaling.schema import Role, Welcome
from signaling.storage import accounts
from signaling.storage.database import Database
from tests.helpers import PASSWORD, make_config, next_of_type, run_server

FAST = ClientOptions(
    heartbeat_interval_s=0.5, heartbeat_timeout_s=2.0, backoff_initial_s=1.0, backoff_max_s=1.0
)


def _listening_socket(port: int = 0) -> socket.socket:
    """A socket bound here and handed to uvicorn: the port is never picked and released."""
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", port))
    return sock


async def test_supervisor_survives_an_unreachable_server_while_logging_in_again(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="signaling.client")
    config = make_config(tmp_path)
    db = Database(config.database_url)
    try:
        await db.migrate()
        await accounts.sync_sites(db, config.sites)
        await accounts.add_user(db, "dw", PASSWORD, Role.DOCTOR, "wonju", "dw")
    finally:
        await db.close()
    sock = _listening_socket()
    port = sock.getsockname()[1]
    url = f"http://127.0.0.1:{port}"
    client = SignalingClient(url, UserCredentials("dw", PASSWORD), options=FAST)
    try:
        async with run_server(config, sock=sock):
            await client.start()
            await next_of_type(client.recv, Welcome)
            # The session ends (as after an idle timeout): the socket is closed, and the
            # client's next hello is refused, so it must log in again...
            async with httpx.AsyncClient(base_url=url) as http:
                token = client._token
                response = await http.post(
                    "/api/auth/logout", headers={"Authorization": f"Bearer {token}"}
                )
                assert response.status_code == 204
            async with asyncio.timeout(10):
                while not any("refused" in r.getMessage() for r in caplog.records):
                    await asyncio.sleep(0.01)
        # ...and the server is gone just then: the logins fail with ConnectError.
        await asyncio.sleep(3 * FAST.backoff_max_s)
        assert client._supervisor is not None and not client._supervisor.done(), (
            "the supervisor stopped"
        )
        assert any("ConnectError" in r.getMessage() for r in caplog.records), [
            r.getMessage() for r in caplog.records
        ]
        # The server returns on the same port: the client logs in and connects by itself.
        async with run_server(config, sock=_listening_socket(port)):
            welcome = await next_of_type(client.recv, Welcome, timeout=15)
            assert welcome.name == "dw"
    finally:
        await client.close()
