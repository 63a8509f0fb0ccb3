"""The WAN test bed: two sites behind NAT and a cloud, in Linux network namespaces.

::

    Koriyama host 10.1.0.2 ── router (NAT) 100.64.1.2 ──┐
                                                         cloud: 203.0.113.10 (service address)
    Wonju host    10.2.0.2 ── router (NAT) 100.64.2.2 ──┘   telemed serve :8000, coturn :3478,
                                                             the impairment relay :3479 -> coturn

Each site's router masquerades its private subnet behind its public address and lets in
only replies (conntrack ESTABLISHED/RELATED), as a home or hospital router does; the cloud
even routes the private subnets to the routers (a leaky ISP), so it is the routers that keep
the sites unreachable, not a missing route. The server hands out a STUN URL (coturn
directly: server-reflexive candidates are the routers' real mappings) and a TURN URL
through the userspace impairment relay (:mod:`benchmarks.impair`; this kernel has no netem),
so every relayed packet crosses the impaired path.

Every process of the bed is a real subprocess started with ``ip netns exec NS ...``: the
server, coturn, the relay, the bedside gateway (simulated oximeter, synthetic camera) and
the doctor (:mod:`tests.wan.doctor`). :class:`WanBed` is an async context manager that
builds all of it and removes it on exit, even after a failure; it also removes what a
crashed earlier run left (namespaces with this prefix whose process is gone). Namespace names
carry the pid (``wb<pid>c``, ``wb<pid>rk``, ...); interface names are short and fixed inside
each namespace (veths are created directly in their namespaces), so Linux's 15-character
limit is never near. Needs root, ``ip``, ``iptables`` and coturn: :func:`missing` says what
is absent.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import signal
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from signaling.auth import SecretHasher
from signaling.config import DEFAULT_SITES
from signaling.schema import Role
from signaling.storage import accounts
from signaling.storage.database import Database, sqlite_url
from tests.helpers import PASSWORD, SECRET, TEST_HASH_COST

PREFIX = "wb"
SERVICE_IP = "203.0.113.10"
SERVER_PORT = 8000
TURN_PORT = 3478
RELAY_PORT = 3479
TURN_SECRET = "wan-bed-coturn-secret"  # a throwaway coturn in a namespace
GATEWAY = "bed-1.koriyama"
GATEWAY_KEY = "bed-1-koriyama-key-for-the-wan-bed-0123"
TECH = "tech.koriyama"
DOCTOR = "doctor.wonju"
#: For the bed's own stand-ins (the relay, the doctor), not the code under test: asyncio's
#: debug mode (tests/conftest.py) costs CPU that the loaded machine's path then lacks.
_NO_ASYNCIO_DEBUG = {"PYTHONASYNCIODEBUG": ""}
#: What the bed's processes log (relayed to the test's output when it fails).
TAIL_LINES = 40


class BedError(RuntimeError):
    """A command building or driving the bed failed; the message has its output."""


def missing() -> str | None:
    """Why the bed cannot be built here (None: it can)."""
    if os.geteuid() != 0:
        return "the WAN bed needs root (network namespaces, veths, iptables)"
    for tool, package in (("ip", "iproute2"), ("iptables", "iptables"), ("turnserver", "coturn")):
        if shutil.which(tool) is None:
            return f"the WAN bed needs {tool!r} (Debian package {package}: scripts/bootstrap)"
    return None


async def run(*args: str, check: bool = True) -> str:
    """Run a command to completion; its standard output. Raises BedError when it fails."""
    proc = await asyncio.create_subprocess_exec(
        *args, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    out, err = await proc.communicate()
    if check and proc.returncode != 0:
        raise BedError(f"{' '.join(args)}: exit {proc.returncode}: {err.decode().strip()}")
    return out.decode()


@dataclass(frozen=True)
class Namespace:
    name: str

    async def ip(self, *args: str) -> str:
        return await run("ip", "-n", self.name, *args)

    async def exec(self, *args: str, check: bool = True) -> str:
        return await run("ip", "netns", "exec", self.name, *args, check=check)

    async def iptables(self, *args: str) -> str:
        return await self.exec("iptables", "-w", *args)

    async def sysctl(self, *settings: str) -> None:
        await self.exec("sysctl", "-q", "-w", *settings)


@dataclass
class Site:
    """A site: its router (public address on ``wan``, private subnet on ``lan``) and the one
    host behind it."""

    name: str
    router: Namespace
    host: Namespace
    public_ip: str
    host_ip: str
    gateway_ip: str

    async def block_udp(self, on: bool) -> None:
        """Drop (or stop dropping) every UDP datagram the site sends out: a firewall that
        lets the signaling's TCP through but not the media."""
        rule = ("FORWARD", "-i", "lan", "-p", "udp", "-j", "DROP")
        await self.router.iptables("-I" if on else "-D", *rule)

    async def remap(self, new_public_ip: str) -> None:
        """The site's public address changes (a DHCP lease or a mobile uplink): every NAT
        mapping is gone (the kernel drops the masqueraded flows of a removed address) and
        the next packets leave from new ones."""
        await self.router.ip("addr", "add", f"{new_public_ip}/24", "dev", "wan")
        await self.router.ip("addr", "del", f"{self.public_ip}/24", "dev", "wan")
        self.public_ip = new_public_ip


