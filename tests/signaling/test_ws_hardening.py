"""The /ws endpoint under attack: nesting bombs, readers that never read, too many sockets.

Each test drives a real server on 127.0.0.1 with the ``websockets`` library (or a raw socket
where a well-behaved client library would hide the attack)."""

from __future__ import annotations

import asyncio
import json
import socket
from pathlib import Path
from typing import Any

import pytest
import websockets
from sqlalchemy import select
from websockets.asyncio.client import ClientConnection
from websockets.client import ClientProtocol
from websockets.frames import Frame, Opcode
from websockets.http11 import Response
from websockets.uri import parse_uri

from signaling.errors import ProtocolError
from signaling.schema import (
    PROTOCOL_VERSION,
    CloseCode,
    ErrorCode,
    Role,
    json_depth_exceeds,
    parse_client_message,
)
from signaling.storage.models import AuditEventRow
from tests.helpers import LiveServer, eventually, make_config, run_server
from tests.signaling.sockets import (
    act,
    active_consultation,
    api,
    connect,
    join,
    recv,
    request_consultation,
)


async def _closed_with(ws: ClientConnection) -> int | None:
    with pytest.raises(websockets.ConnectionClosed):
        while True:
            await recv(ws)
    return ws.close_code


async def _still_served(ws: ClientConnection, nonce: int = 5) -> None:
    await ws.send(json.dumps({"type": "ping", "nonce": nonce}))
    assert await recv(ws) == {"type": "pong", "nonce": nonce}


# -- nesting ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "deeper_than_3"),
    [
        ("[[[]]]", False),
        ("[[[[]]]]", True),
        ('{"a":{"b":{"c":1}}}', False),
        ('{"a":{"b":{"c":{}}}}', True),
        # Brackets inside strings are text, not nesting (escaped quotes included).
        ('{"t":"[[[[[[[[", "u":"\\"[[[[[["}', False),
        ("[1,[2,[3]],[4,[5]]]", False),
        # Unbalanced garbage is judged by its deepest point; the decoder refuses the rest.
        ("[[[[" + "]" * 10, True),
        ("]]]][[[", False),
    ],
)
def test_depth_scan_counts_only_structure(text: str, deeper_than_3: bool) -> None:
    assert json_depth_exceeds(text, 3) is deeper_than_3
    assert json_depth_exceeds(text.encode(), 3) is deeper_than_3


@pytest.mark.parametrize("opener", ["[", '{"a":'])
def test_a_nesting_bomb_is_refused_before_decoding(opener: str) -> None:
    for text in (opener * 60_000, (opener * 60_000).encode()):
        with pytest.raises(ProtocolError) as caught:
            parse_client_message(text, max_depth=32)
        assert caught.value.code is ErrorCode.TOO_DEEP


def test_nesting_up_to_the_limit_is_decoded() -> None:
    # Depth 3 in ``sdp``'s place: refused by the model (a string is needed), not by the scan.
    with pytest.raises(ProtocolError) as caught:
        parse_client_message('{"type":"offer","sdp":[[1]]}', max_depth=3)
    assert caught.value.code is ErrorCode.INVALID_MESSAGE


async def test_nesting_bomb_before_hello_gets_an_error_and_the_socket_lives(
    server: LiveServer,
) -> None:
    await server.add_user("dw", Role.DOCTOR, "wonju")
    token = await server.token("dw")
    async with websockets.connect(server.ws_url) as ws:
        await ws.send("[" * 60_000)
        reply = await recv(ws)
        assert (reply["type"], reply["code"]) == ("error", "too_deep"), reply
        await ws.send(json.dumps({"type": "hello", "v": PROTOCOL_VERSION, "token": token}))
        assert (await recv(ws))["type"] == "welcome"
        await _still_served(ws)


async def test_nesting_bombs_count_as_protocol_errors(tmp_path: Path) -> None:
    async with run_server(make_config(tmp_path, ws_max_errors=3)) as server:
        await server.add_user("dw", Role.DOCTOR, "wonju")
        ws, _ = await connect(server, await server.token("dw"))
        for _ in range(2):
            await ws.send('{"type":"chat","text":' + "[" * 60_000)
            assert (await recv(ws))["code"] == "too_deep"
        await _still_served(ws)
        await ws.send("{" * 60_000)
        assert (await recv(ws))["code"] == "too_deep"
        assert await _closed_with(ws) == CloseCode.POLICY_VIOLATION


