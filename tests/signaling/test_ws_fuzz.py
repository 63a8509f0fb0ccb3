"""Generated and malformed messages against the live /ws endpoint: every one gets a reply with
a reason code or a valid response, the connection survives until the error limit, and the
server keeps serving everyone else."""

from __future__ import annotations

import asyncio
import contextlib
import json
from pathlib import Path

import httpx
import pytest
import websockets
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from signaling.errors import AccountError
from signaling.schema import PROTOCOL_VERSION, ErrorCode, Role
from tests.helpers import make_config, run_server

_values = st.none() | st.booleans() | st.integers() | st.text(max_size=30) | st.floats()
_messages = st.one_of(
    st.text(max_size=300),
    st.binary(max_size=300),
    st.builds(
        lambda kind, fields: json.dumps({**fields, "type": kind}),
        st.sampled_from(
            ["join", "leave", "offer", "answer", "candidate", "chat", "ping", "hello", "pong", "x"]
        ),
        st.dictionaries(
            st.sampled_from(["consultation_id", "to", "sdp", "candidate", "text", "nonce", "v"]),
            _values,
            max_size=4,
        ),
    ),
)


@pytest.mark.slow  # property-based over a live socket: a few hundred messages
@pytest.mark.cpu
@settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(batch=st.lists(_messages, min_size=1, max_size=8))
def test_live_socket_answers_every_generated_message(
    tmp_path: Path, batch: list[str | bytes]
) -> None:
    asyncio.run(_exercise(tmp_path, batch))


async def _exercise(tmp_path: Path, batch: list[str | bytes]) -> None:
    config = make_config(tmp_path, ws_max_errors=1000)
    async with run_server(config) as server:
        # The account may exist from an earlier example on this database file.
        with contextlib.suppress(AccountError):
            await server.add_user("dw", Role.DOCTOR, "wonju")
        token = await server.token("dw")
        async with websockets.connect(server.ws_url) as ws:
            await ws.send(json.dumps({"type": "hello", "v": PROTOCOL_VERSION, "token": token}))
            assert json.loads(await ws.recv())["type"] == "welcome"
            for message in batch:
                await ws.send(message)
                # A ping after each message proves the socket is still served, in order.
                await ws.send(json.dumps({"type": "ping", "nonce": 424242}))
                while True:
                    async with asyncio.timeout(5):
                        reply = json.loads(await ws.recv())
                    if reply == {"type": "pong", "nonce": 424242}:
                        break
                    if reply["type"] == "error":
                        assert reply["code"] in set(ErrorCode)
                        assert reply["reason"]
        async with httpx.AsyncClient(base_url=server.base_url) as http:
            assert (await http.get("/healthz")).json()["status"] == "ok"
