"""Connecting at once: how long a signed-in client waits for ``welcome`` when 500 connect
together, against one connecting alone.

The server runs in its own process (``telemed serve``; ``--database-url`` for PostgreSQL),
started as every signaling benchmark starts it (``benchmarks.servers``), the clients here.
A client opens ``/ws`` (TCP, HTTP upgrade), sends ``hello`` with its token and waits for
``welcome``; its time is from the moment the burst starts (every client is started in the
same loop iteration) to its ``welcome``, the "hello" figure from its hello to its welcome.
Baselines measured in the same run: one client connecting alone (repeated), and the bare
``websockets`` server of ``baseline_relay.py`` taking the same burst (its first reply
stands for ``welcome``: no auth, no database, no audit), the floor set by the handshakes
and this client process. Rounds close every socket before the next.

    python -m benchmarks.connect_burst [--clients 500] [--rounds 3] [--alone 50]
        [--database-url URL] [--json FILE]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import httpx
import websockets
from websockets.asyncio.client import ClientConnection

from benchmarks.servers import add_user, bare_relay, raise_fd_limit, telemed_env, telemed_servers

PASSWORD = "connect-burst-bench-password-7Qx"  # noqa: S105 (throwaway server)
USER = "bench.burst"


@dataclass
class Result:
    server: str
    case: str
    clients: int
    median_ms: float
    p99_ms: float
    max_ms: float
    #: From the client's hello to its welcome (the server's own part, less the handshake).
    hello_median_ms: float
    hello_p99_ms: float


def _p99(samples: list[float]) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(0.99 * len(ordered)))]


def _result(server: str, case: str, clients: int, total: list[float], hello: list[float]) -> Result:
    return Result(
        server,
        case,
        clients,
        statistics.median(total) * 1e3,
        _p99(total) * 1e3,
        max(total) * 1e3,
        statistics.median(hello) * 1e3,
        _p99(hello) * 1e3,
    )


#: Connect, say hello, wait for the first reply; returns the socket and when hello was sent.
Connect = Callable[[], Awaitable[tuple[ClientConnection, float]]]


async def _burst(connect: Connect, clients: int) -> tuple[list[float], list[float]]:
    """``clients`` connections started together; (start to reply, hello to reply) each."""
    start = time.perf_counter()

    async def one() -> tuple[ClientConnection, float, float]:
        ws, hello_at = await connect()
        done = time.perf_counter()
        return ws, done - start, done - hello_at

    results = await asyncio.gather(*(one() for _ in range(clients)))
    await asyncio.gather(*(ws.close() for ws, _, _ in results))
    return [r[1] for r in results], [r[2] for r in results]


async def _alone(connect: Connect, times: int) -> tuple[list[float], list[float]]:
    total: list[float] = []
    hello: list[float] = []
    for _ in range(times):
        t, h = await _burst(connect, 1)
        total += t
        hello += h
    return total, hello


async def _measure(
    name: str, connect: Connect, clients: int, rounds: int, alone: int
) -> list[Result]:
    await _alone(connect, 5)  # warm up
    results = [_result(name, "alone", 1, *await _alone(connect, alone))]
    total: list[float] = []
    hello: list[float] = []
    for _ in range(rounds):
        t, h = await _burst(connect, clients)
        total += t
        hello += h
        await asyncio.sleep(1.0)  # let the server finish closing the round's sockets
    results.append(_result(name, "burst", clients, total, hello))
    return results


async def _baseline(clients: int, rounds: int, alone: int) -> list[Result]:
    async with bare_relay() as proc:
        url = f"ws://127.0.0.1:{proc.port}"

        async def connect() -> tuple[ClientConnection, float]:
            ws = await websockets.connect(url, open_timeout=120, ping_interval=None)
            hello_at = time.perf_counter()
            await ws.send("room")
            await ws.recv()
            return ws, hello_at

        return await _measure("websockets baseline", connect, clients, rounds, alone)


async def _ours(
    clients: int, rounds: int, alone: int, data_dir: Path, database_url: str | None
) -> list[Result]:
    # All the clients are one account on one address here.
    env = telemed_env(data_dir, ws_max_per_address=clients + 10, ws_max_per_account=clients + 10)
    if database_url:
        env["TELEMED_DATABASE_URL"] = database_url
    add_user(env, USER, "wonju", PASSWORD)
    async with telemed_servers(env) as (proc,):
        base = f"http://127.0.0.1:{proc.port}"
        async with httpx.AsyncClient(base_url=base, timeout=60) as http:
            r = await http.post("/api/auth/login", json={"username": USER, "password": PASSWORD})
            r.raise_for_status()
            token = r.json()["token"]
        hello = json.dumps({"type": "hello", "v": 1, "token": token})

        async def connect() -> tuple[ClientConnection, float]:
            ws = await websockets.connect(
                f"ws://127.0.0.1:{proc.port}/ws", open_timeout=120, ping_interval=None
            )
            hello_at = time.perf_counter()
            await ws.send(hello)
            welcome = json.loads(await ws.recv())
            if welcome.get("type") != "welcome":
                raise RuntimeError(f"not welcomed: {welcome}")
            return ws, hello_at

        return await _measure("telemed", connect, clients, rounds, alone)


def _print(results: list[Result]) -> None:
    print(
        f"{'server':20} {'case':6} {'clients':>7} {'median ms':>9} {'p99 ms':>8} {'max ms':>8}"
        f" {'hello med':>9} {'hello p99':>9}"
    )
    for r in results:
        print(
            f"{r.server:20} {r.case:6} {r.clients:7d} {r.median_ms:9.1f} {r.p99_ms:8.1f}"
            f" {r.max_ms:8.1f} {r.hello_median_ms:9.1f} {r.hello_p99_ms:9.1f}"
        )
    by = {(r.server, r.case): r for r in results}
    ours, base = by[("telemed", "burst")], by[("websockets baseline", "burst")]
    alone = by[("telemed", "alone")]
    print(
        f"telemed burst p99 {ours.p99_ms:.1f} ms: {ours.p99_ms / alone.p99_ms:.1f}x one alone, "
        f"{ours.p99_ms / base.p99_ms:.2f}x the bare websockets server's burst"
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--clients", type=int, default=500, help="clients connecting at once")
    parser.add_argument("--rounds", type=int, default=3, help="bursts (samples pooled)")
    parser.add_argument("--alone", type=int, default=50, help="connections one at a time")
    parser.add_argument("--database-url", help="the server's database (default: SQLite)")
    parser.add_argument("--json", type=Path, help="also write the results as JSON here")
    args = parser.parse_args()

    async def run() -> list[Result]:
        raise_fd_limit()
        results = await _baseline(args.clients, args.rounds, args.alone)
        with tempfile.TemporaryDirectory() as tmp:
            results += await _ours(
                args.clients, args.rounds, args.alone, Path(tmp), args.database_url
            )
        return results

    results = asyncio.run(run())
    _print(results)
    if args.json:
        args.json.write_text(json.dumps([asdict(r) for r in results], indent=2))


if __name__ == "__main__":
    main()
