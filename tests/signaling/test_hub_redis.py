"""Two server apps sharing one Redis hub and one database: rooms, presence, relay,
consultation changes and the socket caps work across them as within one."""

from __future__ import annotations

import contextlib
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import websockets
from websockets.asyncio.client import ClientConnection

from signaling.schema import PROTOCOL_VERSION, CloseCode, Role
from signaling.server.hub_redis import RedisHub
from tests.helpers import LiveServer, eventually, make_config, run_server
from tests.redis_server import redis_server
from tests.signaling.sockets import act, connect, join, nothing_pending, recv, request_consultation

USERS = [
    ("dk", Role.DOCTOR, "koriyama"),
    ("tw", Role.TECHNICIAN, "wonju"),
    ("dw", Role.DOCTOR, "wonju"),
]


@contextlib.asynccontextmanager
async def two_servers(tmp_path: Path, **options: Any) -> AsyncIterator[tuple[LiveServer, ...]]:
    """Two servers on one Redis and one database file."""
    async with redis_server(tmp_path / "redis") as redis:
        config = make_config(tmp_path, hub_url=redis.url, **options)
        async with run_server(config) as one, run_server(config) as two:
            yield one, two


async def _tokens(server: LiveServer) -> dict[str, str]:
    tokens = {}
    for name, role, site in USERS:
        await server.add_user(name, role, site)
        tokens[name] = await server.token(name)
    return tokens


async def _next(ws: ClientConnection, kind: str) -> dict[str, Any]:
    while True:
        message = await recv(ws, timeout=30)
        if message["type"] == kind:
            return message


async def _state(ws: ClientConnection, state: str) -> None:
    while (await _next(ws, "consultation"))["consultation"]["state"] != state:
        pass


def _hub(server: LiveServer) -> RedisHub:
    hub = server.services.hub
    assert isinstance(hub, RedisHub)
    return hub


@pytest.mark.cpu
async def test_a_consultation_across_two_processes(tmp_path: Path) -> None:
    async with two_servers(tmp_path) as (one, two):
        tokens = await _tokens(one)
        # A doctor of Koriyama in the lobby of the other process hears of the request and
        # of its acceptance (rendered there from the database: when the process reads the
        # row after the acceptance, both messages say active).
        dk, _ = await connect(two, tokens["dk"])
        tw, tw_welcome = await connect(one, tokens["tw"])
        cid = await request_consultation(one, tokens["tw"], "koriyama")
        assert (await _next(dk, "consultation"))["consultation"]["id"] == cid
        await act(one, tokens["dk"], cid, "accept")
        await _state(dk, "active")
        await _state(tw, "active")

        await tw.send(json.dumps({"type": "join", "consultation_id": cid}))
        joined_tw = await _next(tw, "joined")
        assert [p["peer_id"] for p in joined_tw["peers"]] == [tw_welcome["peer_id"]]
        await dk.send(json.dumps({"type": "join", "consultation_id": cid}))
        joined_dk = await _next(dk, "joined")
        peer_ids = {p["peer_id"] for p in joined_dk["peers"]}
        dk_id = next(p for p in peer_ids if p != tw_welcome["peer_id"])
        assert tw_welcome["peer_id"] in peer_ids and len(peer_ids) == 2
        seen = await _next(tw, "peer-joined")
        assert seen["peer"]["peer_id"] == dk_id and seen["peer"]["site"] == "koriyama"
        assert process_differs(tw_welcome["peer_id"], dk_id)

        # Offer, answer and candidate through the two processes, ``from`` set by the server.
        await tw.send(json.dumps({"type": "offer", "to": dk_id, "sdp": "v=0 offer"}))
        offer = await _next(dk, "offer")
        assert offer["from"] == tw_welcome["peer_id"] and offer["sdp"] == "v=0 offer"
        await dk.send(json.dumps({"type": "answer", "to": tw_welcome["peer_id"], "sdp": "ans"}))
        assert (await _next(tw, "answer"))["from"] == dk_id
        candidate = {"type": "candidate", "to": dk_id, "candidate": "candidate:1 1 udp 1 x"}
        await tw.send(json.dumps(candidate))
        assert (await _next(dk, "candidate"))["candidate"] == "candidate:1 1 udp 1 x"
        # Chat reaches the whole room once each.
        await dk.send(json.dumps({"type": "chat", "text": "hello"}))
        assert (await _next(tw, "chat"))["text"] == "hello"
        assert (await _next(dk, "chat"))["text"] == "hello"
        await nothing_pending(dk)

        # The doctor leaves: the technician on the other process is told.
        await dk.send(json.dumps({"type": "leave", "consultation_id": cid}))
        assert (await _next(dk, "left"))["consultation_id"] == cid
        left = await _next(tw, "peer-left")
        assert left["peer_id"] == dk_id and left["reason"] == "left"
        # A join again: no peer-joined of someone the snapshot named.
        again = await join(dk, cid)
        assert len(again["peers"]) == 2
        assert (await _next(tw, "peer-joined"))["peer"]["peer_id"] == dk_id
        await nothing_pending(dk)

        # Closing on one process reaches the room on both, and empties it.
        await act(two, tokens["dk"], cid, "close")
        assert (await _next(tw, "consultation-state"))["consultation"]["state"] == "closed"
        assert (await _next(dk, "consultation-state"))["consultation"]["state"] == "closed"
        await eventually(lambda: _hub(one).room(cid) is None and _hub(two).room(cid) is None)
        await tw.send(json.dumps({"type": "offer", "to": dk_id, "sdp": "late"}))
        assert (await _next(tw, "error"))["code"] == "not_active"
        for ws in (tw, dk):
            await ws.close()


