"""docs/deployment.md run as written: one Redis, two ``telemed serve`` processes (separate OS
processes, one database file, ``hub_url`` at the test's Redis) behind Debian's nginx with
TLS, the document's settings and nginx configuration taken from it (ports and files made
local), so the document cannot drift from what works.

Two clients (the Python signaling client, which reconnects with backoff) meet in one
consultation through nginx, one on each process: nginx's ``least_conn`` sends the second
socket to the process without one, and each process's own ``/healthz`` shows one socket.
The first process is killed with SIGKILL: its client comes back through nginx on the
other and re-joins by itself, the other client sees nothing but the moved peer's
``peer-left`` and ``peer-joined``, and an offer is relayed each way after it. Times are
written to the test artifacts, not asserted on."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import os
import re
import signal
import socket
import ssl
import subprocess
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

from runtime.tasks import cancel_and_wait
from signaling.auth import SecretHasher
from signaling.client import SignalingClient, UserCredentials
from signaling.schema import (
    ConsultationAction,
    Joined,
    Offer,
    PeerJoined,
    PeerLeft,
    Role,
    ServerMessage,
    Welcome,
)
from signaling.server.hub_redis import process_of
from signaling.storage import accounts
from signaling.storage.database import Database
from telemed import tls
from telemed.settings import Settings
from tests import nginx
from tests.helpers import SECRET, TEST_HASH_COST, eventually
from tests.processes import listening, port_of, start_serve
from tests.redis_server import redis_server

# Four processes (Redis, two servers, nginx): a few seconds to start; the reconnection is
# measured and written to the artifacts, not asserted on.
pytestmark = pytest.mark.slow

DOC = Path(__file__).resolve().parents[2] / "docs" / "deployment.md"
USERS = {
    "doctor.wonju": ("wonju", "failover-test-password-wonju"),
    "doctor.koriyama": ("koriyama", "failover-test-password-koriyama"),
}
#: The hub's liveness for the test (10 s by default): a killed process's peers are reported
#: gone sooner, and the test is shorter.
LIVENESS_S = "2.0"


def doc_block(language: str) -> str:
    """The first ``language`` code block of docs/deployment.md."""
    match = re.search(rf"```{language}\n(.*?)```", DOC.read_text(), re.S)
    assert match is not None, f"no {language} block in {DOC.name}"
    return match.group(1)


def _replace(text: str, old: str, new: str) -> str:
    """``text`` with ``old`` replaced; ``old`` must be there (the document changed if not)."""
    assert old in text, f"docs/deployment.md no longer has {old!r}"
    return text.replace(old, new)


async def _seed(data_dir: Path) -> None:
    config = Settings(data_dir=data_dir, secret_key=SECRET).server_config()
    db = Database(config.database_url)
    try:
        await db.migrate()
        await accounts.sync_sites(db, config.sites)
        hasher = SecretHasher(TEST_HASH_COST)
        for name, (site, password) in USERS.items():
            await accounts.add_user(db, name, password, Role.DOCTOR, site, name, hasher)
    finally:
        await db.close()


async def _wait_until_serving(
    url: str, proc: subprocess.Popen[bytes], what: str, context: ssl.SSLContext | bool = False
) -> None:
    """Until ``url`` answers (the sockets accept at once: they were bound here)."""
    async with httpx.AsyncClient(verify=context, timeout=30) as http:
        for _ in range(600):
            if proc.poll() is not None:
                raise AssertionError(f"{what} exited ({proc.returncode}); its log says why")
            try:
                if (await http.get(url)).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            await asyncio.sleep(0.05)
    raise AssertionError(f"{what} does not answer at {url}")


@dataclass
class Cluster:
    """The deployment: nginx at ``url`` (HTTPS), the server processes behind it."""

    url: str
    ca_file: Path
    servers: list[subprocess.Popen[bytes]]
    server_ports: list[int]
    directory: Path

    async def health(self, index: int) -> dict[str, object]:
        """A process's own ``/healthz``, asked on its port (not through nginx)."""
        async with httpx.AsyncClient() as http:
            r = await http.get(f"http://127.0.0.1:{self.server_ports[index]}/healthz")
            return dict(r.json())


