"""Presence when one person has several sockets in a room (two tabs, a reload racing the old
socket's close): every socket's view, folded from its ``joined`` and the ``peer-joined`` and
``peer-left`` that follow, is the room as the server holds it."""

from __future__ import annotations

import asyncio
import json
from typing import Any

from websockets.asyncio.client import ClientConnection

from signaling.auth import Principal
from signaling.schema import (
    ConsultationInfo,
    ConsultationState,
    Joined,
    PrincipalKind,
    Role,
)
from signaling.server.hub import CloseRequest, Connection, Hub
from tests.helpers import LiveServer, eventually
from tests.signaling.sockets import act, connect, join, recv, request_consultation


class View:
    """What a browser tab knows of the room: folded from the messages it received."""

    def __init__(self, ws: ClientConnection) -> None:
        self.ws = ws
        self.peers: dict[str, dict[str, Any]] = {}
        self.members: dict[int, bool] = {}

    def apply(self, message: dict[str, Any]) -> None:
        match message["type"]:
            case "joined":
                self.peers = {p["peer_id"]: p for p in message["peers"]}
                self.members = {m["principal_id"]: m["online"] for m in message["members"]}
            case "peer-joined":
                self.peers[message["peer"]["peer_id"]] = message["peer"]
            case "peer-left":
                self.peers.pop(message["peer_id"])

    async def settle(self) -> set[str]:
        """Apply everything queued (up to the pong of a ping sent now); the peer ids."""
        await self.ws.send(json.dumps({"type": "ping", "nonce": 5}))
        while (message := await recv(self.ws))["type"] != "pong":
            self.apply(message)
        return set(self.peers)

    def people(self) -> dict[int, int]:
        """Sockets per person (principal id), as the browser groups them."""
        counts: dict[int, int] = {}
        for peer in self.peers.values():
            counts[peer["principal_id"]] = counts.get(peer["principal_id"], 0) + 1
        return counts


async def _tabs(server: LiveServer) -> tuple[str, dict[str, str], dict[str, int]]:
    tokens, ids = {}, {}
    for name, role, site in [
        ("dw", Role.DOCTOR, "wonju"),
        ("dk", Role.DOCTOR, "koriyama"),
        ("tk", Role.TECHNICIAN, "koriyama"),
    ]:
        account = await server.add_user(name, role, site)
        ids[name] = account.id
        tokens[name] = await server.token(name)
    cid = await request_consultation(server, tokens["dw"], "koriyama")
    await act(server, tokens["dk"], cid, "accept")
    return cid, tokens, ids


def _in_room(server: LiveServer, cid: str) -> set[str]:
    return {c.peer_id for c in server.services.hub.in_room(cid)}


async def test_two_sockets_of_one_person(server: LiveServer) -> None:
    cid, tokens, ids = await _tabs(server)
    first, _ = await connect(server, tokens["dw"])
    other, _ = await connect(server, tokens["dk"])
    second, _ = await connect(server, tokens["dw"])
    views = {ws: View(ws) for ws in (first, other, second)}
    for ws in (first, other, second):
        views[ws].apply(await join(ws, cid))
    for view in views.values():
        assert await view.settle() == _in_room(server, cid)
        assert view.people() == {ids["dw"]: 2, ids["dk"]: 1}
    assert views[second].members == {ids["dw"]: True, ids["dk"]: True}

    # One tab leaves: the person is still there through the other.
    await second.send(json.dumps({"type": "leave", "consultation_id": cid}))
    assert (await recv(second))["type"] == "left"
    for ws in (first, other):
        assert await views[ws].settle() == _in_room(server, cid)
        assert views[ws].people() == {ids["dw"]: 1, ids["dk"]: 1}
    newcomer, _ = await connect(server, tokens["tk"])
    late = View(newcomer)
    late.apply(await join(newcomer, cid))
    assert late.members == {ids["dw"]: True, ids["dk"]: True, ids["tk"]: True}

    # The other tab goes away without a word: the person is gone, but still a member.
    await first.close()
    await eventually(lambda: len(_in_room(server, cid)) == 2, what="the closed tab removed")
    for view in (views[other], late):
        assert await view.settle() == _in_room(server, cid)
        assert ids["dw"] not in view.people()
    again = View(second)
    again.apply(await join(second, cid))
    assert again.members[ids["dw"]] is True  # through this socket, just re-joined
    assert again.people() == {ids["dw"]: 1, ids["dk"]: 1, ids["tk"]: 1}
    for ws in (other, second, newcomer):
        await ws.close()


async def test_views_agree_with_the_room_after_racing_joins_and_leaves(server: LiveServer) -> None:
    cid, tokens, _ = await _tabs(server)
    sockets = [(await connect(server, tokens[name]))[0] for name in ["dw"] * 4 + ["dk", "tk"] * 2]
    views = [View(ws) for ws in sockets]

    async def enter(view: View) -> None:
        view.apply(await join(view.ws, cid))

    await asyncio.gather(*(enter(v) for v in views))
    for view in views:
        assert await view.settle() == _in_room(server, cid)

    leaving, staying = views[::3], [v for i, v in enumerate(views) if i % 3]
    for view in leaving:
        await view.ws.send(json.dumps({"type": "leave", "consultation_id": cid}))
    for view in leaving:
        await view.ws.close()
    await eventually(lambda: len(_in_room(server, cid)) == len(staying), what="leavers gone")
    for view in staying:
        assert await view.settle() == _in_room(server, cid)
    for view in staying:
        await view.ws.close()


def _conn(peer: str, principal_id: int) -> Connection:
    principal = Principal(
        PrincipalKind.USER, principal_id, f"u{principal_id}", Role.DOCTOR, "wonju", "s"
    )
    return Connection(peer, principal, "127.0.0.1:1", queue_size=8)


def _types(conn: Connection) -> list[str]:
    out = []
    while not conn.outbox.empty():
        item = conn.outbox.get_nowait()
        out.append("close" if isinstance(item, CloseRequest) else json.loads(item)["type"])
    return out


INFO = ConsultationInfo(
    id="c-1",
    requesting_site="wonju",
    consulting_site="koriyama",
    state=ConsultationState.ACTIVE,
    consent_cross_border=True,
)


def test_what_happens_while_joining_follows_the_joined() -> None:
    hub = Hub()
    a, b, c = _conn("p-a", 1), _conn("p-b", 1), _conn("p-c", 2)
    for conn in (a, b, c):
        hub.register(conn)
    peers = hub.join(a, INFO)
    assert peers is not None
    # While a's joined is being prepared, b arrives and leaves again.
    assert hub.join(b, INFO) is not None
    b.release(Joined(consultation=INFO, peers=[a.peer, b.peer], members=[]))
    hub.leave(b, "left")
    assert _types(a) == []  # held
    a.release(Joined(consultation=INFO, peers=peers, members=[]))
    assert _types(a) == ["joined", "peer-joined", "peer-left"]
    assert _types(b) == ["joined"]
    # Released, a is told at once.
    assert hub.join(c, INFO) is not None
    assert _types(a) == ["peer-joined"]


def test_held_deliveries_count_against_the_queue() -> None:
    hub = Hub()
    slow = _conn("p-slow", 1)
    hub.register(slow)
    assert hub.join(slow, INFO) is not None
    for i in range(9):
        other = _conn(f"p-{i}", 10 + i)
        hub.register(other)
        hub.join(other, INFO)
        other.release(None)
    slow.release(Joined(consultation=INFO, peers=[], members=[]))
    # Eight held peer-joined filled its queue; the ninth closed it (1013) instead of growing.
    assert _types(slow) == ["close"]
