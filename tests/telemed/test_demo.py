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

from telemed.serve import DEMO_ACCOUNTS, DEMO_GATEWAY

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

            tech = await login("tech.wonju")
            created = await http.post(
                "/api/consultations",
                headers=tech,
                json={"consulting_site": "koriyama", "consent_cross_border": False},
            )
            assert created.status_code == 201
            doctor = await login("doctor.koriyama")
            accepted = await http.post(
                f"/api/consultations/{created.json()['id']}/accept", headers=doctor
            )
            assert accepted.json()["state"] == "active"
            name, _, key = DEMO_GATEWAY
            gw = await http.post("/api/auth/gateway", json={"name": name, "key": key})
            assert gw.status_code == 200
    finally:
        proc.send_signal(signal.SIGINT)
        _, stderr = proc.communicate(timeout=15)
    # Demo data is kept apart from real data, and the accounts were printed for the user.
    assert (tmp_path / "demo" / "telemed.sqlite3").exists()
    assert not (tmp_path / "telemed.sqlite3").exists()
    assert b"doctor.koriyama" in stderr