@dataclass
class Process:
    """A subprocess of the bed; its output (both streams) in ``log`` unless it is read."""

    name: str
    proc: asyncio.subprocess.Process
    log: Path

    def tail(self, lines: int = TAIL_LINES) -> str:
        try:
            text = self.log.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    async def stop(self, sig: int = signal.SIGTERM, grace_s: float = 5.0) -> None:
        if self.proc.returncode is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            self.proc.send_signal(sig)
        try:
            async with asyncio.timeout(grace_s):
                await self.proc.wait()
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                self.proc.kill()
            await self.proc.wait()


@dataclass
class DoctorProcess:
    """The Wonju doctor (:mod:`tests.wan.doctor`): its latest status line and the events it
    printed, read from its standard output as they come."""

    process: Process
    #: Processes without which waiting is pointless (the server): one that exited fails
    #: the wait at once, with its output.
    vital: list[Process] = field(default_factory=list)
    status: dict[str, Any] = field(default_factory=dict)
    events: list[dict[str, Any]] = field(default_factory=list)
    consultation: str | None = None
    reader: asyncio.Task[None] | None = None

    async def read(self) -> None:
        stdout = self.process.proc.stdout
        assert stdout is not None
        with self.process.log.open("a") as log:
            while line := await stdout.readline():
                log.write(line.decode(errors="replace"))
                log.flush()
                try:
                    item = json.loads(line)
                except ValueError:
                    continue
                if "status" in item:
                    self.status = item["status"]
                else:
                    self.events.append(item)
                    self.consultation = item.get("consultation", self.consultation)

    def get(self, key: str) -> Any:
        return self.status.get(key, 0)

    async def until(self, condition: Callable[[], bool], seconds: float, what: str) -> float:
        """Wait for ``condition`` (checked on each status line); the wall time it held."""
        try:
            async with asyncio.timeout(seconds):
                while not condition():
                    for process in (self.process, *self.vital):
                        if process.proc.returncode is not None:
                            raise BedError(f"the {process.name} exited: {process.tail()}")
                    await asyncio.sleep(0.05)
        except TimeoutError:
            raise AssertionError(
                f"not within {seconds} s: {what}; doctor's last status {self.status}"
            ) from None
        return time.time()

    def resumed_after(self, kind: str, since: float) -> float | None:
        """When ``kind`` (``video``, ``waveform``) first arrived after wall time ``since``
        following a gap (the doctor says so for every gap over a second)."""
        for event in self.events:
            if event.get("resumed") == kind and event["t"] >= since:
                return float(event["t"])
        return None


