"""A bedside connection for the PACS-in-the-room tests: two real aiortc peers on loopback,
the gateway's side offering as the gateway does, the viewer's answering; and a clinician
(:class:`~signaling.schema.Peer`) of either site."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

from media.rtc.peer import MediaPeer, PeerEventKind
from signaling.schema import Peer, PrincipalKind, Role


@dataclass
class Link:
    gateway: MediaPeer
    viewer: MediaPeer
    messages: list[dict[str, Any]]

    def drain(self) -> list[dict[str, Any]]:
        """What the viewer received so far (the heartbeat left out)."""
        while not self.viewer.events.empty():
            event = self.viewer.events.get_nowait()
            if event.kind is PeerEventKind.MESSAGE and event.message is not None:
                self.messages.append(event.message.model_dump())
        return self.messages

    async def answer(self, request: str, seconds: float = 30.0) -> dict[str, Any]:
        """The viewer's answer to ``request`` (a bound on a hang, not a measurement)."""
        async with asyncio.timeout(seconds):
            while True:
                found = [m for m in self.drain() if m.get("request") == request]
                if found:
                    return found[0]
                await asyncio.sleep(0.02)


@contextlib.asynccontextmanager
async def linked() -> AsyncIterator[Link]:
    gateway, viewer = MediaPeer([]), MediaPeer([])
    try:
        offer = await gateway.create_offer()
        await gateway.accept_answer(await viewer.accept_offer(offer))
        async with asyncio.timeout(20):
            while gateway.channel.readyState != "open" or viewer.channel.readyState != "open":
                await asyncio.sleep(0.02)
        yield Link(gateway, viewer, [])
    finally:
        await viewer.close()
        await gateway.close()


def clinician(
    site: str, role: Role = Role.DOCTOR, *, principal: int = 7, peer_id: str = "p-1"
) -> Peer:
    return Peer(
        peer_id=peer_id,
        kind=PrincipalKind.GATEWAY if role is Role.GATEWAY else PrincipalKind.USER,
        principal_id=principal,
        name=f"{role}.{site}.{principal}",
        role=role,
        site=site,
        instance=f"tab-{principal}",
    )
