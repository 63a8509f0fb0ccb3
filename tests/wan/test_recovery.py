"""The call across the NATs survives what the real network does to it: a site whose UDP is
blocked when the offer is made, the TURN server crashing during a relayed call, and the NAT
giving a site a new public address mid-call. Nobody at either end does anything: the
gateway's per-viewer supervisor (telemed.gateway.peers) gives up what cannot work and makes
the next connection, and the doctor answers each offer as the browser does.

Recovery times are printed (``pytest -s``, or ``make wan``); with ``WAN_LONG=1`` coturn stays
down for the issue's 100 s instead of CI's 15 s."""

from __future__ import annotations

import asyncio
import os
import time

import pytest

from tests.wan.netns import DoctorProcess, WanBed

#: Bounds on a hang, not timing assertions: the bed's processes take their time to start
#: on a loaded machine (the figures asserted are the recovery times below).
pytestmark = [pytest.mark.wan, pytest.mark.slow, pytest.mark.timeout(300)]

LONG = os.environ.get("WAN_LONG") == "1"
#: How long coturn stays down.
TURN_OUTAGE_S = 100.0 if LONG else 15.0
#: Media must be back within this long of the path's return (issue 12, for coturn).
RECOVERY_S = 10.0
#: ... and of a new address at Wonju, which the issue gives no figure for. More, for more
#: happens: the doctor's signaling socket is cut too and comes back, the heartbeat must
#: declare the link dead (3 s), and both ends gather anew. Measured 4-8 s on two loaded
#: cores; without the heartbeat's death no media came back in 20 s (aiortc's consent
#: checks take ~30 s).
REMAP_RECOVERY_S = 15.0
#: A start: both processes' imports and the first negotiation, on a loaded machine.
START_S = 150.0


async def _media(doctor: DoctorProcess, seconds: float, what: str) -> float:
    """Wait until video and waveforms flow (30 more of each than now); the wall time."""
    frames, waveforms = doctor.get("frames"), doctor.get("waveforms")
    return await doctor.until(
        lambda: doctor.get("frames") >= frames + 30 and doctor.get("waveforms") >= waveforms + 30,
        seconds,
        what,
    )


def _recovery(doctor: DoctorProcess, since: float) -> tuple[float, float]:
    """Seconds from ``since`` to the first video frame and waveform packet after it."""
    video = doctor.resumed_after("video", since)
    waveform = doctor.resumed_after("waveform", since)
    assert video is not None and waveform is not None, doctor.events[-5:]
    return video - since, waveform - since


async def test_an_offer_made_while_the_site_blocks_udp_is_made_again_once_it_passes(
    bed: WanBed,
) -> None:
    """Wonju's router drops all its UDP when the gateway offers (the signaling's TCP
    passes): relay-only on both ends, the doctor's answer has no candidate at all and the
    connection can never open (aiortc says it failed as soon as that answer is in). The
    path is let through once the answer is sent; the gateway gives the failed connection
    up and offers again, and that one connects.

    Fails without the supervisor (telemed.gateway.peers.PeerSet._link/_carry): before it,
    nothing watched aiortc's failed state (the heartbeat started only when the data
    channel opened), the only offer stayed dead and no media ever came (the issue: 'a
    connection that never opens is never retried'). Checked by running the gateway with
    _carry waiting for the open alone: no second offer, no media."""
    await bed.wonju.block_udp(True)
    await bed.start_gateway(relay_only=True)
    doctor = await bed.start_doctor(relay_only=True)
    await doctor.until(
        lambda: any("offer" in e for e in doctor.events), START_S, "the first answer sent"
    )
    first = next(e for e in doctor.events if "offer" in e)
    assert first["ours"] == [], first  # relay-only, and the TURN server out of reach
    await bed.wonju.block_udp(False)
    opened_path = time.time()
    await _media(doctor, 30, "media on a connection offered again")
    assert doctor.get("offers") >= 2
    assert doctor.get("opened") == 1  # the first one never did
    video, waveform = _recovery(doctor, opened_path)
    print(
        f"UDP let through at Wonju: video after {video:.1f} s, waveforms after "
        f"{waveform:.1f} s ({doctor.get('offers')} offers)"
    )


@pytest.mark.timeout(300 + TURN_OUTAGE_S)
async def test_media_is_back_within_10_s_of_coturn_returning(bed: WanBed) -> None:
    """A TURN-only call (relay-only ICE at both ends): coturn is killed, its allocations
    gone, for TURN_OUTAGE_S (15 s; 100 s with WAN_LONG=1), then started again. Media is
    back within 10 s of its return.

    Fails without the heartbeat's death leading to a rebuild (media.rtc.peer's DEAD
    event, telemed.gateway.peers.PeerSet._carry) with a backoff capped at a few seconds
    (media.rtc.rebuild): checked with the gateway's heartbeat never declaring death, aiortc
    gave the connection up only when its consent checks had failed (~30 s after the
    crash) and media was not back 20 s after coturn's return. (With WAN_LONG's 100 s,
    aiortc's own failure comes within the outage: then what is under test is that the
    supervisor never gives up and its backoff is capped, at 4 s.)"""
    await bed.start_gateway(relay_only=True)
    doctor = await bed.start_doctor(relay_only=True)
    await _media(doctor, START_S, "media through TURN")
    print(f"ICE pair (doctor's side): {doctor.status['pair']}")
    offers = doctor.get("offers")
    await bed.stop_coturn()
    await asyncio.sleep(TURN_OUTAGE_S)
    await bed.start_coturn()
    back = time.time()
    await _media(doctor, RECOVERY_S + 10, "media after coturn's return")
    video, waveform = _recovery(doctor, back)
    print(
        f"coturn down {TURN_OUTAGE_S:.0f} s: video back {video:.1f} s, waveforms back "
        f"{waveform:.1f} s after its return ({doctor.get('offers') - offers} offers meanwhile)"
    )
    assert max(video, waveform) <= RECOVERY_S


async def test_media_comes_back_when_the_nat_gives_wonju_a_new_address(bed: WanBed) -> None:
    """Mid-call, Wonju's router gets a new public address (as a DHCP renewal or a mobile
    uplink does): every mapping of the site is gone, the doctor's packets leave from a
    new address that neither the TURN server's allocation nor the gateway's NAT knows, and
    the old one answers nothing. The gateway rebuilds; media is back within 15 s.

    The doctor's signaling socket (TCP through the same NAT) is cut too and comes back
    under a new peer id; the gateway knows it as the same doctor.

    Fails without the heartbeat's death leading to a rebuild (media.rtc.peer's DEAD event,
    telemed.gateway.peers.PeerSet._carry): checked with the gateway's heartbeat never
    declaring death, nothing was offered again and no media came for 20 s (aiortc notices
    only when its consent checks have failed for about 30 s; the issue: 'ICE failed after
    64 s, no retry')."""
    await bed.start_gateway()
    doctor = await bed.start_doctor()
    await _media(doctor, START_S, "media across the NATs")
    print(f"ICE pair before (doctor's side): {doctor.status['pair']}")
    offers = doctor.get("offers")
    await bed.wonju.remap("100.64.2.3")
    remapped = time.time()
    await _media(doctor, REMAP_RECOVERY_S + 10, "media after the new address")
    video, waveform = _recovery(doctor, remapped)
    print(
        f"Wonju's address changed: video back {video:.1f} s, waveforms back {waveform:.1f} s "
        f"after ({doctor.get('offers') - offers} new offers); ICE pair after: "
        f"{doctor.status['pair']}"
    )
    assert doctor.get("offers") > offers
    assert max(video, waveform) <= REMAP_RECOVERY_S