def _start(
    tmp_path: Path, redis_url: str, cert: tls.DemoCertificate, nginx_path: str
) -> tuple[list[subprocess.Popen[bytes]], list[int], str]:
    """Starts the two servers and nginx (in that order in the list returned), with the
    server ports and nginx's HTTPS address. Every port is bound here and handed over: the
    servers take theirs with ``--fd``, nginx its HTTPS one through ``NGINX`` (its
    inherited-sockets variable). Each process's output goes to a file in ``tmp_path``."""
    toml = _replace(doc_block("toml"), "redis://127.0.0.1:6379/0", redis_url)
    (tmp_path / "telemed.toml").write_text(toml)
    env = {
        **os.environ,
        "TELEMED_DATA_DIR": str(tmp_path / "data"),
        "TELEMED_SECRET_KEY": SECRET,
        "TELEMED_LOG_LEVEL": "warning",
        "TELEMED_SERVER__HUB_LIVENESS_S": LIVENESS_S,
    }
    procs: list[subprocess.Popen[bytes]] = []
    socks = [listening(), listening(), listening()]
    ports = [port_of(s) for s in socks]
    try:
        for sock in socks[:2]:
            with open(tmp_path / f"server-{port_of(sock)}.log", "wb") as log:
                procs.append(
                    start_serve(sock, env=env, config=tmp_path / "telemed.toml", stderr=log)
                )
        https = socks[2]
        procs.append(
            nginx.start(  # its error log has it all
                nginx_path,
                tmp_path,
                _nginx_site(https, cert, ports[:2]),
                main=f"worker_processes 1;\nerror_log {tmp_path}/nginx-error.log notice;",
                http=f"access_log {tmp_path}/nginx-access.log;",
                inherited=https,
            )
        )
    except BaseException:
        for proc in procs:
            _stop(proc)
        raise
    finally:
        for sock in socks:
            sock.close()
    return procs, ports[:2], f"https://127.0.0.1:{ports[2]}"


def _nginx_site(https: socket.socket, cert: tls.DemoCertificate, ports: list[int]) -> str:
    site = doc_block("nginx")
    site = _replace(site, "listen 443 ssl;", f"listen 127.0.0.1:{port_of(https)} ssl;")
    site = _replace(site, "listen [::]:443 ssl;", "")
    site = _replace(site, "/etc/ssl/telemed/fullchain.pem", str(cert.cert_file))
    site = _replace(site, "/etc/ssl/telemed/privkey.pem", str(cert.key_file))
    for documented, port in zip((8001, 8002), ports, strict=True):
        site = _replace(site, f"server 127.0.0.1:{documented} ", f"server 127.0.0.1:{port} ")
    return site


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.terminate()
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


@pytest.fixture
async def cluster(tmp_path: Path) -> AsyncIterator[Cluster]:
    nginx_path = nginx.binary("failover")
    cert = await asyncio.to_thread(
        tls.demo_certificate, tmp_path / "tls", ["127.0.0.1", "localhost"]
    )
    await _seed(tmp_path / "data")
    async with redis_server(tmp_path / "redis") as redis:
        procs, ports, url = await asyncio.to_thread(_start, tmp_path, redis.url, cert, nginx_path)
        try:
            for proc, port in zip(procs, ports, strict=False):
                await _wait_until_serving(f"http://127.0.0.1:{port}/healthz", proc, "telemed")
            context = ssl.create_default_context(cafile=cert.cert_file)
            await _wait_until_serving(f"{url}/healthz", procs[2], "nginx", context)
            yield Cluster(url, cert.cert_file, procs[:2], ports, tmp_path)
        finally:
            for proc in reversed(procs):
                await asyncio.to_thread(_stop, proc)


@dataclass
class Heard:
    """What one client receives, each with the monotonic time it was taken."""

    client: SignalingClient
    messages: list[tuple[float, ServerMessage]] = field(default_factory=list)

    async def listen(self) -> None:
        while True:
            message = await self.client.recv()
            self.messages.append((time.monotonic(), message))

    def since(self, t: float) -> list[ServerMessage]:
        return [m for at, m in self.messages if at >= t]


