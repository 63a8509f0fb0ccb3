"""The /ws endpoint under attack: nesting bombs, readers that never read, too many sockets.

Each test drives a real server on 127.0.0.1 with the ``websockets`` library (or a raw socket
where a well-behaved client library would hide the attack)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import websockets
from websockets.asyncio.client import ClientConnection

from signaling.errors import ProtocolError
from signaling.schema import (
    PROTOCOL_VERSION,
    CloseCode,
    ErrorCode,
    Role,
    json_depth_exceeds,
    parse_client_message,
)
from tests.helpers import LiveServer, make_config, run_server
from tests.signaling.sockets import connect, recv


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