def process_differs(a: str, b: str) -> bool:
    return a.split("-")[1] != b.split("-")[1]


@pytest.mark.cpu
async def test_socket_caps_hold_across_processes(tmp_path: Path) -> None:
    async with two_servers(tmp_path, ws_max_per_account=2, ws_max_per_address=3) as (one, two):
        tokens = await _tokens(one)
        first, _ = await connect(one, tokens["dk"])
        second, _ = await connect(two, tokens["dk"])
        # The account's third socket, on either process, is refused.
        third = await websockets.connect(two.ws_url)
        await third.send(
            json.dumps({"type": "hello", "v": PROTOCOL_VERSION, "token": tokens["dk"]})
        )
        assert (await recv(third))["code"] == "too_many_connections"
        await third.wait_closed()
        assert third.close_code == CloseCode.TOO_MANY_CONNECTIONS
        # Three sockets from this address are open (the refused one closed): a fourth waits
        # for none of its hello.
        other, _ = await connect(one, tokens["tw"])
        fourth = await websockets.connect(two.ws_url)
        await fourth.wait_closed()
        assert fourth.close_code == CloseCode.TOO_MANY_CONNECTIONS
        # One closes on one process: the other process takes a socket again.
        await first.close()
        await eventually(lambda: _hub(one).connection_count == 1)

        async def admitted() -> bool:
            # (The closed socket is uncounted a moment after the hub forgets it.)
            ws = await websockets.connect(two.ws_url)
            hello = {"type": "hello", "v": PROTOCOL_VERSION, "token": tokens["dw"]}
            try:
                await ws.send(json.dumps(hello))
                return bool(json.loads(await ws.recv())["type"] == "welcome")
            except websockets.ConnectionClosed:
                return False
            finally:
                await ws.close()

        assert await eventually(admitted)
        for ws in (second, other):
            await ws.close()


@pytest.mark.slow
async def test_a_lost_process_peers_are_reported_left(tmp_path: Path) -> None:
    """A process that stops answering (its heartbeat stopped, as when killed) is taken for
    dead by the other within its liveness: its peers leave with ``server-lost``."""
    async with two_servers(tmp_path, hub_liveness_s=4.0) as (one, two):
        tokens = await _tokens(one)
        cid = await request_consultation(one, tokens["tw"], "koriyama")
        await act(one, tokens["dk"], cid, "accept")
        tw, tw_welcome = await connect(one, tokens["tw"])
        dk, _ = await connect(two, tokens["dk"])
        await join(tw, cid)
        await join(dk, cid)
        await _next(tw, "peer-joined")
        # Process two goes silent: its Redis link is cut without a word to Redis.
        hub_two = _hub(two)
        assert hub_two._supervisor is not None
        hub_two._supervisor.cancel()
        left = await _next(tw, "peer-left")
        assert left["reason"] == "server-lost"
        assert left["peer_id"].split("-")[1] == hub_two.process_id
        await eventually(lambda: _hub(one).room(cid) is not None)
        room = _hub(one).room(cid)
        assert room is not None and set(room.members) == {tw_welcome["peer_id"]}
        for ws in (tw, dk):
            await ws.close()


@pytest.mark.cpu
async def test_a_process_that_stops_reports_its_peers_gone_at_once(tmp_path: Path) -> None:
    """A server that shuts down (SIGTERM) forgets its peers in Redis as it goes: the other
    process's clients see them leave without waiting out the liveness (five minutes here)."""
    async with redis_server(tmp_path / "redis") as redis:
        config = make_config(tmp_path, hub_url=redis.url, hub_liveness_s=300)
        async with run_server(config) as one:
            tokens = await _tokens(one)
            cid = await request_consultation(one, tokens["tw"], "koriyama")
            await act(one, tokens["dk"], cid, "accept")
            tw, _ = await connect(one, tokens["tw"])
            await join(tw, cid)
            async with run_server(config) as two:
                dk, dk_welcome = await connect(two, tokens["dk"])
                await join(dk, cid)
                await _next(tw, "peer-joined")
            left = await _next(tw, "peer-left")
            assert left["peer_id"] == dk_welcome["peer_id"]
            await tw.close()
