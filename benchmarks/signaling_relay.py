"""Signaling relay latency: an offer or candidate from one client to its peer, through the
server, with 1, 100 and 500 concurrent consultations (two clients each).

Each server runs in its own process (`telemed serve`, and the bare `websockets` relay in
``baseline_relay.py`` as the baseline measured in the same run); the clients run here. A
message carries its send time (``perf_counter_ns``, same process at both ends). In a round
every consultation's first client sends one message (alternately a ~2 KB offer and a
candidate) and the round ends when all have arrived; the printed figures are the median and
99th percentile over all messages of all rounds.

    python -m benchmarks.signaling_relay [--messages 2000] [--sizes 1,100,500] [--json FILE]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import httpx
import websockets
from websockets.asyncio.client import ClientConnection

SDP = "v=0\r\n" + "a=candidate:1 1 udp 2130706431 127.0.0.1 9 typ host\r\n" * 40
SECRET = "benchmark-secret-key-0123456789-abcdefghij"  # noqa: S105 (throwaway server)
#: What the password policy of telemed users takes (12+ characters, not common).
PASSWORD = "relay-bench-strong-pass-8Kd"  # noqa: S105 (throwaway server)


def _raise_fd_limit() -> None:
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, 65536), hard))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def _wait_http(url: str) -> None:
    async with httpx.AsyncClient() as http:
        for _ in range(600):
            try:
                await http.get(url)
                return
            except httpx.TransportError:
                await asyncio.sleep(0.05)
    raise RuntimeError(f"{url} did not come up")


@dataclass
class Result:
    server: str
    consultations: int
    messages: int
    median_ms: float
    p99_ms: float


def _summary(server: str, n: int, samples: list[float]) -> Result:
    ordered = sorted(samples)
    p99 = ordered[min(len(ordered) - 1, int(0.99 * len(ordered)))]
    return Result(server, n, len(samples), statistics.median(samples) * 1e3, p99 * 1e3)


Pair = tuple[ClientConnection, ClientConnection, str]  # sender, receiver, receiver peer id


async def _measure(pairs: list[Pair], rounds: int, wrap: Callable[[int, str], str]) -> list[float]:
    samples: list[float] = []

    async def one(sender: ClientConnection, receiver: ClientConnection, to: str, i: int) -> None:
        await sender.send(wrap(i, to))
        while True:
            raw = str(await receiver.recv())
            start = raw.find('"t=')
            if start >= 0:
                sent_ns = int(raw[start + 3 : raw.index(";", start)])
                samples.append((time.perf_counter_ns() - sent_ns) / 1e9)
                return

    for i in range(rounds):
        await asyncio.gather(*(one(s, r, to, i) for s, r, to in pairs))
    return samples


def _telemed_message(i: int, to: str) -> str:
    stamp = f"t={time.perf_counter_ns()};"
    if i % 2 == 0:
        return json.dumps({"type": "offer", "to": to, "sdp": stamp + SDP})
    return json.dumps(
        {
            "type": "candidate",
            "to": to,
            "candidate": stamp + "candidate:1 1 udp 1 127.0.0.1 9 typ host",
        }
    )


async def _ours(n: int, rounds: int, data_dir: Path) -> Result:
    port = _free_port()
    env = {
        **os.environ,
        "TELEMED_DATA_DIR": str(data_dir),
        "TELEMED_SECRET_KEY": SECRET,
        "TELEMED_LOG_LEVEL": "warning",
        # The benchmark drives each socket far above a real client's rate.
        "TELEMED_SERVER__WS_RATE_PER_S": "1000000",
        "TELEMED_SERVER__WS_BURST": "1000000",
    }
    for user, site in (("bench.wonju", "wonju"), ("bench.koriyama", "koriyama")):
        subprocess.run(
            [
                sys.executable,
                "-m",
                "telemed",
                "users",
                "add",
                user,
                "--role",
                "doctor",
                "--site",
                site,
                "--password-stdin",
            ],
            input=f"{PASSWORD}\n".encode(),
            env=env,
            check=True,
            capture_output=True,
        )
    proc = subprocess.Popen(
        [sys.executable, "-m", "telemed", "serve", "--port", str(port)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        preexec_fn=_raise_fd_limit,
    )
    base = f"http://127.0.0.1:{port}"
    conns: list[ClientConnection] = []
    try:
        await _wait_http(base + "/healthz")
        async with httpx.AsyncClient(base_url=base, timeout=60) as http:
            tokens = {}
            for user in ("bench.wonju", "bench.koriyama"):
                r = await http.post(
                    "/api/auth/login", json={"username": user, "password": PASSWORD}
                )
                tokens[user] = r.json()["token"]
            hw = {"Authorization": f"Bearer {tokens['bench.wonju']}"}
            hk = {"Authorization": f"Bearer {tokens['bench.koriyama']}"}
            cids = []
            for _ in range(n):
                c = await http.post(
                    "/api/consultations",
                    headers=hw,
                    json={"consulting_site": "koriyama", "consent_cross_border": True},
                )
                cid = c.json()["id"]
                await http.post(f"/api/consultations/{cid}/accept", headers=hk)
                cids.append(cid)

        async def joined(token: str, cid: str) -> tuple[ClientConnection, str]:
            ws = await websockets.connect(
                f"ws://127.0.0.1:{port}/ws", max_size=1 << 20, ping_interval=None
            )
            conns.append(ws)
            await ws.send(json.dumps({"type": "hello", "v": 1, "token": token}))
            peer_id = json.loads(await ws.recv())["peer_id"]
            await ws.send(json.dumps({"type": "join", "consultation_id": cid}))
            while json.loads(await ws.recv())["type"] != "joined":
                pass
            return ws, peer_id

        pairs: list[Pair] = []
        for cid in cids:
            a, _ = await joined(tokens["bench.wonju"], cid)
            b, b_id = await joined(tokens["bench.koriyama"], cid)
            pairs.append((a, b, b_id))
        await _drain(pairs)
        samples = await _measure(pairs, rounds, _telemed_message)
        return _summary("telemed", n, samples)
    finally:
        for ws in conns:
            await ws.close()
        proc.terminate()
        proc.wait(10)


async def _drain(pairs: list[Pair]) -> None:
    """Discard the presence messages that joining produced (peer-joined)."""

    async def drain(ws: ClientConnection) -> None:
        while True:
            try:
                async with asyncio.timeout(0.5):
                    await ws.recv()
            except TimeoutError:
                return

    await asyncio.gather(*(drain(a) for a, _, _ in pairs))


async def _baseline(n: int, rounds: int) -> Result:
    port = _free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "benchmarks.baseline_relay", "--port", str(port)],
        preexec_fn=_raise_fd_limit,
    )
    conns: list[ClientConnection] = []
    try:
        for _ in range(600):
            try:
                probe = await websockets.connect(f"ws://127.0.0.1:{port}")
                await probe.close()
                break
            except OSError:
                await asyncio.sleep(0.05)

        async def joined(room: str) -> ClientConnection:
            ws = await websockets.connect(
                f"ws://127.0.0.1:{port}", max_size=1 << 20, ping_interval=None
            )
            conns.append(ws)
            await ws.send(room)
            await ws.recv()
            return ws

        pairs = [(await joined(f"r{i}"), await joined(f"r{i}"), "peer") for i in range(n)]
        samples = await _measure(pairs, rounds, _telemed_message)  # the same bytes
        return _summary("websockets baseline", n, samples)
    finally:
        for ws in conns:
            await ws.close()
        proc.terminate()
        proc.wait(10)


async def run(sizes: list[int], messages: int) -> list[Result]:
    _raise_fd_limit()
    results: list[Result] = []
    for n in sizes:
        # About the same number of messages for every size, at least 10 rounds.
        r = max(10, messages // n)
        with tempfile.TemporaryDirectory() as tmp:
            results.append(await _baseline(n, r))
            results.append(await _ours(n, r, Path(tmp)))
        base, ours = results[-2], results[-1]
        print(
            f"{n:4d} consultations  {ours.messages:6d} msgs  "
            f"telemed median {ours.median_ms:6.2f} ms  p99 {ours.p99_ms:6.2f} ms  |  "
            f"baseline median {base.median_ms:6.2f} ms  p99 {base.p99_ms:6.2f} ms  |  "
            f"ratio median {ours.median_ms / base.median_ms:4.2f}x  "
            f"p99 {ours.p99_ms / base.p99_ms:4.2f}x",
            flush=True,
        )
    return results


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--messages", type=int, default=2000, help="messages per size (about)")
    parser.add_argument("--sizes", default="1,100,500")
    parser.add_argument("--json", type=Path, help="also write the results as JSON here")
    args = parser.parse_args()
    results = asyncio.run(run([int(s) for s in args.sizes.split(",")], args.messages))
    if args.json:
        args.json.write_text(json.dumps([asdict(r) for r in results], indent=2))


if __name__ == "__main__":
    main()
