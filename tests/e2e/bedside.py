"""A simulated Wonju bedside for end-to-end tests: an oximeter on a real pty and a synthetic
camera, read by a real gateway that follows its site's consultation on the live server."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

from devices.simulation.patient import Patient, PatientParameters
from devices.simulation.pty_link import PtyLink
from devices.simulation.simulators import Cms50Simulator
from media.video.processing import ProcessingSettings
from telemed.gateway.runner import DeviceSpec, Gateway, GatewayConfig
from telemed.tasks import cancel_and_wait
from tests.helpers import LiveServer

GATEWAY = "bed-1.wonju"
KEY = "bed-1-key-for-tests-0123456789abcdef"


@contextlib.asynccontextmanager
async def bedside(server: LiveServer) -> AsyncIterator[Gateway]:
    """Creates the gateway account, runs simulator and gateway; stops both on exit."""
    await server.add_gateway(GATEWAY, "wonju", KEY)
    link = PtyLink()
    oximeter = Cms50Simulator(link, Patient(PatientParameters(spo2=97.0, heart_rate=72.0)))
    simulator = asyncio.create_task(oximeter.run(), name="oximeter")
    await asyncio.sleep(0)  # plugged in: the pty exists
    gateway = Gateway(
        GatewayConfig(
            server_url=server.base_url,
            name=GATEWAY,
            key=KEY,
            mains_hz=60.0,
            devices=(DeviceSpec("cms50", link.path, "oximeter-1"),),
            camera="synthetic",
            video=ProcessingSettings(320, 240, overlay="Wonju"),
        )
    )
    running = asyncio.create_task(gateway.run(), name="gateway")
    try:
        yield gateway
    finally:
        await cancel_and_wait([running, simulator])
