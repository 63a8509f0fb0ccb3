"""The lobby: every change of a consultation reaches the signed-in clinicians of its two sites
over /ws, each told what they may do, and so do the sites' gateways (they follow their site's
consultations by these); other sites and engineers hear nothing."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest_asyncio
from websockets.asyncio.client import ClientConnection

from signaling.config import DEFAULT_SITES, SiteConfig
from signaling.schema import Role
from tests.helpers import LiveServer, make_config, run_server
from tests.signaling.sockets import (
    act,
    api,
    connect,
    join,
    nothing_pending,
    recv,
    request_consultation,
)

SEOUL = SiteConfig(
    code="seoul", name="Seoul", country="KR", language="ko", timezone="Asia/Seoul", mains_hz=60
)
USERS = [
    ("dw", Role.DOCTOR, "wonju"),
    ("tw", Role.TECHNICIAN, "wonju"),
    ("dk", Role.DOCTOR, "koriyama"),
    ("ew", Role.ENGINEER, "wonju"),
    ("ds", Role.DOCTOR, "seoul"),
    ("as", Role.ADMIN, "seoul"),
]


@pytest_asyncio.fixture
async def three_sites(tmp_path: Path) -> AsyncIterator[LiveServer]:
    async with run_server(make_config(tmp_path, sites=(*DEFAULT_SITES, SEOUL))) as server:
        yield server


class Lobby:
    """One signed-in socket per user, and one of a Wonju gateway."""

    def __init__(self, server: LiveServer) -> None:
        self.server = server
        self.tokens: dict[str, str] = {}
        self.sockets: dict[str, ClientConnection] = {}

    async def open(self) -> None:
        for name, role, site in USERS:
            await self.server.add_user(name, role, site)
            self.tokens[name] = await self.server.token(name)
            self.sockets[name], _ = await connect(self.server, self.tokens[name])
        await self.server.add_gateway("bed-1", "wonju", "k" * 40)
        async with httpx.AsyncClient(base_url=self.server.base_url) as http:
            login = await http.post("/api/auth/gateway", json={"name": "bed-1", "key": "k" * 40})
        self.tokens["bed-1"] = login.json()["token"]
        self.sockets["bed-1"], _ = await connect(self.server, self.tokens["bed-1"])

    async def close(self) -> None:
        for ws in self.sockets.values():
            await ws.close()

    async def as_seen_over_http(self, name: str, cid: str) -> dict[str, Any]:
        response = await api(self.server, "GET", f"/api/consultations/{cid}", self.tokens[name])
        assert response.status_code == 200, response.text
        return dict(response.json())

    async def pushed(self, name: str, cid: str, state: str, actions: list[str]) -> None:
        """``name``'s next message is the consultation in ``state`` with ``actions``, exactly
        as the HTTP API gives it to ``name``."""
        message = await recv(self.sockets[name])
        assert message["type"] == "consultation", (name, message)
        consultation = message["consultation"]
        assert (consultation["id"], consultation["state"]) == (cid, state), name
        assert consultation["allowed_actions"] == actions, name
        assert consultation == await self.as_seen_over_http(name, cid)

    async def silent(self, *names: str) -> None:
        for name in names:
            await nothing_pending(self.sockets[name])


async def test_changes_reach_both_sites_for_each_recipient(three_sites: LiveServer) -> None:
    lobby = Lobby(three_sites)
    await lobby.open()
    try:
        cid = await request_consultation(three_sites, lobby.tokens["tw"], "koriyama")
        await lobby.pushed("dw", cid, "requested", ["cancel", "close"])
        await lobby.pushed("tw", cid, "requested", ["cancel"])
        await lobby.pushed("dk", cid, "requested", ["accept", "close"])
        await lobby.pushed("bed-1", cid, "requested", [])
        # Nulls are carried as over HTTP (the HTTP comparison above checks the rest).
        await lobby.silent("ew", "ds", "as", "bed-1")

        await act(three_sites, lobby.tokens["dk"], cid, "accept")
        await lobby.pushed("dw", cid, "active", ["close", "join"])
        await lobby.pushed("tw", cid, "active", ["join"])
        await lobby.pushed("dk", cid, "active", ["close", "join"])
        await lobby.pushed("bed-1", cid, "active", ["join"])
        await lobby.silent("ew", "ds", "as", "bed-1")

        # In a room or not: Wonju's doctor is in the room, the others in the lobby.
        joined = await join(lobby.sockets["dw"], cid)
        assert joined["chat"] == []
        await act(three_sites, lobby.tokens["dk"], cid, "close")
        state = await recv(lobby.sockets["dw"])
        assert (state["type"], state["consultation"]["state"]) == ("consultation-state", "closed")
        for name in ("dw", "tw", "dk", "bed-1"):
            await lobby.pushed(name, cid, "closed", [])
        await lobby.silent("dw", "tw", "dk", "ew", "ds", "as", "bed-1")
    finally:
        await lobby.close()


async def test_a_cancelled_request_is_pushed_too(three_sites: LiveServer) -> None:
    lobby = Lobby(three_sites)
    await lobby.open()
    try:
        cid = await request_consultation(three_sites, lobby.tokens["dw"], "koriyama")
        for name in ("dw", "tw", "dk", "bed-1"):
            assert (await recv(lobby.sockets[name]))["consultation"]["state"] == "requested"
        await act(three_sites, lobby.tokens["tw"], cid, "cancel")
        for name in ("dw", "tw", "dk", "bed-1"):
            await lobby.pushed(name, cid, "cancelled", [])
        await lobby.silent("ew", "ds", "as", "bed-1")
        # A refused change pushes nothing.
        refused = await api(
            three_sites, "POST", f"/api/consultations/{cid}/accept", lobby.tokens["dk"]
        )
        assert refused.status_code == 409
        await lobby.silent("dw", "tw", "dk")
    finally:
        await lobby.close()


async def test_a_consultation_of_other_sites_stays_there(three_sites: LiveServer) -> None:
    lobby = Lobby(three_sites)
    await lobby.open()
    try:
        cid = await request_consultation(three_sites, lobby.tokens["ds"], "koriyama")
        await lobby.pushed("ds", cid, "requested", ["cancel", "close"])
        await lobby.pushed("dk", cid, "requested", ["accept", "close"])
        # Seoul's administrator sees it (and may do nothing with it); Wonju hears nothing.
        await lobby.pushed("as", cid, "requested", [])
        await lobby.silent("dw", "tw", "ew", "bed-1")
    finally:
        await lobby.close()