# -- a reader that never reads ----------------------------------------------------------------


class StalledClient:
    """A WebSocket client on a raw socket (websockets' sans-I/O protocol): it reads only
    when told to, so it can stop reading altogether, as a hung tab or an attacker does.
    Client libraries keep reading into their own buffers; this one does not."""

    def __init__(self, url: str) -> None:
        self.protocol = ClientProtocol(parse_uri(url), max_size=None)
        self.url = url
        self.reader: asyncio.StreamReader
        self.writer: asyncio.StreamWriter

    async def open(self, port: int) -> None:
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        sock.connect(("127.0.0.1", port))
        # A small stream buffer too: asyncio stops reading the socket once it is full.
        self.reader, self.writer = await asyncio.open_connection(sock=sock, limit=4096)
        self.protocol.send_request(self.protocol.connect())
        self._flush()
        while self.protocol.handshake_exc is None and not self._handshake_done():
            self.protocol.receive_data(await self.reader.read(4096))
        assert self.protocol.handshake_exc is None

    def _handshake_done(self) -> bool:
        return any(isinstance(e, Response) for e in self.protocol.events_received())

    def _flush(self) -> None:
        self.writer.write(b"".join(self.protocol.data_to_send()))

    async def send(self, message: dict[str, Any]) -> None:
        self.protocol.send_text(json.dumps(message).encode())
        self._flush()
        await self.writer.drain()

    async def recv(self) -> dict[str, Any]:
        async with asyncio.timeout(5):
            while True:
                for event in self.protocol.events_received():
                    if isinstance(event, Frame) and event.opcode is Opcode.TEXT:
                        return dict(json.loads(bytes(event.data)))
                data = await self.reader.read(65536)
                if not data:
                    raise ConnectionResetError("closed")
                self.protocol.receive_data(data)

    async def lost(self) -> bool:
        """Reads until the connection ends; True when it ended (reset or closed)."""
        try:
            async with asyncio.timeout(10):
                while await self.reader.read(1 << 20):
                    pass
        except ConnectionResetError:
            pass
        return True

    def close(self) -> None:
        self.writer.close()


async def test_a_reader_that_stopped_reading_is_cut_off(tmp_path: Path) -> None:
    config = make_config(tmp_path, ws_rate_per_s=1000.0, ws_burst=1000)
    async with run_server(config) as server:
        tokens, cid = await active_consultation(
            server, [("tw", Role.TECHNICIAN, "wonju"), ("dk", Role.DOCTOR, "koriyama")]
        )
        slow = StalledClient(server.ws_url)
        await slow.open(int(server.base_url.rsplit(":", 1)[1]))
        try:
            await slow.send({"type": "hello", "v": PROTOCOL_VERSION, "token": tokens["dk"]})
            assert (await slow.recv())["type"] == "welcome"
            await slow.send({"type": "join", "consultation_id": cid})
            assert (await slow.recv())["type"] == "joined"
            sender, _ = await connect(server, tokens["tw"])
            await join(sender, cid)
            hub = server.services.hub
            assert hub.connection_count == 2
            # From here the slow one reads nothing: more than the kernel's buffers on both
            # sides hold (a few MB on loopback) and its send queue (256) is sent its way.
            sdp = "v=0\r\n" + "a=x\r\n" * 9_000  # 54 kB an offer
            for _ in range(400):
                await sender.send(json.dumps({"type": "offer", "sdp": sdp}))
            # Flagged once its queue overflowed, and then cut off: not left to the keepalive.
            await eventually(lambda: hub.connection_count == 1, timeout=15, what="slow one gone")
            # The sender is served throughout, and told the slow one left.
            await sender.send(json.dumps({"type": "ping", "nonce": 1}))
            seen = []
            while (message := await recv(sender))["type"] != "pong":
                seen.append(message["type"])
            assert seen == ["peer-left"]
            assert await slow.lost()
            await sender.close()
        finally:
            slow.close()


# -- chat before acceptance -------------------------------------------------------------------


