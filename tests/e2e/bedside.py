"""A simulated Wonju bedside for end-to-end tests: an oximeter on a real pty and a synthetic
camera, read by a real gateway that follows its site's consultation on the live server."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

from devices.simulation.patient import Patient, PatientParameters
from devices.simulation.pty_link import PtyLink
from devices.simulation.registry import SIMULATORS
from devices.simulation.test_pattern import TestPattern
from media.video.processing import ProcessingSettings
from runtime.tasks import cancel_and_wait
from telemed.gateway.runner import DeviceSpec, Gateway, GatewayConfig
from tests.helpers import LiveServer

GATEWAY = "bed-1.wonju"
KEY = "bed-1-key-for-tests-0123456789abcdef"


@contextlib.asynccontextmanager
async def bedside(
    server: LiveServer, *, monitor: bool = False, pattern: bool = False, **config: Any
) -> AsyncIterator[Gateway]:
    """Creates the gateway account on the in-process server, then as :func:`bedside_at`."""
    await server.add_gateway(GATEWAY, "wonju", KEY)
    async with bedside_at(
        server.base_url, GATEWAY, KEY, monitor=monitor, pattern=pattern, **config
    ) as gateway:
        yield gateway


@contextlib.asynccontextmanager
async def bedside_at(
    base_url: str,
    name: str,
    key: str,
    *,
    monitor: bool = False,
    pattern: bool = False,
    **config: Any,
) -> AsyncIterator[Gateway]:
    """Runs an oximeter simulator on a pty and a gateway reading it (and a synthetic camera)
    against the server at ``base_url``; stops both on exit. ``monitor``: an IntelliVue
    patient monitor too (ECG, pleth, HR, SpO2, NIBP, respiration, temperature). ``pattern``:
    the oximeter's pleth is the coded test pattern (devices/simulation/test_pattern.py:
    sample k is k mod 120), so a test can check each sample where it is shown.
    ``config``: more GatewayConfig fields."""
    patient = PatientParameters(spo2=97.0, heart_rate=72.0)
    links = {"oximeter-1": ("cms50", PtyLink())}
    if monitor:
        links["monitor-1"] = ("intellivue", PtyLink())
    simulators = [
        asyncio.create_task(
            SIMULATORS[protocol](
                link, TestPattern() if pattern and protocol == "cms50" else Patient(patient)
            ).run(),
            name=device,
        )
        for device, (protocol, link) in links.items()
    ]
    await asyncio.sleep(0)  # plugged in: the ptys exist
    gateway = Gateway(
        GatewayConfig(
            server_url=base_url,
            name=name,
            key=key,
            mains_hz=60.0,
            devices=tuple(
                DeviceSpec(protocol, link.path, device)
                for device, (protocol, link) in links.items()
            ),
            camera="synthetic",
            video=ProcessingSettings(320, 240, overlay="Wonju", timezone="Asia/Seoul"),
            **config,
        )
    )
    running = asyncio.create_task(gateway.run(), name="gateway")
    try:
        yield gateway
    finally:
        await cancel_and_wait([running, *simulators])
