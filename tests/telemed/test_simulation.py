"""Simulated devices wired as the gateway's devices: each read over its own pseudo-terminal
by the real reader, and nothing left running or lying around afterwards."""

from __future__ import annotations

import asyncio
import os

import pytest

from devices.drivers import DRIVERS
from devices.errors import UnknownProtocol
from devices.model import Observation
from devices.reader import DeviceReader
from devices.simulation.patient import PatientParameters
from devices.transports.serial_port import is_pseudo_terminal
from runtime.tasks import cancel_and_wait
from telemed.simulation import SimulatedDevice, simulated_devices


def _left_behind(paths: list[str]) -> list[str]:
    return [path for path in paths if os.path.lexists(path)]


async def _first_spo2(reader: DeviceReader) -> float:
    async with asyncio.timeout(15):
        while True:
            event = await reader.events.get()
            if isinstance(event, Observation) and event.code.key == "spo2" and event.value:
                return event.value


async def test_each_simulated_device_is_read_over_its_own_pty() -> None:
    patient = PatientParameters(spo2=93.0, seed=3)
    wanted = [SimulatedDevice("cms50", "oximeter-1", patient), SimulatedDevice("masimo", "ox-2")]
    async with simulated_devices(wanted) as specs:
        assert [(s.protocol, s.device_id) for s in specs] == [
            ("cms50", "oximeter-1"),
            ("masimo", "ox-2"),
        ]
        assert len({s.port for s in specs}) == 2
        assert all(is_pseudo_terminal(s.port) for s in specs)
        readers = [DeviceReader(DRIVERS[s.protocol], s.port, s.device_id) for s in specs]
        tasks = [asyncio.create_task(r.run()) for r in readers]
        try:
            spo2 = await _first_spo2(readers[0])
            assert abs(spo2 - 93.0) <= 2  # the patient it was given
            assert await _first_spo2(readers[1]) > 0
        finally:
            await cancel_and_wait(tasks)
        links = [s.port for s in specs]
    assert _left_behind(links) == []  # the temporary directory is gone
    assert not [t for t in asyncio.all_tasks() if t.get_name().startswith("simulator-")]


async def test_a_protocol_without_a_simulator_is_refused_before_anything_starts() -> None:
    with pytest.raises(UnknownProtocol):
        async with simulated_devices([SimulatedDevice("cms50", "a"), SimulatedDevice("x", "b")]):
            pytest.fail("nothing should run")
