"""Baseline for the relay benchmark: a bare `websockets` server that pairs sockets by room and
forwards each text message to the other members. No auth, no parsing, no audit: the floor that
our signaling server's relay latency is compared with."""

from __future__ import annotations

import argparse
import asyncio

from websockets.asyncio.server import ServerConnection, serve
from websockets.exceptions import ConnectionClosed

rooms: dict[str, set[ServerConnection]] = {}


async def handler(ws: ServerConnection) -> None:
    try:
        room = str(await ws.recv())  # the first message names the room
    except ConnectionClosed:
        return  # a readiness probe
    members = rooms.setdefault(room, set())
    members.add(ws)
    await ws.send("joined")
    try:
        async for message in ws:
            for other in members:
                if other is not ws:
                    await other.send(message)
    finally:
        members.discard(ws)


async def main(port: int) -> None:
    async with serve(
        handler, "127.0.0.1", port, max_size=1 << 20, ping_interval=None, backlog=2048
    ):
        await asyncio.Future()


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    asyncio.run(main(parser.parse_args().port))