async def test_no_chat_before_the_consultation_is_accepted(server: LiveServer) -> None:
    """The rule (the module docstring of signaling.server.ws): chat only in an active
    consultation. Before acceptance the consulting site has not taken the patient on, and
    the requesting site's staff talk on their own ward; after it ends, the record is closed."""
    for name, role, site in [
        ("tw", Role.TECHNICIAN, "wonju"),
        ("dw", Role.DOCTOR, "wonju"),
        ("dk", Role.DOCTOR, "koriyama"),
    ]:
        await server.add_user(name, role, site)
    tokens = {name: await server.token(name) for name in ("tw", "dw", "dk")}
    cid = await request_consultation(server, tokens["tw"], "koriyama")
    sockets = {}
    for name in ("tw", "dw", "dk"):
        sockets[name], _ = await connect(server, tokens[name])
        await join(sockets[name], cid)
    for name in ("tw", "dk"):
        await sockets[name].send(json.dumps({"type": "chat", "text": f"from {name}"}))
        while (refused := await recv(sockets[name]))["type"] == "peer-joined":
            pass
        assert (refused["type"], refused["code"]) == ("error", "not_active"), refused
    # Nobody was told anything but the arrivals, and nothing was kept.
    for ws in sockets.values():
        await _drain_presence_then_pong(ws)
    response = await api(server, "GET", f"/api/consultations/{cid}/chat", tokens["tw"])
    assert response.json() == []
    # Accepted: now it is relayed to the whole room.
    await act(server, tokens["dk"], cid, "accept")
    await sockets["dk"].send(json.dumps({"type": "chat", "text": "accepted"}))
    for ws in sockets.values():
        while (message := await recv(ws))["type"] != "chat":
            assert message["type"] in ("consultation-state", "consultation"), message
        assert message["text"] == "accepted"
    for ws in sockets.values():
        await ws.close()


async def _drain_presence_then_pong(ws: ClientConnection) -> None:
    await ws.send(json.dumps({"type": "ping", "nonce": 3}))
    while (message := await recv(ws))["type"] != "pong":
        assert message["type"] == "peer-joined", message


# -- sockets per address and per account -----------------------------------------------------


async def _audit(server: LiveServer, action: str) -> list[tuple[str, str, dict[str, Any]]]:
    async with server.services.db.session() as session:
        rows = (
            await session.scalars(
                select(AuditEventRow)
                .where(AuditEventRow.action == action)
                .order_by(AuditEventRow.seq)
            )
        ).all()
    return [(r.actor_name, r.outcome, json.loads(r.detail)) for r in rows]


async def _refused_with(ws: ClientConnection) -> tuple[int | None, str | None]:
    with pytest.raises(websockets.ConnectionClosed):
        while True:
            await recv(ws)
    return ws.close_code, ws.close_reason


async def test_sockets_per_address_are_capped_and_refusals_audited(tmp_path: Path) -> None:
    async with run_server(make_config(tmp_path, ws_max_per_address=3)) as server:
        await server.add_user("dw", Role.DOCTOR, "wonju")
        token = await server.token("dw")
        # Before hello too: an address cannot hoard unauthenticated sockets.
        held = [await websockets.connect(server.ws_url) for _ in range(3)]
        refused = [await websockets.connect(server.ws_url) for _ in range(8)]
        for ws in refused:
            code, reason = await _refused_with(ws)
            assert code == CloseCode.TOO_MANY_CONNECTIONS
            assert reason == "too many connections from this address (3)"
        # The held ones are served; when one closes, there is room again.
        await held[0].send(json.dumps({"type": "hello", "v": PROTOCOL_VERSION, "token": token}))
        assert (await recv(held[0]))["type"] == "welcome"
        await held[1].close()
        again, _ = await connect_eventually(server, token)
        # Five one by one, then the other three in one row when a socket of theirs closed
        # (written once it has closed: the socket counted gone, the row may follow).
        rows = await eventually(lambda: _denied_rows_at_least(server, 6))
        denied = [detail for _, outcome, detail in rows if outcome == "denied"]
        why = "too many connections from this address"
        assert denied == [{"why": why, "limit": 3}] * 5 + [{"why": why, "suppressed": 3}]
        for ws in (held[0], held[2], again):
            await ws.close()


