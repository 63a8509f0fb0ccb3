"""The consulting doctor's side of the bedside tests, as the browser will be (an aiortc peer
that answers the gateway's offers), and the steps every such test takes."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

from aiortc import RTCIceServer

from media.rtc.peer import MediaPeer, PeerEventKind
from media.rtc.wire import WirePacket
from runtime.tasks import cancel_and_wait
from signaling.api_models import ConsultationOut
from signaling.client import SignalingClient, UserCredentials
from signaling.schema import Answer, ConsultationAction, Offer, Role
from telemed.gateway.runner import Gateway
from tests.helpers import PASSWORD, LiveServer


@dataclass
class Doctor:
    """The consulting doctor's side, as the browser will be: answers the gateway's offers
    and collects what arrives."""

    client: SignalingClient
    media: MediaPeer | None = None
    packets: list[WirePacket] = field(default_factory=list)
    messages: list[dict[str, Any]] = field(default_factory=list)
    offers: int = 0
    #: Ask the server for ICE servers for each connection (as the browser does), and use
    #: TURN relay candidates only.
    use_ice_servers: bool = False
    relay_only: bool = False

    async def answer_offers(self) -> None:
        while True:
            message = await self.client.recv()
            if isinstance(message, Offer):
                assert message.sender is not None
                if self.media is not None:
                    await self.media.close()
                self.media = MediaPeer(
                    await self._ice_servers(), receive_video=True, relay_only=self.relay_only
                )
                self.offers += 1
                sdp = await self.media.accept_offer(message.sdp)
                await self.client.send(Answer(to=message.sender, sdp=sdp))

    async def _ice_servers(self) -> list[RTCIceServer]:
        if not self.use_ice_servers:
            return []
        body = await self.client.ice_servers()
        return [
            RTCIceServer(urls=s.urls, username=s.username, credential=s.credential)
            for s in body.ice_servers
        ]

    def drain(self) -> None:
        if self.media is None:
            return
        while not self.media.events.empty():
            event = self.media.events.get_nowait()
            if event.kind is PeerEventKind.WAVEFORM and event.packet is not None:
                self.packets.append(event.packet)
            elif event.kind is PeerEventKind.MESSAGE and event.message is not None:
                self.messages.append(event.message.model_dump())

    def channel_ids(self, mdc: int) -> set[int]:
        """The ids the gateway gave the channels of signal ``mdc`` (from its channel messages)."""
        return {m["channel"] for m in self.messages if m["type"] == "channel" and m["mdc"] == mdc}

    def numerics(self, code: str, derived: bool = False) -> list[float]:
        """Values of one numeric: from the device, or (``derived``) computed by the gateway."""
        return [
            m["value"]
            for m in self.messages
            if m["type"] == "numeric"
            and m["code"] == code
            and m["derived"] is derived
            and m["value"] is not None
        ]


async def until(condition: Any, doctor: Doctor, seconds: float = 30.0) -> None:
    async with asyncio.timeout(seconds):
        while True:
            doctor.drain()
            if condition():
                return
            await asyncio.sleep(0.05)


@contextlib.asynccontextmanager
async def tasks(*coros: Any) -> AsyncIterator[list[asyncio.Task[Any]]]:
    tasks = [asyncio.create_task(c) for c in coros]
    try:
        yield tasks
    finally:
        await cancel_and_wait(tasks)


async def gateway_in(gateway: Gateway, consultation_id: str) -> None:
    """Wait for the gateway to find and join the consultation by itself."""
    async with asyncio.timeout(15):
        while gateway.consultation_id != consultation_id:
            await asyncio.sleep(0.05)


async def active_consultation(
    server: LiveServer,
) -> tuple[SignalingClient, Doctor, ConsultationOut]:
    """Wonju's technician requests, Koriyama's doctor accepts: both signed in."""
    await server.add_user("tech.wonju", Role.TECHNICIAN, "wonju")
    await server.add_user("doctor.koriyama", Role.DOCTOR, "koriyama")
    tech = SignalingClient(server.base_url, UserCredentials("tech.wonju", PASSWORD))
    doctor = Doctor(SignalingClient(server.base_url, UserCredentials("doctor.koriyama", PASSWORD)))
    await tech.start()
    await doctor.client.start()
    row = await tech.request_consultation("koriyama", False)
    await doctor.client.consultation_action(row.id, ConsultationAction.ACCEPT)
    return tech, doctor, row
