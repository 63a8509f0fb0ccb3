"""``imaging.view`` on real sockets: what one doctor looks at reaches the other doctors of
the room, with ``from`` set by the server; a gateway is not told and may not send it;
nothing passes outside an active consultation; malformed and oversized values are refused
with ``invalid_message`` and the socket goes on."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path

import pytest_asyncio

from signaling.config import DEFAULT_SITES
from tests.helpers import make_config, run_server
from tests.signaling.imaging.room import SEOUL, ImagingRoom
from tests.signaling.sockets import act, connect, join, nothing_pending, recv

STUDY, SERIES, SOP = "1.2.826.0.1.3680043.8.498.1", "1.2.826.0.1.3680043.8.498.2", "1.2.3.4"
VIEW = {
    "type": "imaging.view",
    "study": STUDY,
    "series": SERIES,
    "sop": SOP,
    "frame": 3,
    "window": [40.0, 400.0],
    "pointer": [12.5, 100.0],
}


@pytest_asyncio.fixture
async def room(tmp_path: Path) -> AsyncIterator[ImagingRoom]:
    config = make_config(tmp_path, sites=(*DEFAULT_SITES, SEOUL))
    async with run_server(config) as server, ImagingRoom(server) as r:
        await r.setup()
        yield r


async def test_the_view_is_relayed_to_the_other_clinicians(room: ImagingRoom) -> None:
    sockets = {}
    peers = {}
    for who in ("dk", "dw", "gw"):
        ws, welcome = await connect(room.server, room.tokens[who])
        await join(ws, room.cid)
        sockets[who], peers[who] = ws, welcome["peer_id"]
    # The joins before it are told to those already there; read them off.
    for _ in range(2):
        assert (await recv(sockets["dk"]))["type"] == "peer-joined"
    assert (await recv(sockets["dw"]))["type"] == "peer-joined"

    await sockets["dk"].send(json.dumps({**VIEW, "from": "p-forged"}))
    relayed = await recv(sockets["dw"])
    assert relayed == {**VIEW, "from": peers["dk"]}
    # Not echoed to the sender, not sent to the gateway (it has no screen).
    await nothing_pending(sockets["dk"])
    await nothing_pending(sockets["gw"])
    # Nulls: the image's own window, no pointer; frame defaults to 1.
    await sockets["dw"].send(
        json.dumps({"type": "imaging.view", "study": STUDY, "series": SERIES, "sop": SOP})
    )
    assert await recv(sockets["dk"]) == {
        "type": "imaging.view",
        "study": STUDY,
        "series": SERIES,
        "sop": SOP,
        "frame": 1,
        "from": peers["dw"],
    }
    # A gateway may not share a view.
    await sockets["gw"].send(json.dumps(VIEW))
    refused = await recv(sockets["gw"])
    assert (refused["type"], refused["code"], refused["ref"]) == (
        "error",
        "not_permitted",
        "imaging.view",
    )
    await nothing_pending(sockets["dk"])

    bad = [
        {**VIEW, "study": "1.02.3"},  # a leading zero: not a UID
        {**VIEW, "sop": "1." + "2" * 70},
        {**VIEW, "frame": 0},
        {**VIEW, "window": [40, 0]},
        {**VIEW, "window": [40, 400, 1]},
        {**VIEW, "pointer": [1e9, 0]},
        {**VIEW, "pointer": ["x", 0]},
        {**VIEW, "extra": True},
    ]
    for message in bad:
        await sockets["dk"].send(json.dumps(message))
        reply = await recv(sockets["dk"])
        assert (reply["type"], reply["code"]) == ("error", "invalid_message"), message
    # NaN is not JSON, but Python's decoder reads it: the model refuses it.
    await sockets["dk"].send(json.dumps({**VIEW, "pointer": [float("nan"), 0]}))
    reply = await recv(sockets["dk"])
    assert (reply["type"], reply["code"]) == ("error", "invalid_message"), reply
    await nothing_pending(sockets["dw"])

    # Closed: nothing more passes.
    await act(room.server, room.tokens["dk"], room.cid, "close")
    for who, ws in sockets.items():
        # The room hears consultation-state; clinicians' sockets then the lobby's push.
        last = "consultation-state" if who == "gw" else "consultation"
        while (await recv(ws))["type"] != last:
            pass
    await sockets["dk"].send(json.dumps(VIEW))
    reply = await recv(sockets["dk"])
    assert (reply["type"], reply["code"]) == ("error", "not_active"), reply
    await nothing_pending(sockets["dw"])
    for ws in sockets.values():
        await ws.close()


async def test_no_view_outside_a_room(room: ImagingRoom) -> None:
    ws, _ = await connect(room.server, room.tokens["dk"])
    await ws.send(json.dumps(VIEW))
    reply = await recv(ws)
    assert (reply["type"], reply["code"]) == ("error", "not_joined")
    await ws.close()