class WanBed:
    """Builds the bed in ``__aenter__`` (namespaces, links, NAT, coturn, the relay, the
    server, the accounts) and removes it in ``__aexit__``. :meth:`start_gateway` and
    :meth:`start_doctor` add the two ends of the call; everything started is stopped on
    exit. ``profile``: the impairment relay's path (:data:`benchmarks.impair.PROFILES`)."""

    def __init__(self, workdir: Path, profile: str = "wired", *, services: bool = True) -> None:
        """``services``: start coturn, the relay and the server (False: the network alone)."""
        self.workdir = workdir
        self.profile = profile
        self.services = services
        tag = f"{PREFIX}{os.getpid()}"
        self.cloud = Namespace(f"{tag}c")
        self.koriyama = Site(
            "koriyama",
            Namespace(f"{tag}rk"),
            Namespace(f"{tag}hk"),
            public_ip="100.64.1.2",
            host_ip="10.1.0.2",
            gateway_ip="100.64.1.1",
        )
        self.wonju = Site(
            "wonju",
            Namespace(f"{tag}rw"),
            Namespace(f"{tag}hw"),
            public_ip="100.64.2.2",
            host_ip="10.2.0.2",
            gateway_ip="100.64.2.1",
        )
        self.namespaces = [
            self.cloud,
            self.koriyama.router,
            self.koriyama.host,
            self.wonju.router,
            self.wonju.host,
        ]
        self.processes: list[Process] = []
        self.coturn: Process | None = None
        self.relay: Process | None = None
        self.server: Process | None = None
        self.server_url = f"http://{SERVICE_IP}:{SERVER_PORT}"
        self._doctors: list[DoctorProcess] = []

    # -- building --------------------------------------------------------------------------

    async def __aenter__(self) -> WanBed:
        await remove_stale()
        try:
            await self._build_network()
            if self.services:
                await self._prepare_accounts()
                await asyncio.gather(self.start_coturn(), self._start_relay())
                # Not waited for: it takes long to start on a loaded machine, and the two
                # ends of the call wait for it themselves (tests.wan.launch).
                self.server = await self._start_server()
        except BaseException:
            await self.close()
            raise
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def _build_network(self) -> None:
        for ns in self.namespaces:
            await run("ip", "netns", "add", ns.name)
            await ns.ip("link", "set", "lo", "up")
        cloud = self.cloud
        await cloud.ip("addr", "add", f"{SERVICE_IP}/32", "dev", "lo")
        await cloud.sysctl("net.ipv4.ip_forward=1")
        for n, site in enumerate((self.koriyama, self.wonju), start=1):
            router, host = site.router, site.host
            # Each veth is made with its ends in their namespaces: the names are per
            # namespace (the cloud's end is named for the site).
            await run(
                *("ip", "link", "add", "wan", "netns", router.name, "type", "veth"),
                *("peer", "name", site.name[:8], "netns", cloud.name),
            )
            await run(
                *("ip", "link", "add", "lan", "netns", router.name, "type", "veth"),
                *("peer", "name", "eth0", "netns", host.name),
            )
            await cloud.ip("addr", "add", f"{site.gateway_ip}/24", "dev", site.name[:8])
            await cloud.ip("link", "set", site.name[:8], "up")
            # The leaky ISP: the private subnet routed to the site; its router must refuse.
            await cloud.ip("route", "add", f"10.{n}.0.0/24", "via", site.public_ip)
            await router.ip("addr", "add", f"{site.public_ip}/24", "dev", "wan")
            await router.ip("addr", "add", f"10.{n}.0.1/24", "dev", "lan")
            for link in ("wan", "lan"):
                await router.ip("link", "set", link, "up")
            await router.ip("route", "add", "default", "via", site.gateway_ip)
            # A new public address (Site.remap) takes over the connected route and the
            # default route instead of taking them away with the old one.
            await router.sysctl(
                "net.ipv4.ip_forward=1",
                "net.ipv4.conf.all.promote_secondaries=1",
                "net.ipv4.conf.wan.promote_secondaries=1",
            )
            await router.iptables("-t", "nat", "-A", "POSTROUTING", "-o", "wan", "-j", "MASQUERADE")
            await router.iptables("-P", "FORWARD", "DROP")
            await router.iptables("-A", "FORWARD", "-i", "lan", "-o", "wan", "-j", "ACCEPT")
            await router.iptables(
                *("-A", "FORWARD", "-i", "wan", "-o", "lan", "-m", "conntrack"),
                *("--ctstate", "ESTABLISHED,RELATED", "-j", "ACCEPT"),
            )
            await host.ip("addr", "add", f"{site.host_ip}/24", "dev", "eth0")
            await host.ip("link", "set", "eth0", "up")
            await host.ip("route", "add", "default", "via", f"10.{n}.0.1")

    async def _prepare_accounts(self) -> None:
        """The server's database, made here before it starts (no way in from outside the
        bed): the technician and the bedside at Koriyama, the doctor at Wonju."""
        db = Database(sqlite_url(self.workdir / "telemed.sqlite3"))
        hasher = SecretHasher(TEST_HASH_COST)
        try:
            await db.migrate()
            await accounts.sync_sites(db, DEFAULT_SITES)
            await accounts.add_user(db, TECH, PASSWORD, Role.TECHNICIAN, "koriyama", TECH, hasher)
            await accounts.add_user(db, DOCTOR, PASSWORD, Role.DOCTOR, "wonju", DOCTOR, hasher)
            await accounts.add_gateway(db, GATEWAY, "koriyama", GATEWAY_KEY, hasher)
        finally:
            await db.close()
        (self.workdir / "gateway.key").write_text(GATEWAY_KEY)

    async def spawn(
        self,
        ns: Namespace,
        name: str,
        *args: str,
        env: dict[str, str] | None = None,
        read_stdout: bool = False,
        stdin: bool = False,
    ) -> Process:
        """Start ``args`` in ``ns`` (``ip netns exec`` execs it: the pid is the process's)."""
        log = self.workdir / f"{name}.log"
        out = log.open("ab")
        try:
            proc = await asyncio.create_subprocess_exec(
                "ip",
                "netns",
                "exec",
                ns.name,
                *args,
                env={**os.environ, **(env or {})},
                stdin=asyncio.subprocess.PIPE if stdin else asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE if read_stdout else out,
                stderr=out,
            )
        finally:
            out.close()  # the child holds its own copy
        process = Process(name, proc, log)
        self.processes.append(process)
        return process

    async def start_coturn(self) -> None:
        """coturn on the cloud's service address (again after :meth:`stop_coturn`)."""
        assert self.coturn is None or self.coturn.proc.returncode is not None
        self.coturn = await self.spawn(
            self.cloud,
            "coturn",
            shutil.which("turnserver") or "turnserver",
            *("-n", f"--listening-ip={SERVICE_IP}", f"--listening-port={TURN_PORT}"),
            *(f"--relay-ip={SERVICE_IP}", "--min-port=49152", "--max-port=65535"),
            *("--use-auth-secret", f"--static-auth-secret={TURN_SECRET}", "--realm=telemed"),
            *("--no-tls", "--no-dtls", "--no-cli", "--log-file=stdout"),
            f"--pidfile={self.workdir / 'turn.pid'}",
        )
        await self._listening(self.cloud, "u", TURN_PORT, self.coturn)

    async def stop_coturn(self) -> None:
        """coturn crashes: killed, its allocations gone with it."""
        assert self.coturn is not None
        await self.coturn.stop(signal.SIGKILL)

    async def _start_relay(self) -> None:
        self.relay = await self.spawn(
            self.cloud,
            "relay",
            *(sys.executable, "-m", "tests.wan.relay", SERVICE_IP, str(RELAY_PORT)),
            *(SERVICE_IP, str(TURN_PORT), self.profile),
            stdin=True,
            env=_NO_ASYNCIO_DEBUG,
        )
        await self._listening(self.cloud, "u", RELAY_PORT, self.relay)

    async def relay_command(self, line: str) -> None:
        """``blackout on``, ``blackout off`` or ``profile NAME`` to the impairment relay."""
        assert self.relay is not None and self.relay.proc.stdin is not None
        self.relay.proc.stdin.write(line.encode() + b"\n")
        await self.relay.proc.stdin.drain()

    async def _start_server(self) -> Process:
        turn = {
            "urls": [f"turn:{SERVICE_IP}:{RELAY_PORT}?transport=udp"],
            "secret": TURN_SECRET,
        }
        env = {
            "TELEMED_DATA_DIR": str(self.workdir / "server"),
            "TELEMED_DATABASE_URL": sqlite_url(self.workdir / "telemed.sqlite3"),
            "TELEMED_SECRET_KEY": SECRET,
            "TELEMED_LOG_LEVEL": "warning",
            "TELEMED_SERVER__STUN_URLS": json.dumps([f"stun:{SERVICE_IP}:{TURN_PORT}"]),
            "TELEMED_SERVER__TURN": json.dumps(turn),
        }
        return await self.spawn(
            self.cloud,
            "server",
            *(sys.executable, "-m", "telemed", "serve"),
            *("--host", SERVICE_IP, "--port", str(SERVER_PORT)),
            env=env,
        )

    async def _listening(
        self, ns: Namespace, proto: str, port: int, process: Process, seconds: float = 20
    ) -> None:
        """Wait until something listens on ``port`` in ``ns`` (``ss``: the bed's outside
        cannot connect in)."""
        try:
            async with asyncio.timeout(seconds):
                while True:
                    if process.proc.returncode is not None:
                        raise BedError(f"{process.name} exited: {process.tail()}")
                    out = await ns.exec("ss", "-Hln" + proto, f"sport = :{port}")
                    if out.strip():
                        return
                    await asyncio.sleep(0.1)
        except TimeoutError:
            raise BedError(
                f"{process.name} not listening in {seconds} s: {process.tail()}"
            ) from None

    # -- the two ends of the call ----------------------------------------------------------

    async def start_gateway(
        self, *, relay_only: bool = False, env: dict[str, str] | None = None
    ) -> Process:
        """The Koriyama bedside: a real ``telemed gateway`` with a simulated oximeter and a
        synthetic camera, following its site's consultation, logging at info. ``env``: more
        environment (e.g. a ``PYTHONPATH`` whose ``sitecustomize`` takes a fix out, to see
        a test fail without it)."""
        return await self.spawn(
            self.koriyama.host,
            "gateway",
            *(sys.executable, "-m", "tests.wan.launch", self.server_url),
            *("--log-level", "info", "gateway"),
            *("--server", self.server_url, "--name", GATEWAY, "--site", "koriyama"),
            *("--key-file", str(self.workdir / "gateway.key"), "--simulate", "cms50"),
            *("--camera", "synthetic", "--size", "320x240"),
            *(("--relay-only",) if relay_only else ()),
            env={"TELEMED_DATA_DIR": str(self.workdir / "gateway"), **(env or {})},
        )

    async def start_doctor(self, *, relay_only: bool = False) -> DoctorProcess:
        """The Wonju doctor (:mod:`tests.wan.doctor`): the Koriyama technician's request
        accepted, the room joined, every offer answered; reports what arrives."""
        process = await self.spawn(
            self.wonju.host,
            "doctor",
            *(sys.executable, "-m", "tests.wan.doctor", self.server_url),
            *("--tech", TECH, "--doctor", DOCTOR, "--password", PASSWORD),
            *(("--relay-only",) if relay_only else ()),
            read_stdout=True,
            env=_NO_ASYNCIO_DEBUG,
        )
        doctor = DoctorProcess(process, vital=[p for p in (self.server,) if p is not None])
        doctor.reader = asyncio.create_task(doctor.read(), name="wan-doctor-reader")
        self._doctors.append(doctor)
        return doctor

    async def udp_probe(
        self,
        src: Namespace,
        dst: Namespace,
        dst_ip: str,
        *,
        bind: str = "0.0.0.0",  # noqa: S104 (a probe inside the bed's own namespace)
        port: int = 5000,
    ) -> tuple[str | None, bool]:
        """A datagram sent from ``src`` to ``dst_ip:port``, where ``dst`` listens on
        ``bind`` and answers: the source address the listener saw (None: nothing arrived)
        and whether the answer came back to the sender."""
        listener = await self.spawn(
            dst,
            "probe-listener",
            sys.executable,
            "-I",
            "-c",
            _LISTEN,
            bind,
            str(port),
            read_stdout=True,
        )
        await self._listening(dst, "u", port, listener)
        done = await src.exec(sys.executable, "-I", "-c", _SEND, dst_ip, str(port))
        assert listener.proc.stdout is not None
        seen = (await listener.proc.stdout.read()).decode().strip()
        await listener.proc.wait()
        return (None if seen == "none" else seen), done.strip() == "reply"

    def logs(self) -> str:
        """The tail of every process's output, for a failing test's report."""
        return "\n".join(f"--- {p.name} ---\n{p.tail()}" for p in self.processes)

    # -- removing --------------------------------------------------------------------------

    async def close(self) -> None:
        for process in reversed(self.processes):
            await process.stop()
        for doctor in self._doctors:
            if doctor.reader is not None:
                doctor.reader.cancel()
                await asyncio.wait([doctor.reader])
        await remove(ns.name for ns in self.namespaces)


