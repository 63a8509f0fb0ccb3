"""ICE servers are fetched once, refreshed in the background near the end of their TURN
credentials' lifetime, and kept through a failed refresh while still valid."""

from __future__ import annotations

import asyncio

from aiortc import RTCIceServer

from media.rtc.ice import Fetched, IceServerCache
from runtime.clock import ManualClock


class _Server:
    def __init__(self, clock: ManualClock, ttl_s: float) -> None:
        self.clock = clock
        self.ttl_s = ttl_s
        self.calls = 0
        self.fail = False

    async def fetch(self) -> Fetched:
        self.calls += 1
        if self.fail:
            raise OSError("uplink down")
        servers = [RTCIceServer(urls=["turn:127.0.0.1:3478"], username=f"u{self.calls}")]
        return servers, self.clock.time() + self.ttl_s


async def _settle() -> None:
    for _ in range(5):
        await asyncio.sleep(0)


async def test_servers_are_reused_then_refreshed_in_the_background() -> None:
    clock = ManualClock(wall=1000.0)
    server = _Server(clock, ttl_s=100.0)
    cache = IceServerCache(server.fetch, clock)
    first = await cache.get()
    assert first[0].username == "u1"
    clock.advance(50.0)
    assert (await cache.get())[0].username == "u1"
    assert server.calls == 1  # no request on the way of a new connection
    clock.advance(35.0)  # in the last fifth of the lifetime: served from the cache...
    assert (await cache.get())[0].username == "u1"
    await _settle()  # ...while a refresh runs in the background
    assert server.calls == 2
    assert (await cache.get())[0].username == "u2"
    await cache.close()


async def test_a_failed_refresh_keeps_valid_servers_and_expired_ones_are_never_used() -> None:
    clock = ManualClock(wall=1000.0)
    server = _Server(clock, ttl_s=100.0)
    cache = IceServerCache(server.fetch, clock)
    await cache.get()
    server.fail = True
    clock.advance(90.0)
    assert (await cache.get())[0].username == "u1"
    await _settle()
    assert cache.failures == 1
    clock.advance(20.0)  # expired, and the server still unreachable
    assert await cache.get() == []
    server.fail = False
    assert (await cache.get())[0].username.startswith("u")  # type: ignore[union-attr]
    await cache.close()
