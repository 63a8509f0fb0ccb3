"""Two aiortc peers, one per site, meet through the real server and talk on a data channel;
a clinician of another consultation receives nothing of theirs."""

from __future__ import annotations

import asyncio
import contextlib

from aiortc import RTCConfiguration, RTCDataChannel, RTCPeerConnection, RTCSessionDescription
from aiortc.sdp import candidate_from_sdp

from runtime.tasks import cancel_and_wait
from signaling.client import SignalingClient, UserCredentials
from signaling.schema import (
    Answer,
    Candidate,
    ConsultationAction,
    Joined,
    Offer,
    PeerJoined,
    Role,
    ServerMessage,
)
from tests.helpers import PASSWORD, LiveServer, next_of_type


async def _open_consultation(server: LiveServer, requester: str, consultant: str) -> str:
    async with (
        SignalingClient(server.base_url, UserCredentials(requester, PASSWORD)) as req,
        SignalingClient(server.base_url, UserCredentials(consultant, PASSWORD)) as con,
    ):
        row = await req.request_consultation("koriyama", False)
        await con.consultation_action(row.id, ConsultationAction.ACCEPT)
        return str(row.id)


def _no_stun() -> RTCConfiguration:
    # Loopback host candidates suffice; never aiortc's default public STUN server.
    return RTCConfiguration(iceServers=[])


async def _signal_forever(client: SignalingClient, pc: RTCPeerConnection) -> None:
    """Apply what the other peer sends: answer offers, add candidates."""
    while True:
        message = await client.recv()
        if isinstance(message, Offer):
            await pc.setRemoteDescription(RTCSessionDescription(message.sdp, "offer"))
            await pc.setLocalDescription(await pc.createAnswer())
            assert message.sender is not None
            await client.send(Answer(to=message.sender, sdp=pc.localDescription.sdp))
        elif isinstance(message, Answer):
            await pc.setRemoteDescription(RTCSessionDescription(message.sdp, "answer"))
        elif isinstance(message, Candidate) and message.candidate:
            candidate = candidate_from_sdp(message.candidate.removeprefix("candidate:"))
            candidate.sdpMid = message.sdp_mid
            candidate.sdpMLineIndex = message.sdp_mline_index
            await pc.addIceCandidate(candidate)


async def test_two_sites_connect_and_exchange_data(server: LiveServer) -> None:
    await server.add_user("doctor.wonju", Role.DOCTOR, "wonju")
    await server.add_user("doctor.koriyama", Role.DOCTOR, "koriyama")
    await server.add_user("other.wonju", Role.DOCTOR, "wonju")
    await server.add_user("other.koriyama", Role.DOCTOR, "koriyama")
    cid = await _open_consultation(server, "doctor.wonju", "doctor.koriyama")
    other_cid = await _open_consultation(server, "other.wonju", "other.koriyama")

    wonju = SignalingClient(server.base_url, UserCredentials("doctor.wonju", PASSWORD))
    koriyama = SignalingClient(server.base_url, UserCredentials("doctor.koriyama", PASSWORD))
    outsider = SignalingClient(server.base_url, UserCredentials("other.wonju", PASSWORD))
    pc_w, pc_k = RTCPeerConnection(_no_stun()), RTCPeerConnection(_no_stun())
    tasks: list[asyncio.Task[None]] = []
    try:
        for client in (wonju, koriyama, outsider):
            await client.start()
        await outsider.join(other_cid)
        joined_k = await koriyama.join(cid)
        assert [p.site for p in joined_k.peers] == ["koriyama"]
        joined_w = await wonju.join(cid)
        assert {p.site for p in joined_w.peers} == {"wonju", "koriyama"}
        seen = await next_of_type(koriyama.recv, PeerJoined)
        assert seen.peer.peer_id == wonju.peer_id
        assert seen.peer.role is Role.DOCTOR

        received: asyncio.Queue[str] = asyncio.Queue()

        @pc_k.on("datachannel")
        def on_channel(channel: RTCDataChannel) -> None:
            @channel.on("message")
            def on_message(message: str) -> None:
                received.put_nowait(message)
                channel.send(f"ack:{message}")

        channel = pc_w.createDataChannel("numerics")
        acks: asyncio.Queue[str] = asyncio.Queue()
        channel.on("message", acks.put_nowait)

        # Koriyama answers whatever Wonju offers; Wonju applies the answer.
        tasks.append(asyncio.create_task(_signal_forever(koriyama, pc_k)))
        await pc_w.setLocalDescription(await pc_w.createOffer())
        assert koriyama.peer_id is not None
        await wonju.send(Offer(to=koriyama.peer_id, sdp=pc_w.localDescription.sdp))
        tasks.append(asyncio.create_task(_signal_forever(wonju, pc_w)))

        async with asyncio.timeout(20):
            while pc_w.connectionState != "connected" or pc_k.connectionState != "connected":
                await asyncio.sleep(0.05)
            while channel.readyState != "open":
                await asyncio.sleep(0.02)
        channel.send("SpO2 97")
        async with asyncio.timeout(5):
            assert await received.get() == "SpO2 97"
            assert await acks.get() == "ack:SpO2 97"

        # The outsider, joined to another consultation, saw none of it: only its own joined.
        leaked: list[ServerMessage] = []
        with contextlib.suppress(TimeoutError):
            while True:
                leaked.append(await outsider.recv(timeout=0.5))
        assert all(m.type in ("welcome", "joined") for m in leaked), leaked
        assert [m.consultation.id for m in leaked if isinstance(m, Joined)] == [other_cid]
    finally:
        await cancel_and_wait(tasks)
        await pc_w.close()
        await pc_k.close()
        for client in (wonju, koriyama, outsider):
            await client.close()
