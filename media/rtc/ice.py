"""ICE servers for new peer connections, fetched once and reused.

Fetching them (``GET /api/ice-servers``) for every new connection puts an HTTP round trip on
the path of every rebuild, and on a flaky uplink that request stalls in TCP retransmission
exactly when a connection must be rebuilt fast. So they are kept until shortly before their
TURN credentials expire (the last fifth of their lifetime, at least 10 s), refreshed in the
background from then on, and a refresh that fails keeps the servers in hand while their
credentials are still valid. Without TURN (no expiry) they are refreshed hourly.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

from aiortc import RTCIceServer

from runtime.clock import SYSTEM_CLOCK, Clock
from runtime.tasks import cancel_and_wait, spawn

log = logging.getLogger(__name__)

#: What a fetch returns: the servers, and when their credentials expire (Unix time; None:
#: they do not).
Fetched = tuple[list[RTCIceServer], float | None]
#: Servers without an expiry are fetched again after this long.
NO_EXPIRY_REFRESH_S = 3600.0
MIN_MARGIN_S = 10.0


class IceServerCache:
    """``fetch`` gets the servers (it may raise; a failure is logged). :meth:`get` never
    raises: with nothing valid in hand and the fetch failing, it returns no servers (host
    candidates only), and the next call tries again. :meth:`close` cancels a refresh."""

    def __init__(
        self,
        fetch: Callable[[], Awaitable[Fetched]],
        clock: Clock = SYSTEM_CLOCK,
        fetch_timeout_s: float = 5.0,
    ) -> None:
        self._fetch = fetch
        self._clock = clock
        self._fetch_timeout_s = fetch_timeout_s
        self._servers: list[RTCIceServer] | None = None
        self._expires = 0.0
        self._refresh_at = 0.0
        self._refresh: asyncio.Task[None] | None = None
        self.fetches = 0
        self.failures = 0

    async def get(self) -> list[RTCIceServer]:
        now = self._clock.time()
        if self._servers is not None and now < self._expires:
            if now >= self._refresh_at and self._refresh is None:
                self._refresh = spawn(self._background(), "ice-servers-refresh")
            return self._servers
        await self._update()
        return self._servers if self._servers is not None and now < self._expires else []

    async def _background(self) -> None:
        try:
            await self._update()
        finally:
            self._refresh = None

    async def _update(self) -> None:
        self.fetches += 1
        try:
            async with asyncio.timeout(self._fetch_timeout_s):
                servers, expires = await self._fetch()
        except Exception as exc:  # any failure of the server or the path: keep what we have
            self.failures += 1
            log.warning("ICE servers not fetched (%s: %s)", type(exc).__name__, exc)
            return
        now = self._clock.time()
        if expires is None:
            self._expires = now + NO_EXPIRY_REFRESH_S * 2
            self._refresh_at = now + NO_EXPIRY_REFRESH_S
        else:
            self._expires = expires
            self._refresh_at = expires - max(MIN_MARGIN_S, (expires - now) / 5)
        self._servers = servers

    async def close(self) -> None:
        if self._refresh is not None:
            await cancel_and_wait([self._refresh])
