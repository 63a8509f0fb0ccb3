"""The bedside gateway end to end: a simulated oximeter on a real pty and a synthetic camera
at Wonju, through the real server, to an aiortc doctor at Koriyama who sees the pleth trace,
the numerics and the stamped video; the doctor leaves and comes back, the consultation ends."""

from __future__ import annotations

import asyncio
import time

import numpy as np
import pytest

from devices.codes import PLETH, PULSE_RATE, SPO2
from media.rtc.peer import MediaPeer
from media.video.stamp import read_stamp
from signaling.schema import Answer, Candidate, ConsultationAction, ConsultationState, Offer
from tests.e2e.bedside import bedside
from tests.e2e.doctor import Doctor, active_consultation, gateway_in, tasks, until
from tests.helpers import LiveServer, next_of_type

pytestmark = pytest.mark.slow


async def test_bedside_to_consulting_doctor(server: LiveServer) -> None:
    tech, doctor, row = await active_consultation(server)
    try:
        async with bedside(server) as gateway, tasks(doctor.answer_offers()):
            # The gateway follows its site's active consultation by itself.
            await gateway_in(gateway, row.id)
            await doctor.client.join(row.id)

            # Pleth, SpO2 and pulse rate from the device; pulse rate derived from pleth.
            await until(
                lambda: (
                    len(doctor.numerics("spo2")) >= 2
                    and len(
                        [p for p in doctor.packets if p.channel in doctor.channel_ids(PLETH.mdc)]
                    )
                    >= 120
                ),
                doctor,
            )
            channel = next(m for m in doctor.messages if m["type"] == "channel")
            assert (channel["mdc"], channel["device"]) == (PLETH.mdc, "oximeter-1")
            assert channel["sample_rate"] == 60.0
            assert all(92 <= v <= 100 for v in doctor.numerics(SPO2.key))
            device_rates = doctor.numerics(PULSE_RATE.key)
            assert device_rates and all(55 <= v <= 90 for v in device_rates)
            pleth = [p for p in doctor.packets if p.channel in doctor.channel_ids(PLETH.mdc)]
            sequences = [p.sequence for p in pleth]
            assert sequences == sorted(sequences)
            samples = np.concatenate([p.samples for p in pleth])
            assert np.nanstd(samples) > 0  # a live trace, not a flat line
            assert time.time() - pleth[-1].end_time < 2.0

            # The camera: decoded frames carry the gateway's capture stamp.
            assert doctor.media is not None
            async with asyncio.timeout(20):
                stamp = None
                while stamp is None:
                    frame = await doctor.media.video_frames.get()
                    stamp = read_stamp(np.asarray(frame.to_ndarray(format="bgr24"), dtype=np.uint8))
            age_ms = (round(time.time() * 1000) - stamp[1]) % 2**32  # the stamp wraps
            assert age_ms < 5000

            # The pulse rate the gateway derives from pleth is the patient's.
            await until(lambda: len(doctor.numerics(PULSE_RATE.key, derived=True)) >= 2, doctor)
            derived = doctor.numerics(PULSE_RATE.key, derived=True)
            assert all(55 <= v <= 90 for v in derived), derived

            # The doctor leaves and joins again: a fresh offer, data flows again.
            await doctor.client.leave()
            async with asyncio.timeout(10):
                while gateway.peers is not None and gateway.peers.open_peers:
                    await asyncio.sleep(0.05)
            before = len(doctor.packets)
            await doctor.client.join(row.id)
            await until(lambda: doctor.offers >= 2 and len(doctor.packets) > before + 60, doctor)
            greeting = [m for m in doctor.messages if m["type"] == "channel"]
            assert len(greeting) >= 2  # the new connection was told the channels again

            # The consultation ends: the gateway drops its connections and leaves.
            await doctor.client.consultation_action(row.id, ConsultationAction.CLOSE)
            async with asyncio.timeout(10):
                while gateway.consultation_id is not None or (
                    gateway.peers is not None and gateway.peers.open_peers
                ):
                    await asyncio.sleep(0.05)
            state = await tech.get_consultation(row.id)
            assert state.state == ConsultationState.CLOSED
    finally:
        if doctor.media is not None:
            await doctor.media.close()
        await doctor.client.close()
        await tech.close()


async def test_a_dead_link_is_rebuilt_without_the_doctor_doing_anything(
    server: LiveServer,
) -> None:
    """The doctor's side of the connection vanishes (no signaling says so): the gateway's
    heartbeat notices within 3 s and offers a new connection, and data flows again."""
    tech, doctor, row = await active_consultation(server)
    try:
        async with bedside(server) as gateway, tasks(doctor.answer_offers()):
            await gateway_in(gateway, row.id)
            await doctor.client.join(row.id)
            await until(lambda: len(doctor.packets) >= 30, doctor)
            assert doctor.media is not None and gateway.peers is not None
            await doctor.media.close()  # the browser tab froze or its network went away
            lost = asyncio.get_running_loop().time()
            async with asyncio.timeout(10):
                while gateway.peers.deaths < 1:
                    await asyncio.sleep(0.05)
            assert asyncio.get_running_loop().time() - lost <= 3.5
            before = len(doctor.packets)
            await until(lambda: doctor.offers >= 2 and len(doctor.packets) > before + 60, doctor)
            assert gateway.peers.opened_total == 2
    finally:
        if doctor.media is not None:
            await doctor.media.close()
        await doctor.client.close()
        await tech.close()


