"""Baseline for the relay benchmark: a bare `websockets` server that pairs sockets by room and
forwards each text message to the other members. No auth, no parsing, no audit: the floor that
our signaling server's relay latency is compared with.

    python -m benchmarks.baseline_relay (--port PORT | --fd FD)
"""

from __future__ import annotations

import argparse
import asyncio
import socket

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
    try:
        await ws.send("joined")
        async for message in ws:
            for other in members:
                if other is not ws:
                    await other.send(message)
    except ConnectionClosed:
        pass
    finally:
        members.discard(ws)
        if not members:
            rooms.pop(room, None)


async def main(port: int | None, fd: int | None) -> None:
    sock = socket.socket(fileno=fd) if fd is not None else None
    host = "127.0.0.1" if sock is None else None
    async with serve(
        handler, host, port, sock=sock, max_size=1 << 20, ping_interval=None, backlog=4096
    ):
        await asyncio.Future()


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    group = parser.add_mutually_exclusive_group(required=True)
    group.add_argument("--port", type=int, help="listen on 127.0.0.1 at this port")
    group.add_argument("--fd", type=int, help="serve on this inherited listening socket")
    args = parser.parse_args()
    asyncio.run(main(args.port, args.fd))
