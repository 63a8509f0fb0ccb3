"""The device reader's long-lived task: whatever its link or its decoder does, it reports the
device's state and goes on."""

from __future__ import annotations

import asyncio
import itertools
import logging
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import pytest

from devices.drivers import DRIVERS, Decoder
from devices.errors import SerialError
from devices.model import DeviceEvent, DeviceState, DeviceStatus, Observation
from devices.protocols import cms50
from devices.protocols.intellivue import messages as m
from devices.protocols.intellivue.framing import Deframer, encode_frame
from devices.protocols.intellivue.host import IntelliVueHost
from devices.reader import DeviceReader, ReaderOptions
from devices.simulation.intellivue_monitor import IntelliVueSimulator
from devices.simulation.pty_link import PtyLink
from devices.simulation.registry import SIMULATORS
from devices.simulation.simulators import Cms50Simulator
from devices.transports.serial_port import open_serial
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


async def _until(
    reader: DeviceReader, predicate: Callable[[DeviceEvent], bool], seen: list[DeviceState]
) -> DeviceEvent:
    """Read events until one matches, noting every state reported on the way. The timeout
    bounds a hang; it is not a timing assertion."""
    async with asyncio.timeout(15):
        while True:
            event = await reader.events.get()
            if isinstance(event, DeviceStatus):
                seen.append(event.state)
            if predicate(event):
                return event


def _state(state: DeviceState) -> Callable[[DeviceEvent], bool]:
    return lambda e: isinstance(e, DeviceStatus) and e.state is state


def _spo2(event: DeviceEvent) -> bool:
    return isinstance(event, Observation) and event.code.key == "spo2" and event.value is not None


def _errors_logged(caplog: pytest.LogCaptureFixture, error: BaseException) -> int:
    return sum(
        1
        for r in caplog.records
        if r.levelno >= logging.ERROR and r.exc_info is not None and r.exc_info[1] is error
    )


async def test_the_port_vanishing_mid_frame_is_a_disconnection_then_a_recovery(
    tmp_path: Path,
) -> None:
    link = PtyLink(tmp_path / "tty")
    asked = asyncio.Event()
    link.plug(lambda _: asked.set())  # the device end, by hand for now
    reader = DeviceReader(DRIVERS["cms50"], link.path, options=FAST)
    task = spawn(reader.run(), "reader")
    simulator: asyncio.Task[None] | None = None
    try:
        async with asyncio.timeout(10):
            await asked.wait()  # the reader opened the port and asked for live data
        two = Cms50Simulator(PtyLink()).frames(2)
        link.write(two[: len(two) - 4])  # one frame and most of the next...
        await _until(reader, _spo2, [])
        link.unplug()  # ...and the cable comes out in the middle of it
        await _until(reader, _state(DeviceState.DISCONNECTED), [])

        simulator = spawn(Cms50Simulator(link).run(), "simulator")  # plugged back in
        seen: list[DeviceState] = []
        await _until(reader, _spo2, seen)
        assert seen == [DeviceState.CONNECTED]
        assert reader.connections == 2
        assert not task.done()
    finally:
        await cancel_and_wait([task, *([simulator] if simulator else [])])
        link.unplug()


