"""The /ws protocol on a real server, driven byte for byte with the `websockets` library."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import pytest_asyncio
import websockets
from sqlalchemy import select
from websockets.asyncio.client import ClientConnection

from signaling.schema import PROTOCOL_VERSION, CloseCode, Role
from signaling.storage.models import AuditEventRow
from tests.helpers import LiveServer, make_config, run_server


async def _recv(ws: ClientConnection, timeout: float = 5.0) -> dict[str, Any]:
    async with asyncio.timeout(timeout):
        return dict(json.loads(await ws.recv()))


async def _connect(server: LiveServer, token: str) -> ClientConnection:
    ws = await websockets.connect(server.ws_url)
    await ws.send(json.dumps({"type": "hello", "v": PROTOCOL_VERSION, "token": token}))
    welcome = await _recv(ws)
    assert welcome["type"] == "welcome", welcome
    return ws


async def _closed_with(ws: ClientConnection) -> int | None:
    with pytest.raises(websockets.ConnectionClosed):
        while True:
            await _recv(ws)
    return ws.close_code


class Room:
    """Two sites in an active consultation, plus an outsider in another one."""

    def __init__(self, server: LiveServer) -> None:
        self.server = server
        self.tokens: dict[str, str] = {}
        self.cid = ""
        self.other_cid = ""

    async def setup(self, accept: bool = True) -> None:
        for name, role, site in [
            ("dw", Role.DOCTOR, "wonju"),
            ("dk", Role.DOCTOR, "koriyama"),
            ("ow", Role.DOCTOR, "wonju"),
            ("ok", Role.DOCTOR, "koriyama"),
        ]:
            await self.server.add_user(name, role, site)
            self.tokens[name] = await self.server.token(name)
        self.cid = await self.consultation("dw", "dk", accept)
        self.other_cid = await self.consultation("ow", "ok", True)

    async def consultation(self, requester: str, consultant: str, accept: bool) -> str:
        async with httpx.AsyncClient(base_url=self.server.base_url) as http:
            r = await http.post(
                "/api/consultations",
                headers={"Authorization": f"Bearer {self.tokens[requester]}"},
                json={"consulting_site": "koriyama", "consent_cross_border": True},
            )
            cid = str(r.json()["id"])
            if accept:
                await http.post(
                    f"/api/consultations/{cid}/accept",
                    headers={"Authorization": f"Bearer {self.tokens[consultant]}"},
                )
        return cid

    async def joined(self, name: str, cid: str) -> tuple[ClientConnection, str]:
        ws = await _connect(self.server, self.tokens[name])
        await ws.send(json.dumps({"type": "join", "consultation_id": cid}))
        joined = await _recv(ws)
        assert joined["type"] == "joined", joined
        me = [p for p in joined["peers"] if p["name"] == name]
        return ws, me[0]["peer_id"]


@pytest_asyncio.fixture
async def room(server: LiveServer) -> AsyncIterator[Room]:
    r = Room(server)
    await r.setup()
    yield r


async def test_hello_must_come_first(server: LiveServer) -> None:
    async with websockets.connect(server.ws_url) as ws:
        await ws.send(json.dumps({"type": "join", "consultation_id": "c-1"}))
        error = await _recv(ws)
        assert (error["type"], error["code"]) == ("error", "not_authenticated")
        assert await _closed_with(ws) == CloseCode.UNAUTHORIZED


@pytest.mark.parametrize(
    ("hello", "code", "close"),
    [
        ({"v": PROTOCOL_VERSION, "token": "forged"}, "auth_failed", CloseCode.UNAUTHORIZED),
        ({"v": 99, "token": "x"}, "unsupported_version", CloseCode.UNSUPPORTED_VERSION),
    ],
)
async def test_bad_hello_is_refused(
    server: LiveServer, hello: dict[str, Any], code: str, close: int
) -> None:
    async with websockets.connect(server.ws_url) as ws:
        await ws.send(json.dumps({"type": "hello", **hello}))
        assert (await _recv(ws))["code"] == code
        assert await _closed_with(ws) == close


async def test_silent_client_is_dropped(tmp_path: Path) -> None:
    async with (
        run_server(make_config(tmp_path, ws_hello_timeout_s=0.2)) as server,
        websockets.connect(server.ws_url) as ws,
    ):
        assert await _closed_with(ws) == CloseCode.UNAUTHORIZED


async def test_bad_messages_get_reasons_then_the_socket_closes(room: Room) -> None:
    ws = await _connect(room.server, room.tokens["dw"])
    limit = room.server.config.ws_max_message_bytes
    cases = [
        ("{not json", "bad_json"),
        ("[1, 2]", "invalid_message"),
        (json.dumps({"type": "teleport"}), "unknown_type"),
        (json.dumps({"type": "welcome"}), "unexpected_type"),
        (json.dumps({"type": "offer"}), "invalid_message"),
        (json.dumps({"type": "chat", "text": "x" * (limit + 1)}), "too_large"),
        (json.dumps({"type": "offer", "sdp": "v=0"}), "not_joined"),
        (json.dumps({"type": "hello", "v": 1, "token": "t"}), "already_authenticated"),
        (json.dumps({"type": "join", "consultation_id": "c-missing"}), "not_found"),
    ]
    for text, code in cases:
        await ws.send(text)
        reply = await _recv(ws)
        assert (reply["type"], reply["code"]) == ("error", code), (text[:40], reply)
        assert reply["reason"]
    # Still served: a ping gets its pong.
    await ws.send(json.dumps({"type": "ping", "nonce": 7}))
    assert await _recv(ws) == {"type": "pong", "nonce": 7}
    # Past the limit of errors the server closes with "policy violation".
    for _ in range(room.server.config.ws_max_errors - len(cases)):
        await ws.send("nope")
    assert await _closed_with(ws) == CloseCode.POLICY_VIOLATION


async def test_relay_stays_inside_the_consultation(room: Room) -> None:
    a, a_id = await room.joined("dw", room.cid)
    b, b_id = await room.joined("dk", room.cid)
    outsider, outsider_id = await room.joined("ow", room.other_cid)
    joined_notice = await _recv(a)
    assert joined_notice["type"] == "peer-joined"
    assert joined_notice["peer"]["peer_id"] == b_id

    candidate = {
        "type": "candidate",
        "to": b_id,
        "from": "p-spoofed",
        "candidate": "candidate:1 1 udp 2130706431 127.0.0.1 50000 typ host",
        "sdp_mid": "0",
        "sdp_mline_index": 0,
    }
    await a.send(json.dumps(candidate))
    relayed = await _recv(b)
    assert relayed == {**candidate, "from": a_id}  # the server sets "from"

    await a.send(json.dumps({"type": "offer", "to": outsider_id, "sdp": "v=0"}))
    refused = await _recv(a)
    assert refused["code"] == "unknown_peer"

    await a.send(json.dumps({"type": "offer", "sdp": "v=0 broadcast"}))
    assert (await _recv(b))["sdp"] == "v=0 broadcast"
    await b.send(json.dumps({"type": "answer", "to": a_id, "sdp": "v=0 answer"}))
    assert (await _recv(a))["sdp"] == "v=0 answer"

    await a.send(json.dumps({"type": "chat", "text": "血圧は? 혈압은?"}))
    for ws in (a, b):
        chat = await _recv(ws)
        assert (chat["text"], chat["sender_name"], chat["from"]) == ("血圧は? 혈압은?", "dw", a_id)

    # The outsider got nothing of it.
    await outsider.send(json.dumps({"type": "ping", "nonce": 1}))
    assert await _recv(outsider) == {"type": "pong", "nonce": 1}

    await b.close()
    left = await _recv(a)
    assert (left["type"], left["peer_id"], left["reason"]) == ("peer-left", b_id, "disconnected")
    for ws in (a, outsider):
        await ws.close()


async def test_no_relay_before_accept_and_after_close(server: LiveServer) -> None:
    r = Room(server)
    await r.setup(accept=False)
    a, _ = await r.joined("dw", r.cid)
    b, b_id = await r.joined("dk", r.cid)
    await _recv(a)  # peer-joined
    await a.send(json.dumps({"type": "offer", "to": b_id, "sdp": "v=0"}))
    assert (await _recv(a))["code"] == "not_active"

    async with httpx.AsyncClient(base_url=server.base_url) as http:
        await http.post(
            f"/api/consultations/{r.cid}/accept",
            headers={"Authorization": f"Bearer {r.tokens['dk']}"},
        )
        for ws in (a, b):
            # The room's notice, then the lobby's (every clinician socket of the two sites).
            state = await _recv(ws)
            assert (state["type"], state["consultation"]["state"]) == (
                "consultation-state",
                "active",
            )
            update = await _recv(ws)
            assert (update["type"], update["consultation"]["state"]) == ("consultation", "active")
        await a.send(json.dumps({"type": "offer", "to": b_id, "sdp": "v=0"}))
        assert (await _recv(b))["type"] == "offer"

        await http.post(
            f"/api/consultations/{r.cid}/close",
            headers={"Authorization": f"Bearer {r.tokens['dk']}"},
        )
    for ws in (a, b):
        assert [
            (m["type"], m["consultation"]["state"]) for m in [await _recv(ws), await _recv(ws)]
        ] == [
            ("consultation-state", "closed"),
            ("consultation", "closed"),
        ]
    # The room is gone: what was meant for it is refused as ended, not as a protocol slip.
    await a.send(json.dumps({"type": "offer", "to": b_id, "sdp": "v=0"}))
    refused = await _recv(a)
    assert (refused["code"], refused["reason"]) == ("not_active", "the consultation has ended")
    await a.send(json.dumps({"type": "join", "consultation_id": r.cid}))
    assert (await _recv(a))["code"] == "not_active"
    # Leaving the ended consultation is answered, not an error; after that it is not joined.
    await a.send(json.dumps({"type": "leave", "consultation_id": r.cid}))
    assert await _recv(a) == {"type": "left", "consultation_id": r.cid}
    await a.send(json.dumps({"type": "offer", "to": b_id, "sdp": "v=0"}))
    assert (await _recv(a))["code"] == "not_joined"
    for ws in (a, b):
        await ws.close()


async def test_non_member_cannot_join(room: Room) -> None:
    await room.server.add_user("eng", Role.ENGINEER, "wonju")
    ws = await _connect(room.server, await room.server.token("eng"))
    await ws.send(json.dumps({"type": "join", "consultation_id": room.cid}))
    assert (await _recv(ws))["code"] == "not_found"
    await ws.close()
    async with room.server.services.db.session() as session:
        rows = (
            await session.scalars(
                select(AuditEventRow).where(AuditEventRow.action == "consultation.join")
            )
        ).all()
    assert [(r.actor_name, r.outcome, r.consultation_id) for r in rows] == [
        ("eng", "denied", room.cid)
    ]
    assert (await room.server.services.audit.verify()).ok


async def test_logout_closes_open_sockets(room: Room) -> None:
    ws, _ = await room.joined("dw", room.cid)
    async with httpx.AsyncClient(base_url=room.server.base_url) as http:
        r = await http.post(
            "/api/auth/logout", headers={"Authorization": f"Bearer {room.tokens['dw']}"}
        )
        assert r.status_code == 204
    assert await _closed_with(ws) == CloseCode.SESSION_EXPIRED


async def test_presence_lists_members_who_are_offline(room: Room) -> None:
    a, _ = await room.joined("dw", room.cid)
    await a.close()
    ws = await _connect(room.server, room.tokens["dk"])
    await ws.send(json.dumps({"type": "join", "consultation_id": room.cid}))
    joined = await _recv(ws)
    members = {m["name"]: m["online"] for m in joined["members"]}
    assert members == {"dw": False, "dk": True}
    await ws.close()


async def test_idle_clinician_socket_is_closed(tmp_path: Path) -> None:
    # The timeout is long enough for a login and a hello on a loaded machine (0.5 s was
    # not: the session expired before the welcome).
    async with run_server(make_config(tmp_path, inactivity_timeout_s=2.0)) as server:
        await server.add_user("dw", Role.DOCTOR, "wonju")
        ws = await _connect(server, await server.token("dw"))
        # Pings keep the link alive but are not clinician activity: pinging on, the
        # session still ends once it has been idle for the timeout.
        error: dict[str, Any] | None = None
        pongs = 0
        async with asyncio.timeout(10):
            while error is None:
                # The server may end the session while we wait between pings: its error is
                # then waiting to be read, and our ping finds the socket closed.
                with contextlib.suppress(websockets.ConnectionClosed):
                    await ws.send(json.dumps({"type": "ping", "nonce": pongs}))
                reply = await _recv(ws)
                if reply["type"] == "pong":
                    pongs += 1
                    await asyncio.sleep(0.25)
                else:
                    error = reply
        assert pongs >= 4  # pinged past half the timeout at least
        assert (error["type"], error["code"]) == ("error", "session_expired")
        assert await _closed_with(ws) == CloseCode.SESSION_EXPIRED


async def test_hello_with_a_session_idle_past_the_timeout_is_refused_and_ends_it(
    tmp_path: Path,
) -> None:
    """The session check of hello (read with other hellos in one query) still ends a
    session idle past the timeout, as the check of a single session did."""
    async with run_server(make_config(tmp_path, inactivity_timeout_s=0.5)) as server:
        await server.add_user("dw", Role.DOCTOR, "wonju")
        token = await server.token("dw")
        await asyncio.sleep(0.8)
        async with websockets.connect(server.ws_url) as ws:
            await ws.send(json.dumps({"type": "hello", "v": PROTOCOL_VERSION, "token": token}))
            error = await _recv(ws)
            assert (error["type"], error["code"]) == ("error", "session_expired")
            assert "idle" in error["reason"]
            assert await _closed_with(ws) == CloseCode.SESSION_EXPIRED
        async with httpx.AsyncClient(base_url=server.base_url) as http:
            me = await http.get("/api/auth/me", headers={"Authorization": f"Bearer {token}"})
            assert me.status_code == 401


async def test_gateway_socket_is_not_logged_out_when_idle(tmp_path: Path) -> None:
    async with run_server(make_config(tmp_path, inactivity_timeout_s=0.3)) as server:
        await server.add_gateway("bedside-1", "wonju", "k" * 40)
        async with httpx.AsyncClient(base_url=server.base_url) as http:
            login = await http.post(
                "/api/auth/gateway", json={"name": "bedside-1", "key": "k" * 40}
            )
        ws = await _connect(server, login.json()["token"])
        await asyncio.sleep(0.6)
        await ws.send(json.dumps({"type": "ping", "nonce": 1}))
        assert await _recv(ws) == {"type": "pong", "nonce": 1}
        await ws.close()


async def test_socket_activity_keeps_the_session_alive_for_http(tmp_path: Path) -> None:
    config = make_config(tmp_path, inactivity_timeout_s=1.0, activity_flush_s=0.1)
    async with run_server(config) as server:
        await server.add_user("dw", Role.DOCTOR, "wonju")
        token = await server.token("dw")
        ws = await _connect(server, token)
        for _ in range(8):  # 1.6 s of socket-only activity, longer than the idle timeout
            await ws.send(json.dumps({"type": "leave", "consultation_id": "c-none"}))
            assert (await _recv(ws))["code"] == "not_joined"
            await asyncio.sleep(0.2)
        async with httpx.AsyncClient(base_url=server.base_url) as http:
            me = await http.get("/api/auth/me", headers={"Authorization": f"Bearer {token}"})
        assert me.status_code == 200, me.text
        await ws.close()
