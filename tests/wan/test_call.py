"""A consultation across the two NATs: the Koriyama bedside gateway and the Wonju doctor,
each behind its site's router, meet through the signaling server in the cloud and ICE finds
them a path through the NATs (or through the TURN relay)."""

from __future__ import annotations

import pytest

from tests.wan.netns import WanBed

#: A bound on a hang: the bed's processes take their time to start on a loaded machine.
pytestmark = [pytest.mark.wan, pytest.mark.slow, pytest.mark.timeout(300)]


async def test_the_wonju_doctor_sees_the_koriyama_bedside_across_the_nats(bed: WanBed) -> None:
    """Video frames, waveform packets and numerics reach the doctor. No pair of private
    addresses can work here (the routers let no new flow in), so the pair ICE chose has a
    public address at both ends: a TURN allocation or a router's mapping. Seen here: the
    doctor's TURN allocation on one end and the gateway's NAT mapping on the other
    (``relay`` / ``prflx``: its router gave the flow to the allocation a new port, since
    the allocation's checks had already come in on the port of its STUN mapping), one
    relayed leg rather than two.

    Fails without what makes a call cross NAT at all: the server's ICE servers (STUN and
    TURN) handed to both ends, used by the gateway and the doctor."""
    await bed.start_gateway()
    doctor = await bed.start_doctor()
    await doctor.until(
        lambda: (
            doctor.get("frames") >= 30
            and doctor.get("waveforms") >= 30
            and doctor.get("numerics") >= 3
        ),
        seconds=150,
        what="video, waveforms and numerics at the doctor",
    )
    status = doctor.status
    # The camera's 320x240, or less: the video adaptation steps down when the path (or a
    # loaded machine) cannot carry it.
    width, height = status["size"]
    assert width <= 320 and width * 3 == height * 4, status["size"]
    assert status["state"] == "connected"
    local, remote = status["pair"]
    print(f"ICE pair (doctor's side): local {local}, remote {remote}")
    for candidate in (local, remote):
        kind, address = candidate.split()
        assert kind in ("srflx", "prflx", "relay"), candidate
        assert not address.startswith("10."), candidate