def _client(cluster: Cluster, name: str) -> SignalingClient:
    return SignalingClient(
        cluster.url, UserCredentials(name, USERS[name][1]), ca_file=cluster.ca_file
    )


def _write_figures(name: str, figures: dict[str, object]) -> None:
    """The measured times, kept with the other tests' figures (not asserted on)."""
    path = Path(
        os.environ.get("TELEMED_TEST_ARTIFACTS", Path(__file__).parents[2] / "test-artifacts")
    )
    path.mkdir(parents=True, exist_ok=True)
    (path / f"{name}.json").write_text(json.dumps(figures, indent=2) + "\n")


async def _offers_cross(
    heard: dict[SignalingClient, Heard], one: SignalingClient, other: SignalingClient, t: float
) -> None:
    """An offer from each of ``one`` and ``other`` to the other reaches it (sent after ``t``)."""
    assert one.peer_id is not None and other.peer_id is not None
    await one.send(Offer(to=other.peer_id, sdp="v=0\r\n"))
    await other.send(Offer(to=one.peer_id, sdp="v=0\r\n"))
    for receiver, sender in ((other, one.peer_id), (one, other.peer_id)):
        await eventually(
            functools.partial(_offered, heard[receiver], sender, t),
            what=f"an offer from {sender} relayed",
        )


def _offered(heard: Heard, sender: str, t: float) -> bool:
    return any(isinstance(m, Offer) and m.sender == sender for m in heard.since(t))


def _about(message: ServerMessage, peer_ids: set[str]) -> bool:
    if isinstance(message, PeerLeft):
        return message.peer_id in peer_ids
    if isinstance(message, PeerJoined):
        return message.peer.peer_id in peer_ids
    return False


@dataclass
class Meeting:
    """The two doctors in one consultation through nginx, one socket on each process."""

    wonju: SignalingClient
    koriyama: SignalingClient
    heard: dict[SignalingClient, Heard]
    consultation_id: str
    #: Wonju's first connection and join through nginx: the baseline of the same run.
    first_join_s: float


@contextlib.asynccontextmanager
async def _meeting(cluster: Cluster) -> AsyncIterator[Meeting]:
    wonju, koriyama = _client(cluster, "doctor.wonju"), _client(cluster, "doctor.koriyama")
    heard = {c: Heard(c) for c in (wonju, koriyama)}
    listeners = [asyncio.create_task(h.listen()) for h in heard.values()]
    try:
        started = time.monotonic()
        await wonju.start()  # log in, open the socket, welcome
        connect_s = time.monotonic() - started
        # The consultation, over HTTPS through nginx.
        row = await wonju.request_consultation("koriyama", False)
        await koriyama.start()
        await koriyama.consultation_action(row.id, ConsultationAction.ACCEPT)
        started = time.monotonic()
        await wonju.join(row.id)
        first_join_s = connect_s + time.monotonic() - started
        await koriyama.join(row.id)
        # One socket on each process (least_conn: the second went where there was none),
        # as each process counts its own.
        assert [await cluster.health(i) for i in (0, 1)] == [
            {"status": "ok", "database": "ok", "connections": 1}
        ] * 2
        yield Meeting(wonju, koriyama, heard, row.id, first_join_s)
    finally:
        await cancel_and_wait(listeners)
        await wonju.close()
        await koriyama.close()


@dataclass
class Moved:
    """Who moved when the first process was killed, and when."""

    moved: SignalingClient
    stayed: SignalingClient
    killed_at: float
    old_id: str
    new_id: str
    joined: Joined
    #: From the kill to the moved client's ``joined`` on the other process.
    rejoined_s: float


