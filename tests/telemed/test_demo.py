"""`telemed demo` (what `make demo` runs) starts a server whose demo accounts work."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from signaling.client import SignalingClient, UserCredentials
from signaling.schema import Offer, PeerJoined, PrincipalKind
from telemed.serve import DEMO_ACCOUNTS, DEMO_GATEWAY
from tests.helpers import next_of_type

pytestmark = pytest.mark.slow


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _password(username: str) -> str:
    return next(a.password for a in DEMO_ACCOUNTS if a.username == username)


async def test_demo_serves_seeded_accounts(tmp_path: Path) -> None:
    port = _free_port()
    env = {**os.environ, "TELEMED_DATA_DIR": str(tmp_path)}
    proc = subprocess.Popen(
        [sys.executable, "-m", "telemed", "demo", "--port", str(port)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        async with httpx.AsyncClient(base_url=base) as http:
            for _ in range(300):
                try:
                    await http.get("/healthz")
                    break
                except httpx.TransportError:
                    await asyncio.sleep(0.05)

            async def login(user: str) -> dict[str, str]:
                r = await http.post(
                    "/api/auth/login", json={"username": user, "password": _password(user)}
                )
                assert r.status_code == 200, r.text
                return {"Authorization": f"Bearer {r.json()['token']}"}

            page = await http.get("/")
            assert page.status_code == 200 and "js/app.js" in page.text  # the clinic app

            # The demo's Wonju request waits for Koriyama; accepting it brings the bedside.
            doctor = await login("doctor.koriyama")
            requested: list[dict[str, str]] = []
            for _ in range(100):  # the demo files its request right after the server is up
                rows = (await http.get("/api/consultations", headers=doctor)).json()
                requested = [r for r in rows if r["state"] == "requested"]
                if requested:
                    break
                await asyncio.sleep(0.1)
            (request,) = requested
            assert (request["requesting_site"], request["consulting_site"]) == (
                "wonju",
                "koriyama",
            )
            accepted = await http.post(f"/api/consultations/{request['id']}/accept", headers=doctor)
            assert accepted.json()["state"] == "active"
            client = SignalingClient(
                base, UserCredentials("doctor.koriyama", _password("doctor.koriyama"))
            )
            await client.start()
            try:
                joined = await client.join(request["id"])
                gateways = [p for p in joined.peers if p.kind is PrincipalKind.GATEWAY]
                while not gateways:  # the gateway looks for its site's consultation every 2 s
                    seen = await next_of_type(client.recv, PeerJoined, timeout=15)
                    if seen.peer.kind is PrincipalKind.GATEWAY:
                        gateways.append(seen.peer)
                assert gateways[0].name == DEMO_GATEWAY[0]
                offer = await next_of_type(client.recv, Offer, timeout=15)
                assert "m=video" in offer.sdp  # the demo camera comes with it
            finally:
                await client.close()
    finally:
        proc.send_signal(signal.SIGINT)
        _, stderr = proc.communicate(timeout=15)
    # Demo data is kept apart from real data, and the accounts were printed for the user.
    assert (tmp_path / "demo" / "telemed.sqlite3").exists()
    assert not (tmp_path / "telemed.sqlite3").exists()
    assert b"doctor.koriyama" in stderr
