"""A real coturn with ``use-auth-secret`` grants a TURN allocation to the credentials that
``/api/ice-servers`` hands out, and refuses altered ones."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from aioice import stun
from aioice.turn import create_turn_endpoint

from signaling.config import TurnConfig
from tests.e2e.coturn import TURN_SECRET
from tests.e2e.coturn import coturn as coturn_at
from tests.helpers import make_config, run_server


@pytest.fixture
def coturn(tmp_path: Path) -> Iterator[int]:
    server = coturn_at(tmp_path)
    server.start()
    try:
        server.wait_ready()  # listening before the first allocation (retransmitted for ~10 s)
        yield server.port
    finally:
        server.stop()


async def _allocate(port: int, username: str, password: str) -> tuple[str, int]:
    transport, _ = await create_turn_endpoint(
        asyncio.DatagramProtocol, ("127.0.0.1", port), username, password
    )
    try:
        relayed: tuple[str, int] = transport.get_extra_info("sockname")
        return relayed
    finally:
        transport.close()


async def test_coturn_accepts_our_turn_rest_credentials(tmp_path: Path, coturn: int) -> None:
    turn = TurnConfig(urls=(f"turn:127.0.0.1:{coturn}?transport=udp",), secret=TURN_SECRET)
    async with run_server(make_config(tmp_path, turn=turn)) as server:
        await server.add_gateway("bedside-1", "wonju", "k" * 40)
        async with httpx.AsyncClient(base_url=server.base_url) as http:
            login = await http.post(
                "/api/auth/gateway", json={"name": "bedside-1", "key": "k" * 40}
            )
            token = login.json()["token"]
            body = (
                await http.get("/api/ice-servers", headers={"Authorization": f"Bearer {token}"})
            ).json()
    (relay,) = body["ice_servers"]
    username, credential = relay["username"], relay["credential"]

    relayed = None
    async with asyncio.timeout(10):
        while relayed is None:  # coturn may still be starting
            with contextlib.suppress(ConnectionError, OSError, asyncio.TimeoutError):
                relayed = await _allocate(coturn, username, credential)
            if relayed is None:
                await asyncio.sleep(0.2)
    assert relayed[0] == "127.0.0.1"
    assert 49152 <= relayed[1] <= 49999

    for bad_user, bad_password in (
        (username, credential[:-4] + "AAAA"),
        (username.replace(":", "0:", 1), credential),  # a later expiry than signed
    ):
        with pytest.raises(stun.TransactionFailed) as refused:
            await _allocate(coturn, bad_user, bad_password)
        assert refused.value.response.attributes["ERROR-CODE"][0] == 401
