"""A userspace WAN impairment relay for UDP: delay, jitter, loss (random or in bursts),
reordering, a bandwidth cap with a drop-tail queue, and blackouts.

This kernel has no ``netem``, so the WAN between Koriyama, Wonju and the server's cloud is
made in userspace: the relay listens on 127.0.0.1 and forwards every client's datagrams to one
upstream address (coturn, in the WAN tests and ``telemed bench wan``) from a socket of the
client's own, and the replies back. With both peers forced to relay-only ICE through it, every
media packet of the call crosses the relay twice (up to coturn and down from it), so an
impairment set here is the path's.

Each direction is shaped apart (an uplink and a downlink, as on a real access line): a
datagram is dropped (loss, blackout, or a full queue), else queued behind the ones before it
at the link's rate, then released after the path's delay plus jitter. Jitter larger than the
gap between two datagrams reorders them, as a real path does.

The profiles are those of issue 12: :data:`PROFILES`. Change :attr:`UdpImpairmentRelay.impairment`
at any time (a blackout starts and ends by assigning a new one); it applies to datagrams that
arrive afterwards.
"""

from __future__ import annotations

import asyncio
import logging
import random
from dataclasses import dataclass, replace
from typing import cast

from runtime.tasks import cancel_and_wait, spawn

log = logging.getLogger(__name__)

Address = tuple[str, int]


@dataclass(frozen=True)
class Impairment:
    """One direction's path. All delays are one way (an RTT of 40 ms is 20 ms each way)."""

    delay_s: float = 0.0
    #: Uniform jitter added to ``delay_s``, from 0 to this.
    jitter_s: float = 0.0
    #: Probability that a datagram is lost, when not in a burst.
    loss: float = 0.0
    #: Gilbert-Elliott bursts: probability of entering a burst after a datagram, and of
    #: leaving it; inside a burst every datagram is lost. 0: no bursts.
    burst_enter: float = 0.0
    burst_leave: float = 0.5
    #: The link's rate in bits per second (None: unlimited), and its queue: a datagram that
    #: would wait longer than ``queue_s`` behind the others is dropped (drop-tail).
    rate_bps: float | None = None
    queue_s: float = 0.2
    #: Every datagram is lost (the link is down).
    blackout: bool = False

    def down(self) -> Impairment:
        """The same path in a blackout."""
        return replace(self, blackout=True)

    def up(self) -> Impairment:
        return replace(self, blackout=False)


#: The issue's WAN profiles (one way, so RTT/2 each way).
PROFILES: dict[str, Impairment] = {
    "lan": Impairment(),
    "wired": Impairment(delay_s=0.020, jitter_s=0.005, loss=0.001),
    "wifi": Impairment(
        delay_s=0.030, jitter_s=0.030, loss=0.01, burst_enter=0.002, burst_leave=0.3
    ),
    "mobile": Impairment(delay_s=0.060, jitter_s=0.010, loss=0.005, rate_bps=1_000_000),
    "slow-uplink": Impairment(delay_s=0.020, jitter_s=0.005, rate_bps=256_000, queue_s=0.3),
}


@dataclass
class DirectionStats:
    forwarded: int = 0
    lost: int = 0
    queue_dropped: int = 0
    bytes: int = 0


class _Shaper:
    """One direction's state: when the link is next free, whether a burst is on."""

    def __init__(self, rng: random.Random) -> None:
        self._rng = rng
        self._free_at = 0.0
        self._in_burst = False
        self.stats = DirectionStats()

    def release_time(self, path: Impairment, size: int, now: float) -> float | None:
        """When a datagram of ``size`` bytes arriving ``now`` leaves the path (None: lost)."""
        if path.blackout:
            self.stats.lost += 1
            return None
        if path.burst_enter > 0:
            if self._in_burst:
                self._in_burst = self._rng.random() >= path.burst_leave
            else:
                self._in_burst = self._rng.random() < path.burst_enter
            if self._in_burst:
                self.stats.lost += 1
                return None
        if path.loss > 0 and self._rng.random() < path.loss:
            self.stats.lost += 1
            return None
        depart = now
        if path.rate_bps is not None:
            start = max(now, self._free_at)
            if start - now > path.queue_s:
                self.stats.queue_dropped += 1
                return None
            self._free_at = depart = start + size * 8 / path.rate_bps
        self.stats.forwarded += 1
        self.stats.bytes += size
        return depart + path.delay_s + self._rng.uniform(0.0, path.jitter_s)


class _Leg(asyncio.DatagramProtocol):
    """The relay's socket toward upstream for one client: replies go back to that client."""

    def __init__(self, relay: UdpImpairmentRelay, client: Address) -> None:
        self._relay = relay
        self._client = client
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # asyncio's selector transport is not a DatagramTransport subclass on 3.11.
        self.transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: Address) -> None:
        self._relay._down(data, self._client)


