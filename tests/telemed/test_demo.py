"""`telemed demo` (what `make demo` runs) starts a server whose demo accounts work."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import sys
from pathlib import Path

import httpx
import pytest

from signaling.client import SignalingClient, UserCredentials
from signaling.schema import Offer, PeerJoined, PrincipalKind
from telemed.serve import DEMO_ACCOUNTS, DEMO_GATEWAY
from tests.helpers import next_of_type

pytestmark = [pytest.mark.slow, pytest.mark.cpu]


def _password(username: str) -> str:
    return next(a.password for a in DEMO_ACCOUNTS if a.username == username)


async def _read_banner(proc: asyncio.subprocess.Process) -> tuple[str, str]:
    """The banner the demo prints once it serves, and the clinic app's address in it."""
    assert proc.stdout is not None
    lines: list[str] = []
    async with asyncio.timeout(60):
        while line := (await proc.stdout.readline()).decode():
            lines.append(line)
            if line.strip().startswith("Ctrl-C"):  # the banner's last line
                banner = "".join(lines)
                match = re.search(r"clinic app:\s+(http://\S+?)/\s", banner)
                assert match is not None, banner
                return banner, match.group(1)
    raise AssertionError(f"the demo ended without printing its banner: {lines}")


async def _start_demo(data_dir: Path, *flags: str) -> asyncio.subprocess.Process:
    # Port 0: the demo binds a free port itself and prints it (no port picked and released).
    return await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "telemed",
        *flags,
        "demo",
        "--port",
        "0",
        env={**os.environ, "TELEMED_DATA_DIR": str(data_dir)},
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )


async def _stop(proc: asyncio.subprocess.Process) -> str:
    """^C, as a user stops it; what it wrote to stderr."""
    proc.send_signal(signal.SIGINT)
    async with asyncio.timeout(30):
        _, err = await proc.communicate()
    return err.decode()


async def test_demo_serves_seeded_accounts(tmp_path: Path) -> None:
    proc = await _start_demo(tmp_path)
    try:
        banner, base = await _read_banner(proc)
        async with httpx.AsyncClient(base_url=base) as http:

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
            # The demo files its request before it prints the banner.
            rows = (await http.get("/api/consultations", headers=doctor)).json()
            requested = [r for r in rows if r["state"] == "requested"]
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
        stderr = await _stop(proc)
    # Demo data is kept apart from real data, and the accounts were printed for the user.
    assert (tmp_path / "demo" / "telemed.sqlite3").exists()
    assert not (tmp_path / "telemed.sqlite3").exists()
    assert "doctor.koriyama" in banner
    # Quiet by default: no access log, no line per HTTP request of the gateway (it polls the
    # consultations every 2 s), no ICE checks.
    assert "HTTP Request:" not in stderr
    assert "/api/consultations HTTP/1.1" not in stderr
    assert "aioice" not in stderr


async def test_demo_logs_requests_when_asked_to(tmp_path: Path) -> None:
    proc = await _start_demo(tmp_path, "-v")
    try:
        # The demo files its consultation request over HTTP before it prints the banner.
        await _read_banner(proc)
    finally:
        stderr = await _stop(proc)
    assert "INFO httpx: HTTP Request: POST http://127.0.0.1:" in stderr
    assert re.search(r"INFO uvicorn\.access: .*\"POST /api/auth/login HTTP/1\.1\" 200", stderr)
