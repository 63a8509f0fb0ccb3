"""Two real aiortc peers, each signed in to a different server process, negotiate through
the shared Redis hub and talk on a data channel."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from aiortc import RTCConfiguration, RTCDataChannel, RTCPeerConnection, RTCSessionDescription
from aiortc.sdp import candidate_from_sdp

from runtime.tasks import cancel_and_wait
from signaling.client import SignalingClient, UserCredentials
from signaling.schema import Answer, Candidate, ConsultationAction, Offer, PeerJoined, Role
from tests.helpers import PASSWORD, make_config, next_of_type, run_server
from tests.redis_server import redis_server

pytestmark = pytest.mark.slow


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


async def test_aiortc_peers_negotiate_through_two_processes(tmp_path: Path) -> None:
    async with redis_server(tmp_path / "redis") as redis:
        config = make_config(tmp_path, hub_url=redis.url)
        async with run_server(config) as one, run_server(config) as two:
            await one.add_user("doctor.wonju", Role.DOCTOR, "wonju")
            await one.add_user("doctor.koriyama", Role.DOCTOR, "koriyama")
            wonju = SignalingClient(one.base_url, UserCredentials("doctor.wonju", PASSWORD))
            koriyama = SignalingClient(two.base_url, UserCredentials("doctor.koriyama", PASSWORD))
            # Loopback host candidates suffice; never aiortc's default public STUN server.
            pc_w = RTCPeerConnection(RTCConfiguration(iceServers=[]))
            pc_k = RTCPeerConnection(RTCConfiguration(iceServers=[]))
            tasks: list[asyncio.Task[None]] = []
            try:
                await wonju.start()
                await koriyama.start()
                row = await wonju.request_consultation("koriyama", False)
                await koriyama.consultation_action(row.id, ConsultationAction.ACCEPT)
                await koriyama.join(row.id)
                joined = await wonju.join(row.id)
                assert {p.site for p in joined.peers} == {"wonju", "koriyama"}
                seen = await next_of_type(koriyama.recv, PeerJoined, timeout=10)
                assert seen.peer.peer_id == wonju.peer_id

                received: asyncio.Queue[str] = asyncio.Queue()

                @pc_k.on("datachannel")
                def on_channel(channel: RTCDataChannel) -> None:
                    channel.on("message", received.put_nowait)

                channel = pc_w.createDataChannel("numerics")
                tasks.append(asyncio.create_task(_signal_forever(koriyama, pc_k)))
                await pc_w.setLocalDescription(await pc_w.createOffer())
                assert koriyama.peer_id is not None
                await wonju.send(Offer(to=koriyama.peer_id, sdp=pc_w.localDescription.sdp))
                tasks.append(asyncio.create_task(_signal_forever(wonju, pc_w)))
                async with asyncio.timeout(20):
                    while channel.readyState != "open":
                        await asyncio.sleep(0.02)
                channel.send("SpO2 97")
                async with asyncio.timeout(10):
                    assert await received.get() == "SpO2 97"
            finally:
                await cancel_and_wait(tasks)
                await pc_w.close()
                await pc_k.close()
                await wonju.close()
                await koriyama.close()