class _Front(asyncio.DatagramProtocol):
    def __init__(self, relay: UdpImpairmentRelay) -> None:
        self._relay = relay

    def datagram_received(self, data: bytes, addr: Address) -> None:
        self._relay._up(data, addr)


class UdpImpairmentRelay:
    """Forwards UDP between clients and ``upstream`` through an impaired path.

    ``uplink`` shapes client → upstream, ``downlink`` upstream → client (by default the same
    path both ways). Start with :meth:`start`, stop with :meth:`close` (every socket closed,
    every pending release cancelled). ``seed`` makes the losses reproducible.
    """

    def __init__(
        self,
        upstream: Address,
        uplink: Impairment | None = None,
        downlink: Impairment | None = None,
        *,
        seed: int = 0,
    ) -> None:
        self.upstream = upstream
        self.uplink = uplink or Impairment()
        self.downlink = downlink or self.uplink
        rng = random.Random(seed)
        self._up_shaper = _Shaper(rng)
        self._down_shaper = _Shaper(rng)
        self._front: asyncio.DatagramTransport | None = None
        self._legs: dict[Address, _Leg] = {}
        #: Datagrams of a client whose upstream socket is still being made, in order.
        self._opening: dict[Address, list[bytes]] = {}
        self._pending: set[asyncio.TimerHandle] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        self._loop: asyncio.AbstractEventLoop | None = None

    @property
    def impairment(self) -> Impairment:
        return self.uplink

    @impairment.setter
    def impairment(self, path: Impairment) -> None:
        """The same path both ways from now on."""
        self.uplink = self.downlink = path

    def blackout(self, on: bool) -> None:
        """Take the link down (both ways) or bring it back, keeping the rest of the path."""
        self.uplink = replace(self.uplink, blackout=on)
        self.downlink = replace(self.downlink, blackout=on)

    @property
    def up_stats(self) -> DirectionStats:
        return self._up_shaper.stats

    @property
    def down_stats(self) -> DirectionStats:
        return self._down_shaper.stats

    @property
    def port(self) -> int:
        assert self._front is not None, "start() first"
        return int(self._front.get_extra_info("sockname")[1])

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> None:
        self._loop = asyncio.get_running_loop()
        transport, _ = await self._loop.create_datagram_endpoint(
            lambda: _Front(self), local_addr=(host, port)
        )
        self._front = transport

    async def close(self) -> None:
        await cancel_and_wait(list(self._tasks))
        for handle in self._pending:
            handle.cancel()
        self._pending.clear()
        for leg in self._legs.values():
            if leg.transport is not None:
                leg.transport.close()
        self._legs.clear()
        if self._front is not None:
            self._front.close()
            self._front = None

    async def __aenter__(self) -> UdpImpairmentRelay:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # -- forwarding ----------------------------------------------------------------------------

    def _up(self, data: bytes, client: Address) -> None:
        leg = self._legs.get(client)
        if leg is None:
            leg = _Leg(self, client)
            self._legs[client] = leg
            assert self._loop is not None
            # The leg's socket is made asynchronously; datagrams until then go once it is.
            pending: list[bytes] = [data]
            self._opening[client] = pending
            task = spawn(self._open_leg(leg, pending), "impair-leg")
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
            return
        opening = self._opening.get(client)
        if opening is not None:
            opening.append(data)
            return
        self._schedule(self._up_shaper, self.uplink, data, leg, self.upstream)

    async def _open_leg(self, leg: _Leg, pending: list[bytes]) -> None:
        assert self._loop is not None
        try:
            await self._loop.create_datagram_endpoint(lambda: leg, local_addr=("127.0.0.1", 0))
        except OSError as exc:
            log.warning("impairment relay: no socket for %s (%s)", leg._client, exc)
            self._legs.pop(leg._client, None)
            self._opening.pop(leg._client, None)
            return
        self._opening.pop(leg._client, None)
        for data in pending:
            self._schedule(self._up_shaper, self.uplink, data, leg, self.upstream)

    def _down(self, data: bytes, client: Address) -> None:
        if self._front is None:
            return
        self._schedule(self._down_shaper, self.downlink, data, self._front, client)

    def _schedule(
        self,
        shaper: _Shaper,
        path: Impairment,
        data: bytes,
        via: _Leg | asyncio.DatagramTransport,
        to: Address,
    ) -> None:
        loop = self._loop
        assert loop is not None
        now = loop.time()
        at = shaper.release_time(path, len(data), now)
        if at is None:
            return
        transport = via.transport if isinstance(via, _Leg) else via

        def release() -> None:
            self._pending.discard(handle)
            if transport is not None and not transport.is_closing():
                transport.sendto(data, to)

        handle = loop.call_at(at, release)
        self._pending.add(handle)
