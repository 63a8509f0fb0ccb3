"""Alarm acknowledgements and limit changes through /ws on a real server: a doctor of the
room acknowledges, a doctor of the consulting site changes limits; both are audited and
reach the room's gateways only, with ``from`` and ``by`` set; anyone else is refused with a
reason, and the refusal audited."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest_asyncio
from sqlalchemy import select
from websockets.asyncio.client import ClientConnection

from signaling.schema import Role
from signaling.storage.models import AuditEventRow
from tests.helpers import LiveServer, make_config, run_server
from tests.signaling.sockets import act, connect, join, nothing_pending, recv, request_consultation

KEY = "gateway-key-0123456789abcdef-0123456789"
LIMITS = {
    "type": "alarm-limits",
    "limits": [{"code": "spo2", "low": 88.0, "delay_s": 15.0}, {"code": "heart_rate", "high": 130}],
}


class Room:
    def __init__(self, server: LiveServer) -> None:
        self.server = server
        self.sockets: dict[str, ClientConnection] = {}
        self.peers: dict[str, str] = {}
        self.cid = ""

    async def setup(self, with_gateway: bool = True) -> None:
        tokens = {}
        for name, role, site in [
            ("dw", Role.DOCTOR, "wonju"),
            ("tw", Role.TECHNICIAN, "wonju"),
            ("dk", Role.DOCTOR, "koriyama"),
            ("tk", Role.TECHNICIAN, "koriyama"),
        ]:
            await self.server.add_user(name, role, site)
            tokens[name] = await self.server.token(name)
        self.cid = await request_consultation(self.server, tokens["tw"], "koriyama")
        await act(self.server, tokens["dk"], self.cid, "accept")
        if with_gateway:
            await self.server.add_gateway("bed-1", "wonju", KEY)
            async with httpx.AsyncClient(base_url=self.server.base_url) as http:
                answer = await http.post("/api/auth/gateway", json={"name": "bed-1", "key": KEY})
            tokens["bed-1"] = str(answer.json()["token"])
        for name, token in tokens.items():
            ws, welcome = await connect(self.server, token)
            await join(ws, self.cid)
            self.sockets[name] = ws
            self.peers[name] = welcome["peer_id"]
        # Let the room settle: each socket's peer-joined notices are read off.
        for ws in self.sockets.values():
            await ws.send(json.dumps({"type": "ping", "nonce": 1}))
            while (await recv(ws))["type"] != "pong":
                pass

    async def send(self, who: str, message: dict[str, Any]) -> None:
        await self.sockets[who].send(json.dumps(message))

    async def audit(self, action: str) -> list[tuple[str, str, dict[str, Any]]]:
        async with self.server.services.db.session() as session:
            query = select(AuditEventRow).where(AuditEventRow.action == action)
            rows = (await session.scalars(query.order_by(AuditEventRow.seq))).all()
        return [(r.actor_name, r.outcome, json.loads(r.detail)) for r in rows]

    async def close(self) -> None:
        for ws in self.sockets.values():
            await ws.close()


@pytest_asyncio.fixture
async def room(tmp_path: Path) -> AsyncIterator[Room]:
    async with run_server(make_config(tmp_path)) as server:
        r = Room(server)
        await r.setup()
        try:
            yield r
        finally:
            await r.close()


async def test_a_doctor_of_either_site_acknowledges(room: Room) -> None:
    for doctor in ("dk", "dw"):
        await room.send(doctor, {"type": "alarm-ack", "alarm_id": "limit-spo2-7", "by": "forged"})
        relayed = await recv(room.sockets["bed-1"])
        assert relayed == {
            "type": "alarm-ack",
            "alarm_id": "limit-spo2-7",
            "from": room.peers[doctor],
            "by": doctor,  # the server's word, not the sender's
        }
    for clinician in ("dk", "dw", "tk", "tw"):
        await nothing_pending(room.sockets[clinician])  # gateways only
    assert await room.audit("alarm.ack") == [
        ("dk", "ok", {"alarm": "limit-spo2-7"}),
        ("dw", "ok", {"alarm": "limit-spo2-7"}),
    ]


async def test_a_technician_may_not_acknowledge(room: Room) -> None:
    await room.send("tk", {"type": "alarm-ack", "alarm_id": "a-1"})
    error = await recv(room.sockets["tk"])
    assert error == {
        "type": "error",
        "code": "not_permitted",
        "reason": "only a doctor acknowledges an alarm",
        "ref": "alarm-ack",
    }
    await nothing_pending(room.sockets["bed-1"])
    assert await room.audit("alarm.ack") == [("tk", "denied", {"alarm": "a-1"})]


async def test_the_consulting_doctor_changes_limits(room: Room) -> None:
    await room.send("dk", LIMITS)
    relayed = await recv(room.sockets["bed-1"])
    assert relayed == {
        "type": "alarm-limits",
        "limits": [
            {"code": "spo2", "low": 88.0, "delay_s": 15.0},
            {"code": "heart_rate", "high": 130.0, "delay_s": 10.0},
        ],
        "from": room.peers["dk"],
        "by": "dk",
    }
    [(who, outcome, detail)] = await room.audit("alarm.limits")
    assert (who, outcome) == ("dk", "ok")
    assert json.loads(str(detail["limits"])) == relayed["limits"]

    for other in ("dw", "tk"):
        await room.send(other, LIMITS)
        error = await recv(room.sockets[other])
        assert (error["code"], error["reason"], error["ref"]) == (
            "not_permitted",
            "only a doctor of the consulting site changes alarm limits",
            "alarm-limits",
        )
    await nothing_pending(room.sockets["bed-1"])
    assert [(w, o) for w, o, _ in await room.audit("alarm.limits")] == [
        ("dk", "ok"),
        ("dw", "denied"),
        ("tk", "denied"),
    ]


async def test_bad_limits_and_rooms_without_a_gateway(tmp_path: Path) -> None:
    async with run_server(make_config(tmp_path)) as server:
        room = Room(server)
        await room.setup(with_gateway=False)
        try:
            await room.send("dk", {"type": "alarm-ack", "alarm_id": "a-1"})
            error = await recv(room.sockets["dk"])
            assert (error["code"], error["reason"]) == (
                "unknown_peer",
                "no bedside gateway is in this consultation",
            )
            bad_messages: list[tuple[dict[str, Any], str]] = [
                ({"type": "alarm-limits", "limits": []}, "limits"),
                ({"type": "alarm-limits", "limits": [{"code": "spo2", "low": "NaN"}]}, "low"),
                ({"type": "alarm-limits", "limits": [{"code": "spo2", "delay_s": 999}]}, "delay"),
                ({"type": "alarm-ack", "alarm_id": ""}, "alarm_id"),
            ]
            for bad, where in bad_messages:
                await room.send("dk", bad)
                error = await recv(room.sockets["dk"])
                assert error["code"] == "invalid_message" and where in error["reason"], error
            # Not in a room: refused as any relay is.
            ws, _ = await connect(server, await server.token("tk"))
            await ws.send(json.dumps({"type": "alarm-ack", "alarm_id": "a-1"}))
            assert (await recv(ws))["code"] == "not_joined"
            await ws.close()
        finally:
            await room.close()
