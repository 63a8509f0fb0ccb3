"""Signaling relay latency: an offer or candidate from one client to its peer through the
server, at 1, 100, 500 and 2,000 concurrent consultations (two clients each), for:

- ``bare``: the bare ``websockets`` room relay of ``baseline_relay.py`` (the floor);
- ``memory``: one ``telemed serve`` process with the in-memory hub;
- ``redis``: one process with the Redis hub;
- ``redis-2``: two processes with the Redis hub, the clients spread over both: each
  consultation's sender on one process and its receiver on the other, so every message
  crosses Redis (the worst case of a load balancer's spread).

The Redis configurations run when the server has a ``hub_url`` setting and ``redis-server``
is installed (a throwaway one per configuration, nothing persisted); otherwise they are
reported as skipped. Every server is its own OS process; the clients run here. All the
``telemed`` processes share one database (one set of consultations), each configuration
its own hub.

A message carries its send time (``perf_counter_ns``, this process at both ends). In a round
every consultation's first client sends one message (alternately a ~2 KB offer and a
candidate) and the round ends when all have arrived. For each count the configurations are
measured in turn, ``--reps`` times, the order rotated each time (the machine is shared: a
spell of load falls on every configuration alike); the figures are the median over the reps
of each rep's median, p95 and p99, the ratio is to ``bare`` in the same rep, and the server's
CPU is its processes' CPU time (user + system, from ``/proc``) over the rep's wall time.

``--idle N`` instead connects N authenticated clients (``hello`` answered, no messages) to
one ``telemed serve`` process, and the same number to the bare relay, and reports the
server's resident memory per connection and its CPU over ``--idle-seconds`` of quiet.

    python -m benchmarks.signaling_relay [--counts 1,100,500] [--configs bare,memory,...]
        [--messages 2000] [--reps 3] [--json FILE]
    python -m benchmarks.signaling_relay --counts 1,100,500,2000     # the whole issue's table
    python -m benchmarks.signaling_relay --counts 500 --configs bare,memory --tree lean=../lean
    python -m benchmarks.signaling_relay --idle 5000 [--idle-seconds 30]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import asdict, dataclass, field
from functools import partial
from pathlib import Path

import httpx
import websockets
from websockets.asyncio.client import ClientConnection
from websockets.exceptions import ConnectionClosed

from benchmarks.servers import (
    PASSWORD,
    Proc,
    add_user,
    bare_relay,
    hub_url_setting,
    raise_fd_limit,
    redis_available,
    redis_server,
    telemed_env,
    telemed_servers,
)

SDP = "v=0\r\n" + "a=candidate:1 1 udp 2130706431 127.0.0.1 9 typ host\r\n" * 40
CONFIGS = ("bare", "memory", "redis", "redis-2")
USERS = (("bench.wonju", "wonju"), ("bench.koriyama", "koriyama"))
#: Sockets joining (or consultations being created) at once while a configuration grows.
SETUP_CONCURRENCY = 32
#: Seconds a round may take before its configuration is taken as failing (a message lost:
#: a hub that does not reach the other process).
ROUND_TIMEOUT_S = 30.0


def _percentile(ordered: list[float], q: float) -> float:
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


@dataclass
class Rep:
    """One configuration measured once at one count."""

    config: str
    consultations: int
    rep: int
    messages: int
    median_ms: float
    p95_ms: float
    p99_ms: float
    #: The server processes' CPU time over the rep's wall time (100: one core busy).
    cpu_percent: float
    cpu_us_per_message: float


@dataclass
class Row:
    """A configuration at one count: medians over the reps."""

    config: str
    consultations: int
    reps: int
    messages: int
    median_ms: float
    p95_ms: float
    p99_ms: float
    #: Medians over the reps of (this rep's figure / bare's figure in the same rep).
    ratio_median: float | None
    ratio_p95: float | None
    ratio_p99: float | None
    cpu_percent: float
    cpu_us_per_message: float


@dataclass
class Idle:
    server: str
    clients: int
    rss_before_mib: float
    rss_after_mib: float
    kib_per_connection: float
    idle_seconds: float
    cpu_percent: float


@dataclass
class Report:
    load_before: tuple[float, float, float]
    load_after: tuple[float, float, float] = (0.0, 0.0, 0.0)
    skipped: dict[str, str] = field(default_factory=dict)
    reps: list[Rep] = field(default_factory=list)
    rows: list[Row] = field(default_factory=list)
    idle: list[Idle] = field(default_factory=list)


def _message(i: int, to: str) -> str:
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


Pair = tuple[ClientConnection, ClientConnection, str]  # sender, receiver, receiver's peer id


async def _bounded(jobs: list[Callable[[], Awaitable[None]]], limit: int) -> None:
    gate = asyncio.Semaphore(limit)

    async def one(job: Callable[[], Awaitable[None]]) -> None:
        async with gate:
            await job()

    await asyncio.gather(*(one(job) for job in jobs))


async def _drain(sockets: list[ClientConnection]) -> None:
    """Discard what joining produced (peer-joined and the like)."""

    async def drain(ws: ClientConnection) -> None:
        while True:
            try:
                async with asyncio.timeout(0.5):
                    await ws.recv()
            except TimeoutError:
                return

    await asyncio.gather(*(drain(ws) for ws in sockets))


class Target:
    """One configuration under test: its server processes and its connected pairs."""

    def __init__(self, name: str, procs: list[Proc]) -> None:
        self.name = name
        self.procs = procs
        self.pairs: list[Pair] = []
        self._sockets: list[ClientConnection] = []

    def cpu_s(self) -> float:
        return sum(p.cpu_s() for p in self.procs)

    async def _connect(self, url: str) -> ClientConnection:
        # max_queue None: a socket not being read keeps reading its TCP stream, so that it
        # answers the server's keepalive pings whatever piles up.
        ws = await websockets.connect(
            url,
            max_size=1 << 20,
            max_queue=None,
            ping_interval=None,
            open_timeout=120,
            close_timeout=2,
        )
        self._sockets.append(ws)
        return ws

    async def grow(self, n: int) -> None:
        """Connect pairs until there are ``n``."""
        first = len(self.pairs)
        if n <= first:
            return
        made: dict[int, Pair] = {}

        async def pair(i: int) -> None:
            made[i] = await self._pair(i)

        await _bounded([partial(pair, i) for i in range(first, n)], SETUP_CONCURRENCY)
        new = [made[i] for i in range(first, n)]
        await _drain([ws for a, b, _ in new for ws in (a, b)])
        self.pairs += new

    async def _pair(self, i: int) -> Pair:
        raise NotImplementedError

    async def close(self) -> None:
        async def close(ws: ClientConnection) -> None:
            await ws.close()

        # A few at a time: each closing socket is audited, and the telemed processes share
        # one SQLite file.
        await _bounded([partial(close, ws) for ws in self._sockets], SETUP_CONCURRENCY)
        self._sockets.clear()
        self.pairs.clear()


class Bare(Target):
    async def _pair(self, i: int) -> Pair:
        url = f"ws://127.0.0.1:{self.procs[0].port}"

        async def joined() -> ClientConnection:
            ws = await self._connect(url)
            await ws.send(f"r{i}")
            await ws.recv()
            return ws

        return await joined(), await joined(), "peer"


class Telemed(Target):
    """A consultation's sender connects to process ``i % P``, its receiver to the next."""

    def __init__(self, name: str, procs: list[Proc], world: World) -> None:
        super().__init__(name, procs)
        self.world = world

    async def _pair(self, i: int) -> Pair:
        cid = self.world.consultations[i]
        count = len(self.procs)
        a, _ = await self._joined(self.procs[i % count], self.world.tokens[0], cid)
        b, b_id = await self._joined(self.procs[(i + 1) % count], self.world.tokens[1], cid)
        return a, b, b_id

    async def _joined(self, proc: Proc, token: str, cid: str) -> tuple[ClientConnection, str]:
        ws = await self._connect(f"ws://127.0.0.1:{proc.port}/ws")
        await ws.send(json.dumps({"type": "hello", "v": 1, "token": token}))
        welcome = json.loads(await ws.recv())
        if welcome.get("type") != "welcome":
            raise RuntimeError(f"{self.name}: not welcomed: {welcome}")
        await ws.send(json.dumps({"type": "join", "consultation_id": cid}))
        while True:
            reply = json.loads(await ws.recv())
            if reply["type"] == "joined":
                return ws, str(welcome["peer_id"])
            if reply["type"] == "error":
                raise RuntimeError(f"{self.name}: join refused: {reply}")


