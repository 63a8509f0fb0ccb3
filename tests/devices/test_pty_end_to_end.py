"""Simulator -> pseudo-terminal -> serial transport -> codec -> observations, for every
protocol, with the cable pulled out and put back in."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest

from devices.drivers import DRIVERS
from devices.model import DeviceEvent, DeviceState, DeviceStatus, Observation, WaveformChunk
from devices.protocols.cms50 import Command, encode_command
from devices.reader import DeviceReader, ReaderOptions
from devices.simulation.patient import Patient, PatientParameters
from devices.simulation.pty_link import PtyLink
from devices.simulation.registry import SIMULATORS
from devices.simulation.simulators import Cms50Simulator, Faults, Simulator
from devices.transports.serial_port import open_serial
from runtime.tasks import cancel_and_wait, spawn
from tests.helpers import eventually

FAST = ReaderOptions(backoff_initial_s=0.05, backoff_max_s=0.3)


async def _until(
    reader: DeviceReader, predicate: Callable[[DeviceEvent], bool], timeout: float = 8.0
) -> DeviceEvent:
    async with asyncio.timeout(timeout):
        while True:
            event = await reader.events.get()
            if predicate(event):
                return event


def _is(code: str, near: float, tolerance: float) -> Callable[[DeviceEvent], bool]:
    return lambda e: (
        isinstance(e, Observation)
        and e.code.key == code
        and e.value is not None
        and abs(e.value - near) <= tolerance
    )


@contextlib.asynccontextmanager
async def _running(
    protocol: str, tmp_path: Path, faults: Faults | None = None
) -> AsyncIterator[tuple[Simulator, DeviceReader, PtyLink]]:
    link = PtyLink(tmp_path / f"tty-{protocol}")
    patient = Patient(PatientParameters(heart_rate=80, spo2=96, rsa_bpm=0))
    simulator = SIMULATORS[protocol](link, patient, faults)
    sim_task = spawn(simulator.run(), "simulator")
    await eventually(lambda: link.plugged)
    reader = DeviceReader(DRIVERS[protocol], link.path, options=FAST)
    read_task = spawn(reader.run(), "reader")
    try:
        yield simulator, reader, link
    finally:
        await cancel_and_wait([read_task, sim_task])


@pytest.mark.parametrize("protocol", sorted(SIMULATORS))
async def test_device_over_pty_survives_unplug_and_replug(protocol: str, tmp_path: Path) -> None:
    async with _running(protocol, tmp_path) as (_, reader, link):
        await _until(reader, _is("spo2", 96, 2))
        await _until(reader, _is("pulse_rate", 80, 6))

        link.unplug()
        lost = await _until(
            reader, lambda e: isinstance(e, DeviceStatus) and e.state is DeviceState.DISCONNECTED
        )
        assert isinstance(lost, DeviceStatus)
        assert lost.detail.startswith("link lost")  # the read failed with a SerialError
        connections, failures = reader.connections, reader.open_failures
        # Several reopen attempts fail while the cable is out.
        await eventually(lambda: reader.open_failures >= failures + 2)
        link.replug()
        statuses: list[DeviceState] = []

        def spo2_or_status(event: DeviceEvent) -> bool:
            if isinstance(event, DeviceStatus):
                statuses.append(event.state)
            return _is("spo2", 96, 2)(event)

        await _until(reader, spo2_or_status)
        assert reader.connections > connections
        # One outage is one DISCONNECTED (already seen), then CONNECTED: no retry chatter.
        assert statuses == [DeviceState.CONNECTED]
        assert reader.dropped == 0


async def test_cms50_waveform_rate_and_handshake(tmp_path: Path) -> None:
    async with _running("cms50", tmp_path) as (simulator, reader, _):
        samples = 0
        async with asyncio.timeout(8):
            while samples < 120:  # two seconds of pleth
                event = await reader.events.get()
                if isinstance(event, WaveformChunk):
                    assert event.sample_rate == 60.0
                    samples += len(event.samples)
        assert isinstance(simulator, Cms50Simulator)
        seen = simulator.commands_seen
        assert seen[0] is Command.START_LIVE
        assert Command.STILL_CONNECTED in seen  # the gateway's keep-alives


async def test_probe_off_and_line_noise_are_reported(tmp_path: Path) -> None:
    faults = Faults(noise_per_s=5.0)
    async with _running("cms50", tmp_path, faults) as (_, reader, _):
        await _until(reader, _is("spo2", 96, 2))
        faults.probe_off = True
        event = await _until(
            reader, lambda e: isinstance(e, DeviceStatus) and e.state is DeviceState.PROBE_OFF
        )
        assert isinstance(event, DeviceStatus)
        await _until(
            reader,
            lambda e: isinstance(e, Observation) and e.code.key == "spo2" and e.value is None,
        )
        faults.probe_off = False
        await _until(reader, _is("spo2", 96, 2))


async def test_cms50_stops_streaming_without_keepalives(tmp_path: Path) -> None:
    """The device streams only after "start live data" and drops the stream when the host's
    "still connected" stops coming."""
    link = PtyLink(tmp_path / "tty")
    simulator = Cms50Simulator(link, keepalive_timeout_s=0.4)
    task = spawn(simulator.run(), "simulator")
    await eventually(lambda: link.plugged)
    reader, writer = await open_serial(link.path, DRIVERS["cms50"].serial)
    try:
        with pytest.raises(TimeoutError):  # silent until asked
            async with asyncio.timeout(0.3):
                await reader.read(100)
        writer.write(encode_command(Command.START_LIVE))
        async with asyncio.timeout(2):
            assert len(await reader.read(100)) > 0
        await eventually(lambda: not simulator.live)  # no keep-alive: the stream stops
        while True:
            try:
                async with asyncio.timeout(0.3):
                    await reader.read(4096)  # what was already sent
            except TimeoutError:
                break
        writer.write(encode_command(Command.START_LIVE))
        async with asyncio.timeout(2):
            assert len(await reader.read(100)) > 0
    finally:
        writer.close()
        await cancel_and_wait([task])


@pytest.mark.parametrize("driver", ["nonin-7", "nonin-8"])
async def test_a_nonin_reader_selecting_another_format_gets_data(
    driver: str, tmp_path: Path
) -> None:
    """The reader selects its format; the simulator (streaming #2) switches and goes on at
    the new format's rate. Counting #8's frames (one a second) on from #2's 75 a second
    stalled it for minutes, and the reader fell silent."""
    link = PtyLink(tmp_path / "tty")
    patient = Patient(PatientParameters(heart_rate=80, spo2=96, rsa_bpm=0))
    simulator = SIMULATORS["nonin"](link, patient)
    sim_task = spawn(simulator.run(), "simulator")
    await eventually(lambda: link.plugged)
    await asyncio.sleep(0.5)  # some #2 frames sent before the reader asks for its format
    reader = DeviceReader(DRIVERS[driver], link.path, options=FAST)
    read_task = spawn(reader.run(), "reader")
    try:
        await _until(reader, _is("spo2", 96, 2))
        await _until(reader, _is("pulse_rate", 80, 6))
    finally:
        await cancel_and_wait([read_task, sim_task])
