"""A doctor reviews what the gateway kept: a real aiortc doctor asks the real gateway (a
CMS50 simulator sending the coded test pattern on a pty) for a range of pleth samples and
gets exactly the samples that were sent, on its own connection; a channel never sent is an
empty answer; a burst of requests beyond the bucket is refused."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

import numpy as np
import pytest

from devices.codes import PLETH
from devices.simulation.pty_link import PtyLink
from devices.simulation.registry import SIMULATORS
from devices.simulation.test_pattern import TestPattern, ramp_length
from media.rtc.events import WaveformHistoryRequest
from runtime.tasks import cancel_and_wait, spawn
from telemed.gateway.history import BURST
from telemed.gateway.runner import DeviceSpec, Gateway, GatewayConfig
from tests.e2e.bedside import GATEWAY, KEY
from tests.e2e.doctor import Doctor, active_consultation, gateway_in, tasks, until
from tests.helpers import LiveServer

pytestmark = pytest.mark.slow


@contextlib.asynccontextmanager
async def coded_oximeter(server: LiveServer) -> AsyncIterator[Gateway]:
    await server.add_gateway(GATEWAY, "wonju", KEY)
    link = PtyLink()
    simulator = spawn(SIMULATORS["cms50"](link, TestPattern()).run(), "simulator")
    await asyncio.sleep(0)  # plugged in: the pty exists
    gateway = Gateway(
        GatewayConfig(
            server_url=server.base_url,
            name=GATEWAY,
            key=KEY,
            mains_hz=60.0,
            devices=(DeviceSpec("cms50", link.path, "oximeter-1"),),
        )
    )
    running = spawn(gateway.run(), "gateway")
    try:
        yield gateway
    finally:
        await cancel_and_wait([running, simulator])


def _answers(doctor: Doctor, channel: int, first: int) -> list[dict[str, Any]]:
    return [
        m
        for m in doctor.messages
        if m["type"] == "waveform-history"
        and m["channel"] == channel
        and m["request_first"] == first
    ]


def _done(doctor: Doctor, channel: int, first: int) -> bool:
    return any(m["done"] for m in _answers(doctor, channel, first))


async def test_a_requested_range_comes_back_as_the_device_sampled_it(server: LiveServer) -> None:
    tech, doctor, row = await active_consultation(server)
    try:
        async with coded_oximeter(server) as gateway, tasks(doctor.answer_offers()):
            await gateway_in(gateway, row.id)
            await doctor.client.join(row.id)

            def pleth() -> list[Any]:
                ids = doctor.channel_ids(PLETH.mdc)
                return [p for p in doctor.packets if p.channel in ids]

            await until(lambda: sum(len(p.samples) for p in pleth()) >= 300, doctor)
            (channel,) = doctor.channel_ids(PLETH.mdc)
            live = {p.first_index + k: float(v) for p in pleth() for k, v in enumerate(p.samples)}
            first, count = min(live) + 20, 240
            assert all(first + k in live for k in range(count))  # a loss-free loopback
            assert doctor.media is not None
            doctor.media.send_event(
                WaveformHistoryRequest(channel=channel, first=first, count=count)
            )
            doctor.media.send_event(WaveformHistoryRequest(channel=999, first=0, count=10))
            await until(lambda: _done(doctor, channel, first) and _done(doctor, 999, 0), doctor)

            (answer,) = _answers(doctor, channel, first)
            assert (answer["first"], answer["rate"], answer["request_count"]) == (
                first,
                60.0,
                count,
            )
            samples = answer["samples"]
            assert len(samples) == count and None not in samples
            # Exactly what was sent: the live packets' values (quantized on the wire) ...
            np.testing.assert_allclose(samples, [live[first + k] for k in range(count)], atol=0.01)
            # ... and the coded ramp itself, one step a sample (CMS50: k mod 120).
            m = ramp_length(60.0)
            assert all(float(v).is_integer() for v in samples)
            steps = np.mod(np.diff(np.asarray(samples, dtype=np.int64)), m)
            assert (steps == 1).all()
            (nothing,) = _answers(doctor, 999, 0)
            assert nothing["samples"] == [] and nothing["done"]

            # A browser cannot keep the bedside busy: a burst beyond the bucket is refused.
            for k in range(BURST + 4):
                doctor.media.send_event(
                    WaveformHistoryRequest(channel=channel, first=first + k, count=1)
                )
            async with asyncio.timeout(10):
                while gateway.history.refused < 4:
                    await asyncio.sleep(0.05)
            await until(lambda: _done(doctor, channel, first + BURST - 3), doctor)
            answered = [k for k in range(BURST + 4) if _done(doctor, channel, first + k)]
            assert len(answered) <= BURST
    finally:
        await tech.close()
        await doctor.client.close()