@dataclass
class World:
    """What the telemed servers share: accounts' tokens and the consultations."""

    api: str = ""
    tokens: tuple[str, str] = ("", "")
    consultations: list[str] = field(default_factory=list)

    async def login(self) -> None:
        """Fresh tokens (a long run outlives an access token)."""
        async with httpx.AsyncClient(base_url=self.api, timeout=60) as http:
            tokens = []
            for user, _ in USERS:
                r = await http.post(
                    "/api/auth/login", json={"username": user, "password": PASSWORD}
                )
                r.raise_for_status()
                tokens.append(str(r.json()["token"]))
        self.tokens = (tokens[0], tokens[1])

    async def consult(self, n: int) -> None:
        """Create accepted consultations until there are ``n``."""
        missing = n - len(self.consultations)
        if missing <= 0:
            return
        hw = {"Authorization": f"Bearer {self.tokens[0]}"}
        hk = {"Authorization": f"Bearer {self.tokens[1]}"}
        made: list[str] = []
        async with httpx.AsyncClient(base_url=self.api, timeout=120) as http:

            async def one() -> None:
                c = await http.post(
                    "/api/consultations",
                    headers=hw,
                    json={"consulting_site": "koriyama", "consent_cross_border": True},
                )
                c.raise_for_status()
                cid = str(c.json()["id"])
                (await http.post(f"/api/consultations/{cid}/accept", headers=hk)).raise_for_status()
                made.append(cid)

            await _bounded([one] * missing, SETUP_CONCURRENCY // 2)
        self.consultations += made


async def _measure(target: Target, n: int, rounds: int, rep: int) -> Rep:
    samples: list[float] = []
    pairs = target.pairs[:n]

    async def one(sender: ClientConnection, receiver: ClientConnection, to: str, i: int) -> None:
        await sender.send(_message(i, to))
        while True:
            raw = str(await receiver.recv())
            start = raw.find('"t=')
            if start >= 0:
                sent_ns = int(raw[start + 3 : raw.index(";", start)])
                samples.append((time.perf_counter_ns() - sent_ns) / 1e9)
                return

    cpu0, wall0 = target.cpu_s(), time.perf_counter()
    for i in range(rounds):
        await asyncio.gather(*(one(s, r, to, i) for s, r, to in pairs))
    cpu, wall = target.cpu_s() - cpu0, time.perf_counter() - wall0
    ordered = sorted(samples)
    return Rep(
        target.name,
        n,
        rep,
        len(samples),
        statistics.median(ordered) * 1e3,
        _percentile(ordered, 0.95) * 1e3,
        _percentile(ordered, 0.99) * 1e3,
        100 * cpu / wall,
        cpu / len(samples) * 1e6,
    )


def _order(config: str) -> int:
    base = config.split("@")[0]
    return CONFIGS.index(base) if base in CONFIGS else len(CONFIGS)


def _rows(reps: list[Rep]) -> list[Row]:
    rows: list[Row] = []
    bare = {(r.consultations, r.rep): r for r in reps if r.config == "bare"}
    keys = sorted({(r.consultations, _order(r.config), r.config) for r in reps})
    for n, _, config in keys:
        mine = [r for r in reps if r.config == config and r.consultations == n]
        against = [(r, bare[(n, r.rep)]) for r in mine if (n, r.rep) in bare]

        def ratio(
            pick: Callable[[Rep], float], against: list[tuple[Rep, Rep]] = against
        ) -> float | None:
            if not against:
                return None
            return statistics.median(pick(r) / pick(b) for r, b in against)

        rows.append(
            Row(
                config,
                n,
                len(mine),
                sum(r.messages for r in mine),
                statistics.median(r.median_ms for r in mine),
                statistics.median(r.p95_ms for r in mine),
                statistics.median(r.p99_ms for r in mine),
                ratio(lambda r: r.median_ms),
                ratio(lambda r: r.p95_ms),
                ratio(lambda r: r.p99_ms),
                statistics.median(r.cpu_percent for r in mine),
                statistics.median(r.cpu_us_per_message for r in mine),
            )
        )
    return rows


def _print_rows(rows: list[Row]) -> None:
    def x(value: float | None) -> str:
        return "     -" if value is None else f"{value:5.2f}x"

    print(
        f"{'config':20} {'consults':>8} {'reps':>4} {'msgs':>7} {'median':>8} {'p95':>8} {'p99':>8}"
        f"  {'x med':>6} {'x p95':>6} {'x p99':>6}  {'cpu %':>6} {'cpu us/msg':>10}"
    )
    for r in rows:
        print(
            f"{r.config:20} {r.consultations:8d} {r.reps:4d} {r.messages:7d} {r.median_ms:8.2f}"
            f" {r.p95_ms:8.2f} {r.p99_ms:8.2f}  {x(r.ratio_median)} {x(r.ratio_p95)}"
            f" {x(r.ratio_p99)}  {r.cpu_percent:6.1f} {r.cpu_us_per_message:10.1f}",
            flush=True,
        )


@asynccontextmanager
async def _targets(
    configs: list[str], trees: dict[str, Path], max_count: int, tmp: Path, report: Report
) -> AsyncIterator[tuple[list[Target], World]]:
    """Start every configuration's servers (consultations made for ``max_count``)."""
    world = World()
    targets: list[Target] = []
    async with AsyncExitStack() as stack:
        # Sized for every pair on one account and one address, and a benchmark's rate.
        options = {
            "ws_rate_per_s": 1_000_000,
            "ws_burst": 1_000_000,
            "ws_max_per_address": 2 * max_count + 64,
            "ws_max_per_account": max_count + 64,
        }
        data = tmp / "data"
        env = telemed_env(data, **options)
        wanted = [c for c in configs if c != "bare"]
        hub_var = hub_url_setting()
        for config in wanted:
            if config.startswith("redis"):
                if hub_var is None:
                    report.skipped[config] = "the server has no hub_url setting yet"
                elif not redis_available():
                    report.skipped[config] = "redis-server is not installed"
        if trees or any(c not in report.skipped for c in wanted):
            for user, site in USERS:
                add_user(env, user, site)
        for config in configs:
            if config in report.skipped:
                continue
            if config == "bare":
                targets.append(Bare(config, [await stack.enter_async_context(bare_relay())]))
                continue
            config_env = dict(env)
            if config.startswith("redis"):
                assert hub_var is not None
                redis_dir = tmp / config
                redis_dir.mkdir()
                config_env[hub_var] = await stack.enter_async_context(redis_server(redis_dir))
            count = 2 if config == "redis-2" else 1
            procs = await stack.enter_async_context(telemed_servers(config_env, count, config))
            targets.append(Telemed(config, procs, world))
            world.api = world.api or f"http://127.0.0.1:{procs[0].port}"
        for label, tree in trees.items():
            name = f"memory@{label}"
            procs = await stack.enter_async_context(telemed_servers(env, 1, name, tree))
            targets.append(Telemed(name, procs, world))
            world.api = world.api or f"http://127.0.0.1:{procs[0].port}"
        for target in targets:
            print(
                f"# {target.name}: "
                + ", ".join(f"pid {p.pid} port {p.port}" for p in target.procs),
                file=sys.stderr,
                flush=True,
            )
        try:
            yield targets, world
        finally:
            for target in targets:
                await target.close()


def _failed(
    report: Report, live: list[Target], target: Target, n: int, doing: str, exc: BaseException
) -> None:
    """A configuration that failed is reported and left out of what follows."""
    why = f"failed {doing} at {n} consultations: {exc!r}"[:300]
    report.skipped[target.name] = why
    live.remove(target)
    print(f"# {target.name}: {why}", flush=True)


async def relay(
    configs: list[str], trees: dict[str, Path], counts: list[int], messages: int, reps: int
) -> Report:
    raise_fd_limit()
    report = Report(os.getloadavg())
    with tempfile.TemporaryDirectory(prefix="relay-bench-") as tmp:
        async with _targets(configs, trees, max(counts), Path(tmp), report) as (targets, world):
            for config, why in report.skipped.items():
                print(f"# {config}: skipped ({why})", flush=True)
            live = list(targets)  # those that have not failed
            if world.api:
                # Every consultation before any socket: each one made is pushed to every
                # socket of its sites, which would pile up unread on the sockets connected.
                started = time.perf_counter()
                await world.login()
                await world.consult(max(counts))
                # Each consultation is two HTTP requests that write the shared SQLite file
                # (created, accepted, audited): the setup's longest part at 2,000.
                print(
                    f"# {max(counts)} consultations made in {time.perf_counter() - started:.0f} s",
                    file=sys.stderr,
                    flush=True,
                )
            for n in sorted(counts):
                started = time.perf_counter()
                if world.api:
                    await world.login()
                for target in list(live):
                    try:
                        await target.grow(n)
                    except (RuntimeError, OSError, TimeoutError, ConnectionClosed) as exc:
                        _failed(report, live, target, n, "connecting", exc)
                print(
                    f"# {n} consultations: set up in {time.perf_counter() - started:.0f} s, "
                    f"load {os.getloadavg()[0]:.1f}",
                    file=sys.stderr,
                    flush=True,
                )
                rounds = max(10, messages // n)
                for rep in range(reps):
                    for target in live[rep % len(live) :] + live[: rep % len(live)]:
                        try:
                            async with asyncio.timeout(ROUND_TIMEOUT_S * rounds):
                                report.reps.append(await _measure(target, n, rounds, rep))
                        except (TimeoutError, OSError, ConnectionClosed) as exc:
                            _failed(report, live, target, n, "relaying", exc)
                rows = _rows([r for r in report.reps if r.consultations == n])
                _print_rows(rows)
                report.rows += rows
    report.load_after = os.getloadavg()
    return report


async def _idle_clients(
    target: Target, clients: int, connect: Callable[[int], Awaitable[None]], seconds: float
) -> Idle:
    proc = target.procs[0]
    await asyncio.sleep(1.0)
    before = proc.rss_kib()
    await _bounded([partial(connect, i) for i in range(clients)], SETUP_CONCURRENCY)
    await asyncio.sleep(5.0)  # let the connections' start-up work settle
    after = proc.rss_kib()
    cpu0 = proc.cpu_s()
    await asyncio.sleep(seconds)
    cpu = proc.cpu_s() - cpu0
    idle = Idle(
        target.name,
        clients,
        before / 1024,
        after / 1024,
        (after - before) / clients,
        seconds,
        100 * cpu / seconds,
    )
    await target.close()
    return idle


async def idle(clients: int, seconds: float) -> Report:
    """``clients`` idle connections to one telemed process (signed in, in their site's
    lobby) and to the bare relay: memory per connection and CPU while nothing happens."""
    raise_fd_limit()
    report = Report(os.getloadavg())
    with tempfile.TemporaryDirectory(prefix="relay-idle-") as tmp:
        env = telemed_env(
            Path(tmp) / "data",
            ws_max_per_address=clients + 64,
            ws_max_per_account=clients + 64,
        )
        for user, site in USERS:
            add_user(env, user, site)
        async with telemed_servers(env, 1, "memory") as procs:
            world = World(api=f"http://127.0.0.1:{procs[0].port}")
            await world.login()
            target = Telemed("memory", procs, world)

            async def hello(i: int) -> None:
                ws = await target._connect(f"ws://127.0.0.1:{procs[0].port}/ws")
                token = world.tokens[i % 2]
                await ws.send(json.dumps({"type": "hello", "v": 1, "token": token}))
                if json.loads(await ws.recv()).get("type") != "welcome":
                    raise RuntimeError("not welcomed")

            report.idle.append(await _idle_clients(target, clients, hello, seconds))
        async with bare_relay() as proc:
            bare = Bare("bare", [proc])

            async def room(i: int) -> None:
                ws = await bare._connect(f"ws://127.0.0.1:{proc.port}")
                await ws.send(f"idle{i}")
                await ws.recv()

            report.idle.append(await _idle_clients(bare, clients, room, seconds))
    report.load_after = os.getloadavg()
    for r in report.idle:
        print(
            f"{r.server:8} {r.clients} idle clients: RSS {r.rss_before_mib:.1f} -> "
            f"{r.rss_after_mib:.1f} MiB, {r.kib_per_connection:.1f} KiB per connection; "
            f"CPU at idle {r.cpu_percent:.2f} % of a core over {r.idle_seconds:.0f} s"
        )
    return report


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--counts", default="1,100,500", help="consultations (comma-separated)")
    parser.add_argument(
        "--configs", default=",".join(CONFIGS), help=f"from {', '.join(CONFIGS)} (comma-separated)"
    )
    parser.add_argument("--messages", type=int, default=2000, help="per rep and count (about)")
    parser.add_argument("--reps", type=int, default=3, help="rounds of every configuration")
    parser.add_argument(
        "--tree",
        action="append",
        default=[],
        metavar="LABEL=PATH",
        help="also one in-memory process running the code of another checkout (memory@LABEL)",
    )
    parser.add_argument("--idle", type=int, metavar="N", help="measure N idle clients instead")
    parser.add_argument("--idle-seconds", type=float, default=30.0)
    parser.add_argument("--json", type=Path, help="also write the results as JSON here")
    args = parser.parse_args()
    if args.idle:
        report = asyncio.run(idle(args.idle, args.idle_seconds))
    else:
        configs = [c for c in args.configs.split(",") if c]
        unknown = set(configs) - set(CONFIGS)
        if unknown:
            parser.error(f"unknown configurations: {', '.join(sorted(unknown))}")
        counts = [int(c) for c in args.counts.split(",")]
        trees = {}
        for item in args.tree:
            label, _, path = item.partition("=")
            if not label or not path or not (Path(path) / "telemed").is_dir():
                parser.error(f"--tree {item}: give LABEL=PATH of a source checkout")
            trees[label] = Path(path).resolve()
        report = asyncio.run(relay(configs, trees, counts, args.messages, args.reps))
    before, after = report.load_before, report.load_after
    print(
        f"# load average (1 min) {before[0]:.2f} before, {after[0]:.2f} after, "
        f"{os.cpu_count()} cores"
    )
    if args.json:
        args.json.write_text(json.dumps(asdict(report), indent=2))


if __name__ == "__main__":
    main()
