"""A burst of signed-in sockets joining one consultation at once (250; ``BURST=500`` for the
load the defect was found at): every one is welcomed and joined, on SQLite and on
PostgreSQL (the membership writes on the join path must not fail under contention:
SQLite's "database is locked" crashed some before). Every joiner is told of each later one,
so the work grows with the square of the burst: 250 keeps make test's budget, and already
has hundreds of joins writing at once."""

from __future__ import annotations

import asyncio
import json
import logging
import os
from pathlib import Path

import pytest
import websockets
from websockets.asyncio.client import ClientConnection

from signaling.schema import PROTOCOL_VERSION, Role
from tests.helpers import make_config, run_server
from tests.signaling.sockets import act, recv, request_consultation

SOCKETS = int(os.environ.get("BURST", "250"))
ACCOUNTS = 50


@pytest.mark.slow  # 250 sockets: about 30 s here (500: 1-2 minutes)
@pytest.mark.cpu  # CPU only (clients and server on one loop), nothing timed: the two-core phase
@pytest.mark.timeout(600)  # a hang guard: beside another test it takes longer
async def test_a_burst_of_sockets_join_one_consultation_at_once(
    tmp_path: Path, db_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    config = make_config(
        tmp_path,
        database_url=db_url,
        ws_max_per_address=SOCKETS + 10,
        ws_max_per_account=SOCKETS // ACCOUNTS,
        ws_burst=1000,
        # Every member is sent a peer-joined for each later joiner: room for all of them, as
        # the clients share this loop with the server and read late (the outbox limit is
        # tested elsewhere).
        ws_send_queue=2 * SOCKETS,
    )
    # asyncio's debug mode records a stack for every task and callback: at hundreds of sockets,
    # that, not the server, is what the loop would be busy with.
    asyncio.get_running_loop().set_debug(False)
    async with run_server(config) as server:
        names = [f"d{i}" for i in range(ACCOUNTS)]
        for i, name in enumerate(names):
            await server.add_user(name, Role.DOCTOR, "wonju" if i % 2 else "koriyama")
        tokens = [await server.token(name) for name in names]
        cid = await request_consultation(server, tokens[1], "koriyama")
        await act(server, tokens[0], cid, "accept")

        async def one(token: str) -> tuple[ClientConnection, str]:
            # A client reads on after its joined (max_queue=None: the websockets library
            # stops reading a socket whose 16 messages are unread, and then misses pongs
            # too); keepalive pings are not what is tested here.
            ws = await websockets.connect(
                server.ws_url, max_size=None, max_queue=None, open_timeout=60, ping_interval=None
            )
            await ws.send(json.dumps({"type": "hello", "v": PROTOCOL_VERSION, "token": token}))
            welcome = await recv(ws, timeout=60)
            assert welcome["type"] == "welcome", welcome
            await ws.send(json.dumps({"type": "join", "consultation_id": cid}))
            while (message := await recv(ws, timeout=60))["type"] != "joined":
                assert message["type"] in ("peer-joined", "consultation"), message
            return ws, str(welcome["peer_id"])

        results = await asyncio.gather(
            *(one(tokens[i % ACCOUNTS]) for i in range(SOCKETS)), return_exceptions=True
        )
        failures = [r for r in results if isinstance(r, BaseException)]
        # The server's errors first: they say why a client failed.
        errors = [
            f"{r.getMessage()} {r.exc_text or ''}"[-600:]
            for r in caplog.records
            if r.levelno >= logging.ERROR
        ]
        assert errors == []
        assert failures == [], failures[:3]
        assert server.services.hub.connection_count == SOCKETS
        room = server.services.hub.room(cid)
        assert room is not None and len(room.connections) == SOCKETS
        for result in results:
            assert not isinstance(result, BaseException)
            await result[0].close()
