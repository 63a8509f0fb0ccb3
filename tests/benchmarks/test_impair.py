"""The WAN impairment relay does to datagrams what its path says: delay, loss, a rate cap with
a drop-tail queue, blackouts; replies find their way back to the client that sent."""

from __future__ import annotations

import asyncio
from typing import cast

from benchmarks.impair import Impairment, UdpImpairmentRelay


class _Echo(asyncio.DatagramProtocol):
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # asyncio's selector transport is not a DatagramTransport subclass on 3.11.
        self.transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        self.transport.sendto(data, addr)


class _Client(asyncio.DatagramProtocol):
    def __init__(self) -> None:
        self.received: list[tuple[bytes, float]] = []

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        self.received.append((data, asyncio.get_running_loop().time()))


async def _pair(relay: UdpImpairmentRelay) -> tuple[asyncio.DatagramTransport, _Client]:
    loop = asyncio.get_running_loop()
    client = _Client()
    transport, _ = await loop.create_datagram_endpoint(
        lambda: client, remote_addr=("127.0.0.1", relay.port)
    )
    return transport, client


async def _echo_server() -> asyncio.DatagramTransport:
    transport, _ = await asyncio.get_running_loop().create_datagram_endpoint(
        _Echo, local_addr=("127.0.0.1", 0)
    )
    return transport


async def test_delay_applies_each_way_and_replies_reach_their_sender() -> None:
    echo = await _echo_server()
    relay = UdpImpairmentRelay(echo.get_extra_info("sockname"), Impairment(delay_s=0.05))
    async with relay:
        a, client_a = await _pair(relay)
        b, client_b = await _pair(relay)
        sent = asyncio.get_running_loop().time()
        a.sendto(b"from a")
        b.sendto(b"from b")
        async with asyncio.timeout(5):
            while not (client_a.received and client_b.received):
                await asyncio.sleep(0.01)
        assert [d for d, _ in client_a.received] == [b"from a"]
        assert [d for d, _ in client_b.received] == [b"from b"]
        # Up and down: at least the path's delay twice (a lower bound, not a speed claim).
        assert client_a.received[0][1] - sent >= 0.1
        a.close()
        b.close()
    echo.close()


async def test_a_blackout_loses_everything_until_the_link_returns() -> None:
    echo = await _echo_server()
    async with UdpImpairmentRelay(echo.get_extra_info("sockname")) as relay:
        a, client = await _pair(relay)
        a.sendto(b"before")
        async with asyncio.timeout(5):
            while not client.received:
                await asyncio.sleep(0.01)
        relay.blackout(True)
        for _ in range(10):
            a.sendto(b"during")
        await asyncio.sleep(0.3)
        assert [d for d, _ in client.received] == [b"before"]
        assert relay.up_stats.lost == 10
        relay.blackout(False)
        a.sendto(b"after")
        async with asyncio.timeout(5):
            while len(client.received) < 2:
                await asyncio.sleep(0.01)
        assert client.received[-1][0] == b"after"
        a.close()
    echo.close()


async def test_the_rate_cap_queues_then_drops_the_tail() -> None:
    """Twenty 1,000-byte datagrams at once into an 80 kbit/s link with a 0.5 s queue: each
    takes 0.1 s on the wire, so the first six fit (0 to 0.5 s of waiting) and the rest are
    dropped."""
    echo = await _echo_server()
    path = Impairment(rate_bps=80_000, queue_s=0.5)
    relay = UdpImpairmentRelay(echo.get_extra_info("sockname"), uplink=path, downlink=Impairment())
    async with relay:
        a, client = await _pair(relay)
        a.sendto(b"x")  # opens the client's leg first
        async with asyncio.timeout(5):
            while not client.received:
                await asyncio.sleep(0.01)
        await asyncio.sleep(0.05)
        client.received.clear()
        for _ in range(20):
            a.sendto(bytes(1000))
        async with asyncio.timeout(5):
            while len(client.received) < 6:
                await asyncio.sleep(0.01)
        await asyncio.sleep(0.3)
        assert len(client.received) == 6
        assert relay.up_stats.queue_dropped == 14
        a.close()
    echo.close()


async def test_random_loss_is_reproducible_from_the_seed() -> None:
    echo = await _echo_server()
    counts = []
    for _ in range(2):
        relay = UdpImpairmentRelay(
            echo.get_extra_info("sockname"), Impairment(loss=0.3), downlink=Impairment(), seed=7
        )
        async with relay:
            a, client = await _pair(relay)
            for i in range(200):
                a.sendto(i.to_bytes(2, "big"))
            await asyncio.sleep(0.5)
            counts.append(sorted(int.from_bytes(d, "big") for d, _ in client.received))
            a.close()
    echo.close()
    assert counts[0] == counts[1]
    assert 100 < len(counts[0]) < 180  # about 70 % of 200 arrive
