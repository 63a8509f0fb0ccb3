"""Raw /ws and HTTP helpers for the signaling tests: what a browser tab does, byte for byte."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import httpx
import websockets
from websockets.asyncio.client import ClientConnection

from signaling.schema import PROTOCOL_VERSION, Role
from tests.helpers import LiveServer, client_tls


def auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def recv(ws: ClientConnection, timeout: float = 5.0) -> dict[str, Any]:
    async with asyncio.timeout(timeout):
        return dict(json.loads(await ws.recv()))


async def connect(server: LiveServer, token: str) -> tuple[ClientConnection, dict[str, Any]]:
    """A signed-in socket (in its site's lobby) and its ``welcome``."""
    ws = await websockets.connect(server.ws_url, max_size=None)
    await ws.send(json.dumps({"type": "hello", "v": PROTOCOL_VERSION, "token": token}))
    welcome = await recv(ws)
    assert welcome["type"] == "welcome", welcome
    return ws, welcome


async def join(ws: ClientConnection, consultation_id: str) -> dict[str, Any]:
    """Join and return the ``joined`` (messages before it are not expected)."""
    await ws.send(json.dumps({"type": "join", "consultation_id": consultation_id}))
    joined = await recv(ws)
    assert joined["type"] == "joined", joined
    return joined


async def nothing_pending(ws: ClientConnection) -> None:
    """Assert that nothing is queued for ``ws``: a ping's pong is the next message (the
    server sends in order, so anything queued before the ping would come first)."""
    await ws.send(json.dumps({"type": "ping", "nonce": 99}))
    assert await recv(ws) == {"type": "pong", "nonce": 99}


async def api(
    server: LiveServer,
    method: str,
    path: str,
    token: str,
    headers: dict[str, str] | None = None,
    **kwargs: Any,
) -> httpx.Response:
    async with httpx.AsyncClient(base_url=server.base_url, timeout=30, verify=client_tls()) as http:
        return await http.request(
            method, path, headers={**auth(token), **(headers or {})}, **kwargs
        )


async def request_consultation(server: LiveServer, token: str, consulting_site: str) -> str:
    response = await api(
        server,
        "POST",
        "/api/consultations",
        token,
        json={"consulting_site": consulting_site, "consent_cross_border": True, "reason": "ECG"},
    )
    assert response.status_code == 201, response.text
    return str(response.json()["id"])


async def act(server: LiveServer, token: str, consultation_id: str, action: str) -> None:
    response = await api(server, "POST", f"/api/consultations/{consultation_id}/{action}", token)
    assert response.status_code == 200, response.text


async def active_consultation(
    server: LiveServer, users: list[tuple[str, Role, str]]
) -> tuple[dict[str, str], str]:
    """Adds ``users`` (name, role, site) and signs each in; ``tw`` (Wonju's technician)
    requests from Koriyama and ``dk`` (Koriyama's doctor) accepts. Returns the tokens by name
    and the active consultation's id."""
    tokens: dict[str, str] = {}
    for name, role, site in users:
        await server.add_user(name, role, site)
        tokens[name] = await server.token(name)
    cid = await request_consultation(server, tokens["tw"], "koriyama")
    await act(server, tokens["dk"], cid, "accept")
    return tokens, cid
