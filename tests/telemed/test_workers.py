"""``telemed serve --workers N``: N processes on one port, rooms shared through Redis; a
killed worker's peers are reported left to the others, and its clients come back."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import websockets
from websockets.asyncio.client import ClientConnection

from signaling.auth import SecretHasher
from signaling.schema import PROTOCOL_VERSION, Role
from signaling.storage import accounts
from signaling.storage.database import Database, sqlite_url
from tests.helpers import PASSWORD, SECRET, TEST_HASH_COST, eventually, run_telemed
from tests.processes import listening, port_of, start_serve
from tests.redis_server import redis_server
from tests.signaling.sockets import recv


@pytest.mark.cpu
def test_workers_need_a_shared_hub(tmp_path: Path) -> None:
    done = run_telemed("serve", "--workers", "2", "--port", "0", data_dir=tmp_path)
    assert done.returncode == 2, done.stderr
    assert "--workers 2 needs hub_url" in done.stderr


def _children(pid: int) -> list[int]:
    text = Path(f"/proc/{pid}/task/{pid}/children").read_text()
    return [int(p) for p in text.split()]


@contextlib.asynccontextmanager
async def _workers(tmp_path: Path, redis_url: str) -> AsyncIterator[tuple[str, int]]:
    """``telemed serve --workers 2`` on a port bound here; its base URL and its pid."""
    env = {
        **os.environ,
        "TELEMED_DATA_DIR": str(tmp_path / "data"),
        "TELEMED_SECRET_KEY": SECRET,
        "TELEMED_HUB_URL": redis_url,
        "TELEMED_SERVER__HUB_LIVENESS_S": "4",
        "TELEMED_LOG_LEVEL": "warning",
    }
    sock = listening()
    port = port_of(sock)
    proc = start_serve(sock, "--workers", "2", env=env)
    base = f"http://127.0.0.1:{port}"
    try:

        async def healthy() -> bool:
            async with httpx.AsyncClient() as http:
                try:
                    return (await http.get(f"{base}/healthz")).status_code == 200
                except httpx.TransportError:
                    return False

        # (Each worker imports the whole server: slow on a loaded machine.)
        await eventually(healthy, timeout=180)
        yield base, proc.pid
    finally:
        proc.terminate()
        await asyncio.to_thread(proc.wait, 30)


async def _hello(base: str, token: str) -> tuple[ClientConnection, dict[str, Any]]:
    ws = await websockets.connect(base.replace("http", "ws") + "/ws")
    await ws.send(json.dumps({"type": "hello", "v": PROTOCOL_VERSION, "token": token}))
    welcome = await recv(ws, timeout=10)
    assert welcome["type"] == "welcome", welcome
    return ws, welcome


def _process(peer_id: str) -> str:
    return peer_id.split("-")[1]


async def _next(ws: ClientConnection, kind: str) -> dict[str, Any]:
    while True:
        message = await recv(ws, timeout=20)
        if message["type"] == kind:
            return message


@pytest.mark.slow
async def test_two_workers_share_a_room_and_survive_a_kill(tmp_path: Path) -> None:
    async with (
        redis_server(tmp_path / "redis") as redis,
        _workers(tmp_path, redis.url) as (
            base,
            pid,
        ),
    ):
        db = Database(sqlite_url(tmp_path / "data" / "telemed.sqlite3"))
        hasher = SecretHasher(TEST_HASH_COST)
        try:
            for name, role, site in (
                ("dk", Role.DOCTOR, "koriyama"),
                ("tw", Role.TECHNICIAN, "wonju"),
            ):
                await accounts.add_user(db, name, PASSWORD, role, site, name, hasher)
        finally:
            await db.close()
        tokens: dict[str, str] = {}
        async with httpx.AsyncClient(base_url=base, timeout=30) as http:
            for name in ("dk", "tw"):
                login = await http.post(
                    "/api/auth/login", json={"username": name, "password": PASSWORD}
                )
                tokens[name] = login.json()["token"]
            auth = {"Authorization": f"Bearer {tokens['tw']}"}
            body = {"consulting_site": "koriyama", "consent_cross_border": True, "reason": "x"}
            cid = (await http.post("/api/consultations", json=body, headers=auth)).json()["id"]
            auth = {"Authorization": f"Bearer {tokens['dk']}"}
            accepted = await http.post(f"/api/consultations/{cid}/accept", headers=auth)
            assert accepted.status_code == 200, accepted.text

        # One socket on each worker: the kernel spreads connections; keep trying.
        tw, tw_welcome = await _hello(base, tokens["tw"])
        spare: list[ClientConnection] = []

        async def on_the_other_worker() -> tuple[ClientConnection, dict[str, Any]] | None:
            ws, welcome = await _hello(base, tokens["dk"])
            if _process(welcome["peer_id"]) != _process(tw_welcome["peer_id"]):
                return ws, welcome
            spare.append(ws)
            if len(spare) >= 4:  # the account's cap: close the ones on the same worker
                for old in spare:
                    await old.close()
                spare.clear()
            return None

        dk, dk_welcome = await eventually(on_the_other_worker, timeout=60)
        for ws in spare:
            await ws.close()
        for ws in (tw, dk):
            await ws.send(json.dumps({"type": "join", "consultation_id": cid}))
            await _next(ws, "joined")
        await _next(tw, "peer-joined")
        await tw.send(json.dumps({"type": "offer", "to": dk_welcome["peer_id"], "sdp": "o"}))
        assert (await _next(dk, "offer"))["from"] == tw_welcome["peer_id"]

        # Kill a worker: the client on the other one sees its peer leave, then come back.
        victim = _children(pid)[0]
        os.kill(victim, signal.SIGKILL)
        with contextlib.suppress(websockets.ConnectionClosed):
            await tw.send(json.dumps({"type": "ping", "nonce": 1}))
        with contextlib.suppress(websockets.ConnectionClosed):
            await dk.send(json.dumps({"type": "ping", "nonce": 1}))
        # Which one was on the killed worker: its socket ends.
        survivor, moved, moved_token = tw, dk, tokens["dk"]
        try:
            await _next(tw, "pong")
        except websockets.ConnectionClosed:
            survivor, moved, moved_token = dk, tw, tokens["tw"]
        left = await _next(survivor, "peer-left")
        assert left["reason"] == "server-lost"
        back, _ = await eventually(lambda: _hello(base, moved_token), timeout=60)
        await back.send(json.dumps({"type": "join", "consultation_id": cid}))
        await _next(back, "joined")
        await _next(survivor, "peer-joined")
        for ws in (survivor, back, moved):
            await ws.close()
