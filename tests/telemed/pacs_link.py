"""For the PACS-in-the-room tests: a bedside connection (two real aiortc peers on loopback,
the gateway's side offering as the gateway does, the viewer's answering), a clinician
(:class:`~signaling.schema.Peer`) of either site, the gateway's imaging path with a PACS,
a PACS that never answers, and the room's answering task running."""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from devices.dicom.pacs import PacsSettings
from devices.dicom.scp import ScpSettings
from devices.dicom.stow import StowAnswer
from media.rtc.peer import MediaPeer, PeerEventKind
from runtime.tasks import cancel_and_wait, spawn
from signaling.schema import Peer, PrincipalKind, Role
from telemed.gateway.imaging import GatewayImaging, ImagingConfig
from telemed.gateway.pacs_room import PacsRoom
from tests.helpers import eventually


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


@contextlib.contextmanager
def silent_pacs() -> Iterator[int]:
    """A PACS that hangs: its port accepts connections (the kernel completes them) and
    never says a word."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(8)
        yield int(listener.getsockname()[1])


def pacs_imaging(
    tmp_path: Path, pacs: PacsSettings | None, consultation: str | None = "c-1"
) -> GatewayImaging:
    async def consent(_: str) -> bool:
        return False

    async def never(_: str, __: str, ___: bytes) -> StowAnswer:
        raise AssertionError("nothing is sent in these tests")

    scp = ScpSettings(port=0, host="127.0.0.1", allowed_calling=("MODALITY",))
    return GatewayImaging(
        ImagingConfig(scp, pacs=pacs), tmp_path, lambda: consultation, consent, never
    )


@contextlib.asynccontextmanager
async def answering(room: PacsRoom, imaging: GatewayImaging | None) -> AsyncIterator[None]:
    tasks = [spawn(room.run(), name="pacs-room")]
    if imaging is not None:
        tasks.append(spawn(imaging.run(), name="imaging"))
        await eventually(lambda: imaging.scp is not None)
    try:
        yield
    finally:
        await cancel_and_wait(tasks)
