"""The impairment relay of the WAN bed as a process of its own, run in the cloud namespace
(its sockets must be made there): ``python -m tests.wan.relay HOST PORT UP_HOST UP_PORT
PROFILE``. Forwards UDP from HOST:PORT to UP_HOST:UP_PORT through
:class:`benchmarks.impair.UdpImpairmentRelay` with one of its :data:`PROFILES`, and takes
commands on standard input, one a line: ``blackout on``, ``blackout off``, ``profile NAME``.
Ends at the end of its input (the bed closing the pipe) or on SIGTERM."""

from __future__ import annotations

import asyncio
import sys

from benchmarks.impair import PROFILES, UdpImpairmentRelay


async def main(host: str, port: int, upstream: tuple[str, int], profile: str) -> None:
    relay = UdpImpairmentRelay(upstream, PROFILES[profile], seed=1)
    await relay.start(host, port)
    try:
        loop = asyncio.get_running_loop()
        reader = asyncio.StreamReader()
        await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
        while line := (await reader.readline()).decode().split():
            match line:
                case ["blackout", "on" | "off" as state]:
                    relay.blackout(state == "on")
                case ["profile", name] if name in PROFILES:
                    relay.impairment = PROFILES[name]
                case _:
                    print(f"relay: unknown command {line!r}", file=sys.stderr, flush=True)
    finally:
        await relay.close()


if __name__ == "__main__":
    host, port, up_host, up_port, profile = sys.argv[1:6]
    asyncio.run(main(host, int(port), (up_host, int(up_port)), profile))
