"""The device reader's long-lived task: whatever its link or its decoder does, it reports the
device's state and goes on."""

from __future__ import annotations

import asyncio
from dataclasses import replace
from pathlib import Path

from devices.drivers import DRIVERS
from devices.errors import SerialError
from devices.model import DeviceEvent, DeviceState, DeviceStatus
from devices.reader import DeviceReader, ReaderOptions
from devices.simulation.pty_link import PtyLink
from devices.simulation.simulators import Cms50Simulator
from runtime.tasks import cancel_and_wait, spawn
from tests.helpers import eventually

FAST = ReaderOptions(backoff_initial_s=0.02, backoff_max_s=0.05)


def _drain(reader: DeviceReader) -> list[DeviceEvent]:
    events = []
    while not reader.events.empty():
        events.append(reader.events.get_nowait())
    return events


async def test_a_serial_error_from_the_port_is_a_disconnected_device_retried() -> None:
    attempts = 0

    async def absent_port() -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        nonlocal attempts
        attempts += 1
        raise SerialError("could not open port /dev/ttyUSB9") from FileNotFoundError(2, "absent")

    reader = DeviceReader(DRIVERS["cms50"], "/dev/ttyUSB9", options=FAST, opener=absent_port)
    task = spawn(reader.run(), "reader")
    try:
        await eventually(lambda: attempts >= 3)
        assert not task.done()
        statuses = [e for e in _drain(reader) if isinstance(e, DeviceStatus)]
        # One outage is one DISCONNECTED, however many times the port is tried.
        assert [s.state for s in statuses] == [DeviceState.CONNECTING, DeviceState.DISCONNECTED]
        assert statuses[1].detail == "cannot open: could not open port /dev/ttyUSB9"
    finally:
        await cancel_and_wait([task])


async def test_a_consumer_that_falls_behind_loses_the_oldest_events(tmp_path: Path) -> None:
    link = PtyLink(tmp_path / "tty")
    simulator = spawn(Cms50Simulator(link).run(), "simulator")
    await eventually(lambda: link.plugged)
    reader = DeviceReader(DRIVERS["cms50"], link.path, options=replace(FAST, queue_size=4))
    task = spawn(reader.run(), "reader")
    try:
        await eventually(lambda: reader.dropped > 10)  # nobody reads: the queue stays full
        assert reader.events.qsize() == 4
        newest = [e.receive_time for e in _drain(reader)]
        assert newest == sorted(newest)  # what is left is the latest, in order
    finally:
        await cancel_and_wait([task, simulator])
