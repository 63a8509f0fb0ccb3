"""Keeps one device connected and decoded: open, handshake, keep-alive, silence detection,
reconnection with backoff. A device unplugged and plugged back in resumes by itself.

Events go to a bounded queue. When the consumer falls behind, the oldest events are dropped
(and counted): on a live vital-signs path fresh data matters more than complete old data.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from devices.drivers import Conversation, Driver
from devices.errors import SerialError
from devices.model import DeviceEvent, DeviceState, DeviceStatus
from devices.transports.serial_port import open_serial
from runtime.queues import DropOldestQueue
from runtime.tasks import cancel_and_wait

log = logging.getLogger(__name__)

Opener = Callable[[], Awaitable[tuple[asyncio.StreamReader, asyncio.StreamWriter]]]


@dataclass(frozen=True)
class ReaderOptions:
    backoff_initial_s: float = 0.2
    backoff_max_s: float = 5.0
    queue_size: int = 1024
    read_size: int = 4096


class DeviceReader:
    """Reads one device on ``port`` with ``driver``. Call :meth:`run` in a task you own;
    cancel it to stop. Read events with ``await reader.events.get()``."""

    def __init__(
        self,
        driver: Driver,
        port: str,
        device_id: str | None = None,
        options: ReaderOptions | None = None,
        opener: Opener | None = None,
    ) -> None:
        self.driver = driver
        self.port = port
        self.device_id = device_id or f"{driver.name}@{port}"
        self.options = options or ReaderOptions()
        self.events: DropOldestQueue[DeviceEvent] = DropOldestQueue(self.options.queue_size)
        self.connections = 0
        self._last_state: DeviceState | None = None
        self._open = opener or (lambda: open_serial(port, driver.serial))

    def _put(self, event: DeviceEvent) -> None:
        if isinstance(event, DeviceStatus):
            self._last_state = event.state
        self.events.put_latest(event)

    @property
    def dropped(self) -> int:
        """Events dropped because the consumer fell behind."""
        return self.events.dropped

    def _status(self, state: DeviceState, detail: str = "") -> None:
        """Report a change of state; a retry that changes nothing says nothing (an outage
        is one DISCONNECTED, not one a retry)."""
        if state is self._last_state:
            return
        self._put(DeviceStatus(self.device_id, state, time.time(), detail))

    async def run(self) -> None:
        attempt = 0
        while True:
            if self._last_state is None:
                self._status(DeviceState.CONNECTING, self.port)
            try:
                reader, writer = await self._open()
            except SerialError as exc:
                self._status(DeviceState.DISCONNECTED, f"cannot open: {exc}")
            else:
                self.connections += 1
                try:
                    if await self._session(reader, writer):
                        attempt = 0
                finally:
                    writer.close()
                    with contextlib.suppress(SerialError, ConnectionError):
                        await writer.wait_closed()
            ceiling = min(self.options.backoff_max_s, self.options.backoff_initial_s * 2**attempt)
            attempt += 1
            await asyncio.sleep(random.uniform(ceiling / 2, ceiling))

    async def _session(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> bool:
        """Serve one open link until it fails; True if any data arrived."""
        driver = self.driver
        decoder = driver.make_decoder(self.device_id)
        got_data = False
        if driver.hello:
            writer.write(driver.hello)
        talks = decoder if isinstance(decoder, Conversation) else None
        keepalive = (
            asyncio.create_task(self._keepalive(writer), name=f"keepalive-{self.device_id}")
            if driver.keepalive_s > 0
            else asyncio.create_task(self._converse(writer, talks), name=f"tick-{self.device_id}")
            if talks is not None and driver.tick_s > 0
            else None
        )
        try:
            while True:
                try:
                    # asyncio.timeout, not wait_for: on Python 3.11 wait_for can swallow a
                    # cancellation that races with a read, and this loop would then never end.
                    async with asyncio.timeout(driver.silence_s):
                        data = await reader.read(self.options.read_size)
                except TimeoutError:
                    self._status(DeviceState.SILENT, f"no data for {driver.silence_s:g} s")
                    return got_data
                if not data:
                    self._status(DeviceState.DISCONNECTED, "end of stream")
                    return got_data
                got_data = True
                for event in decoder.receive_data(data, time.time()):
                    self._put(event)
                if talks is not None:  # answers go out at once (an event acknowledgement)
                    writer.write(talks.data_to_send())
        except (SerialError, ConnectionError) as exc:
            self._status(DeviceState.DISCONNECTED, f"link lost: {exc}")
            return got_data
        finally:
            if keepalive is not None:
                await cancel_and_wait([keepalive])

    async def _converse(self, writer: asyncio.StreamWriter, decoder: Conversation) -> None:
        """Drive a conversation's timers and send what it has to say."""
        try:
            while True:
                decoder.tick(time.time())
                writer.write(decoder.data_to_send())
                await asyncio.sleep(self.driver.tick_s)
        except (SerialError, ConnectionError) as exc:
            log.debug("%s: conversation stopped: %r", self.device_id, exc)

    async def _keepalive(self, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                await asyncio.sleep(self.driver.keepalive_s)
                writer.write(self.driver.keepalive)
        except (SerialError, ConnectionError) as exc:
            # The read side notices the same failure and reconnects.
            log.debug("%s: keep-alive stopped: %r", self.device_id, exc)