async def test_the_port_vanishing_mid_association_is_a_disconnection_then_a_recovery(
    tmp_path: Path,
) -> None:
    link = PtyLink(tmp_path / "tty")
    heard = bytearray()
    link.plug(heard.extend)  # a monitor that hears the association request...
    reader = DeviceReader(DRIVERS["intellivue"], link.path, options=FAST)
    task = spawn(reader.run(), "reader")
    simulator: asyncio.Task[None] | None = None
    try:

        def association_requested() -> bool:
            payloads = Deframer().receive_data(bytes(heard))
            return any(
                isinstance(p, bytes) and isinstance(m.parse_host(p), m.AssociationRequest)
                for p in payloads
            )

        await eventually(association_requested)
        accept = encode_frame(m.association_result())
        link.write(accept[: len(accept) // 2])  # ...starts to accept it...
        link.unplug()  # ...and loses its cable
        await _until(reader, _state(DeviceState.DISCONNECTED), [])

        simulator = spawn(IntelliVueSimulator(link).run(), "monitor")  # a whole monitor
        seen: list[DeviceState] = []
        await _until(reader, _spo2, seen)
        assert seen == [DeviceState.CONNECTED]
        assert not task.done()
    finally:
        await cancel_and_wait([task, *([simulator] if simulator else [])])
        link.unplug()


class _Trap:
    """Armed by the test, sprung once by the code under test: the weird input."""

    def __init__(self) -> None:
        self.armed = False
        self.error = RuntimeError("a decoder bug met weird input")

    def spring(self) -> None:
        if self.armed:
            self.armed = False
            raise self.error


class _BrittleCms50(cms50.Cms50Decoder):
    def __init__(self, device_id: str, trap: _Trap) -> None:
        super().__init__(device_id)
        self._trap = trap

    def receive_data(self, data: bytes, now: float) -> list[DeviceEvent]:
        self._trap.spring()
        return super().receive_data(data, now)


class _BrittleIntelliVue(IntelliVueHost):
    def __init__(self, device_id: str, trap: _Trap) -> None:
        super().__init__(device_id)
        self._trap = trap

    def tick(self, now: float) -> None:
        self._trap.spring()
        super().tick(now)


@pytest.mark.parametrize("where", ["decoding", "conversation timer"])
async def test_a_decoder_that_raises_restarts_the_session_and_the_reader_goes_on(
    where: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """The reader's choice: a decoder that raises is logged with its traceback, the device
    reported in error ("device error"), and the session started afresh with a new decoder
    (its state may be broken; the device's handshake, if any, runs again)."""
    trap = _Trap()
    protocol = "cms50" if where == "decoding" else "intellivue"
    brittle: Callable[[str], Decoder] = (
        (lambda device_id: _BrittleCms50(device_id, trap))
        if protocol == "cms50"
        else (lambda device_id: _BrittleIntelliVue(device_id, trap))
    )
    link = PtyLink(tmp_path / "tty")
    simulator = spawn(SIMULATORS[protocol](link).run(), "simulator")
    await eventually(lambda: link.plugged)
    driver = replace(DRIVERS[protocol], make_decoder=brittle)
    reader = DeviceReader(driver, link.path, options=FAST)
    task = spawn(reader.run(), "reader")
    try:
        await _until(reader, _spo2, [])
        trap.armed = True
        lost = await _until(reader, _state(DeviceState.ERROR), [])
        assert isinstance(lost, DeviceStatus)
        assert lost.detail.startswith("device error: ")
        assert "a decoder bug met weird input" in lost.detail
        seen: list[DeviceState] = []
        await _until(reader, _spo2, seen)
        assert seen == [DeviceState.CONNECTED]
        assert reader.connections == 2
        assert not task.done()
        assert _errors_logged(caplog, trap.error) == 1
    finally:
        await cancel_and_wait([task, simulator])


class _AlwaysRaises(cms50.Cms50Decoder):
    def receive_data(self, data: bytes, now: float) -> list[DeviceEvent]:
        raise RuntimeError("a decoder bug met on every read")


async def test_a_decoder_that_raises_on_every_read_is_restarted_with_growing_backoff(
    tmp_path: Path,
) -> None:
    """The supervisor's backoff (issue 11): a reader whose decoder dies on every read on a
    live pty is started afresh again and again, each time after a longer pause (doubling up
    to its ceiling), never in a hot loop; the device stays in ERROR, said once. Pauses
    are only bounded below: a loaded machine can make them longer, never shorter."""
    options = ReaderOptions(backoff_initial_s=0.05, backoff_max_s=0.4)
    link = PtyLink(tmp_path / "tty")
    simulator = spawn(SIMULATORS["cms50"](link).run(), "simulator")
    await eventually(lambda: link.plugged)
    driver = replace(DRIVERS["cms50"], make_decoder=_AlwaysRaises)
    opened: list[float] = []

    async def opener() -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        opened.append(asyncio.get_running_loop().time())
        return await open_serial(link.path, driver.serial)

    reader = DeviceReader(driver, link.path, options=options, opener=opener)
    task = spawn(reader.run(), "reader")
    try:
        await eventually(lambda: len(opened) >= 6, timeout=30)
        gaps = [b - a for a, b in itertools.pairwise(opened)][:5]
        # The n-th restart waits uniform(c/2, c), c = min(0.4, 0.05 * 2**n): at least
        # 0.025, 0.05, 0.1, 0.2, 0.2 s.
        floors = [min(0.4, 0.05 * 2**n) / 2 for n in range(len(gaps))]
        assert all(gap >= floor for gap, floor in zip(gaps, floors, strict=True)), gaps
        assert not task.done()
        states = [e.state for e in _drain(reader) if isinstance(e, DeviceStatus)]
        assert states.count(DeviceState.ERROR) == 1, states
        assert DeviceState.CONNECTED not in states  # never productive: no data went out
    finally:
        await cancel_and_wait([task, simulator])
        link.unplug()