async def test_both_sites_clinicians_each_get_the_video(server: LiveServer) -> None:
    """Two viewers at once (the consulting doctor and the bedside technician): each
    connection encodes its own frames (a frame shared between two encoders crashed the
    gateway), and both see live, stamped video."""
    tech, doctor, row = await active_consultation(server)
    viewer = Doctor(tech)  # the technician watches the same room from the bedside
    try:
        async with (
            bedside(server) as gateway,
            tasks(doctor.answer_offers(), viewer.answer_offers()),
        ):
            await gateway_in(gateway, row.id)
            await doctor.client.join(row.id)
            await tech.join(row.id)
            stamps: dict[str, list[int]] = {"doctor": [], "technician": []}
            async with asyncio.timeout(30):
                while min(len(s) for s in stamps.values()) < 20:
                    for name, who in (("doctor", doctor), ("technician", viewer)):
                        if who.media is None or who.media.video_frames.empty():
                            continue
                        frame = who.media.video_frames.get_nowait()
                        image = np.asarray(frame.to_ndarray(format="bgr24"), dtype=np.uint8)
                        stamp = read_stamp(image)
                        if stamp is not None:
                            stamps[name].append(stamp[0])
                    await asyncio.sleep(0.01)
            for seen in stamps.values():
                assert seen == sorted(seen)  # live and in order for each viewer
            assert gateway.peers is not None and len(gateway.peers.open_peers) == 2
    finally:
        for who in (doctor, viewer):
            if who.media is not None:
                await who.media.close()
        await doctor.client.close()
        await tech.close()


async def test_a_bad_answer_or_candidate_does_not_bring_the_bedside_down(
    server: LiveServer,
) -> None:
    """A clinician's client answers with garbage: the gateway logs it, drops that
    connection, offers again, and a proper answer then connects."""
    tech, doctor, row = await active_consultation(server)
    try:
        async with bedside(server) as gateway:
            await gateway_in(gateway, row.id)
            await doctor.client.join(row.id)
            offer = await next_of_type(doctor.client.recv, Offer, timeout=15)
            assert offer.sender is not None
            await doctor.client.send(
                Candidate(to=offer.sender, candidate="candidate:not an ice candidate")
            )
            await doctor.client.send(Answer(to=offer.sender, sdp="v=0\r\nthis is not SDP\r\n"))
            again = await next_of_type(doctor.client.recv, Offer, timeout=15)  # a fresh offer
            async with tasks(doctor.answer_offers()):
                doctor.offers = 0
                media = MediaPeer([], receive_video=True)
                doctor.media = media
                await doctor.client.send(
                    Answer(to=again.sender or "", sdp=await media.accept_offer(again.sdp))
                )
                await until(lambda: len(doctor.packets) >= 30, doctor)
            assert gateway.peers is not None and gateway.peers.open_peers
    finally:
        if doctor.media is not None:
            await doctor.media.close()
        await doctor.client.close()
        await tech.close()


async def test_an_offer_nobody_answers_is_made_again(server: LiveServer) -> None:
    """The clinician's answer is lost (a browser closed mid-negotiation, a signaling blip):
    the connection never opens, so no heartbeat can declare it dead. The gateway gives the
    offer up after its open timeout and offers again; the clinician then connects."""
    tech, doctor, row = await active_consultation(server)
    try:
        async with bedside(server, peer_open_timeout_s=2.0) as gateway:
            await gateway_in(gateway, row.id)
            await doctor.client.join(row.id)
            await next_of_type(doctor.client.recv, Offer, timeout=15)  # left unanswered
            async with tasks(doctor.answer_offers()):
                await until(lambda: len(doctor.packets) >= 30, doctor)
            assert doctor.offers == 1  # the second offer, answered
            assert gateway.peers is not None and gateway.peers.deaths == 1
    finally:
        if doctor.media is not None:
            await doctor.media.close()
        await doctor.client.close()
        await tech.close()


async def test_an_event_the_vitals_processing_fails_on_is_skipped(server: LiveServer) -> None:
    """Something the processing cannot take reaches the pump: it is logged and skipped, and
    the device's values go on reaching the doctor."""
    tech, doctor, row = await active_consultation(server)
    try:
        async with bedside(server) as gateway, tasks(doctor.answer_offers()):
            await gateway_in(gateway, row.id)
            await doctor.client.join(row.id)
            await until(lambda: len(doctor.numerics(SPO2.key)) >= 1, doctor)
            source = gateway.sources[0]
            source.events.put_nowait(object())  # type: ignore[arg-type]
            before = len(doctor.numerics(SPO2.key))
            await until(lambda: len(doctor.numerics(SPO2.key)) >= before + 3, doctor)
            assert gateway.events_failed == 1
    finally:
        if doctor.media is not None:
            await doctor.media.close()
        await doctor.client.close()
        await tech.close()