async def connect_eventually(
    server: LiveServer, token: str
) -> tuple[ClientConnection, dict[str, Any]]:
    """``connect``, once the server has counted a socket closed by the client as gone."""
    for _ in range(50):
        try:
            return await connect(server, token)
        except (AssertionError, websockets.ConnectionClosed):
            await asyncio.sleep(0.1)
    return await connect(server, token)


async def test_sockets_per_account_are_capped_and_refusals_audited(tmp_path: Path) -> None:
    async with run_server(make_config(tmp_path, ws_max_per_account=2)) as server:
        await server.add_user("dw", Role.DOCTOR, "wonju")
        await server.add_user("dk", Role.DOCTOR, "koriyama")
        token = await server.token("dw")
        tabs = [(await connect(server, token))[0] for _ in range(2)]
        async with websockets.connect(server.ws_url) as third:
            await third.send(json.dumps({"type": "hello", "v": PROTOCOL_VERSION, "token": token}))
            error = await recv(third)
            assert (error["type"], error["code"]) == ("error", "too_many_connections")
            assert error["reason"] == "too many connections for this account (2)"
            code, _ = await _refused_with(third)
            assert code == CloseCode.TOO_MANY_CONNECTIONS
        # Another account is not affected; a closed tab makes room.
        other, _ = await connect(server, await server.token("dk"))
        await tabs[0].close()
        again, _ = await connect_eventually(server, token)
        rows = await _audit(server, "ws.connect")
        assert [(who, detail) for who, outcome, detail in rows if outcome == "denied"] == [
            ("dw", {"why": "too many connections for this account", "limit": 2})
        ]
        for ws in (tabs[1], other, again):
            await ws.close()


# -- protocol errors and refused connections in the audit -------------------------------------


async def test_protocol_errors_are_audited_with_a_summary_past_the_first_few(
    tmp_path: Path,
) -> None:
    async with run_server(make_config(tmp_path, ws_max_errors=100)) as server:
        await server.add_user("dw", Role.DOCTOR, "wonju")
        ws, welcome = await connect(server, await server.token("dw"))
        big = json.dumps({"type": "chat", "text": "x" * (server.config.ws_max_message_bytes + 1)})
        bad = ["{nope"] * 4 + ["[" * 100] * 2 + [big] * 2
        for text in bad:
            await ws.send(text)
            assert (await recv(ws))["type"] == "error"
        await ws.close()
        await eventually(lambda: server.services.hub.connection_count == 0, what="closed")
        rows = await eventually(
            lambda: _audit_rows_at_least(server, "ws.protocol_error", 6), what="summary row"
        )
        assert {(who, outcome) for who, outcome, _ in rows} == {("dw", "denied")}
        details = [detail for _, _, detail in rows]
        assert [d["code"] for d in details[:5]] == ["bad_json"] * 4 + ["too_deep"]
        assert all(d["peer"] == welcome["peer_id"] and d["reason"] for d in details[:5])
        assert details[5] == {
            "peer": welcome["peer_id"],
            "suppressed": 3,
            "codes": "too_deep:1,too_large:2",
        }


async def _denied_rows_at_least(
    server: LiveServer, n: int
) -> list[tuple[str, str, dict[str, Any]]]:
    rows = await _audit(server, "ws.connect")
    return rows if sum(outcome == "denied" for _, outcome, _ in rows) >= n else []


async def _audit_rows_at_least(
    server: LiveServer, action: str, n: int
) -> list[tuple[str, str, dict[str, Any]]]:
    rows = await _audit(server, action)
    return rows if len(rows) >= n else []


async def test_refused_connections_are_audited_with_why(server: LiveServer) -> None:
    async with websockets.connect(server.ws_url) as ws:
        await ws.send(json.dumps({"type": "hello", "v": PROTOCOL_VERSION, "token": "forged"}))
        assert (await recv(ws))["code"] == "auth_failed"
    async with websockets.connect(server.ws_url) as ws:
        await ws.send(json.dumps({"type": "join", "consultation_id": "c-1"}))
        assert (await recv(ws))["code"] == "not_authenticated"
    rows = await eventually(lambda: _audit_rows_at_least(server, "ws.connect", 2))
    whys = [(who, outcome, detail["why"]) for who, outcome, detail in rows]
    assert whys == [("", "denied", "auth_failed"), ("", "denied", "not_authenticated")]