async def _kill_the_first(cluster: Cluster, meeting: Meeting) -> Moved:
    """SIGKILL the first process: whichever client it carried comes back through nginx on
    the other and re-joins by itself (asserted here), the other keeps its socket."""
    heard = meeting.heard
    killed_at = time.monotonic()
    cluster.servers[0].send_signal(signal.SIGKILL)
    moved = await eventually(
        lambda: next((c for c in heard if c.connections == 2), None),
        timeout=15,
        what="a client reconnected",
    )
    stayed = meeting.koriyama if moved is meeting.wonju else meeting.wonju
    old_id = next(m.peer_id for _, m in heard[moved].messages if isinstance(m, Welcome))
    back: Joined = await eventually(
        lambda: next((m for m in heard[moved].since(killed_at) if isinstance(m, Joined)), None),
        timeout=15,
        what="the moved client re-joined",
    )
    rejoined_s = next(at for at, m in heard[moved].messages if m is back) - killed_at
    assert moved.peer_id is not None and moved.peer_id != old_id
    assert back.consultation.id == meeting.consultation_id
    assert stayed.peer_id in [p.peer_id for p in back.peers]
    assert cluster.servers[0].wait(timeout=5) == -signal.SIGKILL
    assert stayed.connections == 1
    # Both sockets are on the survivor now.
    assert (await cluster.health(1))["connections"] == 2
    return Moved(moved, stayed, killed_at, old_id, moved.peer_id, back, rejoined_s)


async def test_a_killed_process_s_client_comes_back_through_the_other(cluster: Cluster) -> None:
    async with _meeting(cluster) as meeting:
        wonju, koriyama, heard = meeting.wonju, meeting.koriyama, meeting.heard
        assert wonju.peer_id is not None and koriyama.peer_id is not None
        # Each peer id names its process: two processes, one room.
        assert process_of(wonju.peer_id) != process_of(koriyama.peer_id)
        await eventually(
            lambda: any(_about(m, {koriyama.peer_id or ""}) for _, m in heard[wonju].messages),
            what="Wonju told Koriyama joined",
        )
        # Relayed from one process to the other (through Redis).
        await _offers_cross(heard, wonju, koriyama, time.monotonic())

        after = await _kill_the_first(cluster, meeting)
        seen = await _the_moved_peer_seen(meeting, after)
        left = [m for m in seen if isinstance(m, PeerLeft)]
        came = [m for m in seen if isinstance(m, PeerJoined)]
        assert [m.peer_id for m in left] == [after.old_id]
        assert [m.peer.peer_id for m in came] == [after.new_id]
        assert came[0].peer.instance == after.moved.instance  # a reconnection, not somebody new
        # The consultation goes on: an offer each way, both now on the survivor.
        await _offers_cross(heard, after.moved, after.stayed, time.monotonic())
        _write_figures(
            "failover_proxy",
            {
                "note": "two server processes, nginx and Redis on a shared, loaded machine",
                "first_connect_and_join_s": round(meeting.first_join_s, 3),
                "kill_to_rejoined_s": round(after.rejoined_s, 3),
                "ratio_rejoin_to_first_join": round(after.rejoined_s / meeting.first_join_s, 2),
                "moved_client_joined_with": [p.peer_id for p in after.joined.peers],
                "other_client_saw": [type(m).__name__ for m in seen],
            },
        )


async def test_the_moved_peer_leaves_before_it_comes_back(cluster: Cluster) -> None:
    """As when one process notices a socket closed: the moved client is told of the other
    member only, not of its own former self, and the other sees it leave, then return."""
    async with _meeting(cluster) as meeting:
        after = await _kill_the_first(cluster, meeting)
        seen = await _the_moved_peer_seen(meeting, after)
        assert [p.peer_id for p in after.joined.peers if p.peer_id != after.new_id] == [
            after.stayed.peer_id
        ]
        assert [type(m).__name__ for m in seen] == ["PeerLeft", "PeerJoined"]


async def _the_moved_peer_seen(meeting: Meeting, after: Moved) -> list[ServerMessage]:
    """What the client that stayed was told after the kill: two messages, both about the
    moved peer (its old or new id), and nothing else."""
    about = {after.old_id, after.new_id}
    heard = meeting.heard[after.stayed]
    await eventually(
        lambda: sum(_about(m, about) for m in heard.since(after.killed_at)) >= 2,
        timeout=15,
        what="the moved peer's leaving and coming back",
    )
    seen = heard.since(after.killed_at)
    assert len(seen) == 2 and all(_about(m, about) for m in seen), seen
    return seen