# The probe's two ends: stdlib only, so they start fast (-I: no site, no environment).
_LISTEN = """
import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
# Bound to the address it is reached at: a wildcard socket answers from the address of the
# route back, which is not the one the NAT'd flow was sent to.
s.bind((sys.argv[1], int(sys.argv[2])))
s.settimeout(2.5)
try:
    data, peer = s.recvfrom(64)
    s.sendto(b"back", peer)
    print(peer[0])
except TimeoutError:
    print("none")
"""
_SEND = """
import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.settimeout(0.5)
for _ in range(3):
    s.sendto(b"probe", (sys.argv[1], int(sys.argv[2])))
    try:
        s.recvfrom(64)
        print("reply")
        break
    except TimeoutError:
        pass
else:
    print("none")
"""


async def namespaces() -> list[str]:
    out = await run("ip", "netns", "list")
    return [line.split()[0] for line in out.splitlines() if line.strip()]


async def remove(names: Any) -> None:
    """Delete namespaces (and their veths), first ending the processes still inside (the
    bed's own: a namespace is only ever entered by the bed)."""
    existing = set(await namespaces())
    for name in names:
        if name not in existing:
            continue
        pids = (await run("ip", "netns", "pids", name, check=False)).split()
        for pid in pids:
            with contextlib.suppress(ProcessLookupError, ValueError):
                os.kill(int(pid), signal.SIGKILL)
        await run("ip", "netns", "del", name, check=False)


async def remove_stale() -> None:
    """Remove the namespaces a crashed earlier bed left: ``wb<pid>...`` whose pid is gone."""
    stale = []
    for name in await namespaces():
        digits = name.removeprefix(PREFIX).rstrip("chrkw")
        if name.startswith(PREFIX) and digits.isdigit() and not _alive(int(digits)):
            stale.append(name)
    await remove(stale)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
