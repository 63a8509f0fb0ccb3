"""Simulated bedside devices wired as the gateway's devices: each protocol's simulator on a
pseudo-terminal of its own, and the :class:`DeviceSpec` that reads it as a real serial
device (``telemed demo``, ``telemed gateway --simulate``)."""

from __future__ import annotations

import asyncio
import contextlib
import tempfile
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass, field
from pathlib import Path

from devices.simulation.patient import Patient, PatientParameters
from devices.simulation.pty_link import PtyLink
from devices.simulation.registry import SIMULATORS
from runtime.tasks import cancel_and_wait, spawn
from telemed.gateway.runner import DeviceSpec


@dataclass(frozen=True)
class SimulatedDevice:
    """``protocol``: a name in ``SIMULATORS``; ``patient``: whom the device measures (two
    devices given the same parameters, seed included, measure the same synthetic person)."""

    protocol: str
    device_id: str
    patient: PatientParameters = field(default_factory=PatientParameters)


@contextlib.asynccontextmanager
async def simulated_devices(devices: Iterable[SimulatedDevice]) -> AsyncIterator[list[DeviceSpec]]:
    """Run a simulator for each device, each on a pseudo-terminal reached through a link in
    a temporary directory, and yield the devices to read (in the same order). On exit the
    simulators are cancelled and awaited and the links removed.

    Raises :class:`~devices.errors.UnknownProtocol` for a protocol without a simulator,
    before anything starts."""
    wanted = [(device, SIMULATORS[device.protocol]) for device in devices]
    with tempfile.TemporaryDirectory(prefix="telemed-sim-") as tmp:
        specs: list[DeviceSpec] = []
        tasks: list[asyncio.Task[None]] = []
        try:
            for device, simulator in wanted:
                link = PtyLink(Path(tmp) / device.device_id)
                running = simulator(link, Patient(device.patient)).run()
                tasks.append(spawn(running, f"simulator-{device.device_id}"))
                specs.append(DeviceSpec(device.protocol, link.path, device.device_id))
            await asyncio.sleep(0)  # each simulator plugs its pty in: the links exist
            yield specs
        finally:
            await cancel_and_wait(tasks)
