"""Keeps one device connected and decoded: open, handshake, keep-alive, silence detection,
reconnection with backoff. A device unplugged and plugged back in resumes by itself.

Events go to a bounded queue. When the consumer falls behind, the oldest events are dropped
(and counted): on a live vital-signs path fresh data matters more than complete old data.

The reader's task never ends by itself. A link that fails or falls silent is reported as a
state and reopened. Decoders catch what one message raises at the message boundary (a
counted "decoder fault" frame error); a decoder (or a conversation's timer) that still
raises is a bug met on a live path: it is logged with its traceback, the device is reported
in state ERROR ("device error: ..."), and the session starts afresh with a new decoder,
after the same backoff as a failed link (a decoder that fails on every read then costs
little). Skipping the data and keeping the decoder was not chosen: its state after an
exception is unknown.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from devices.drivers import Conversation, Decoder, Driver
from devices.errors import SerialError
from devices.model import DeviceEvent, DeviceState, DeviceStatus
from devices.transports.serial_port import open_serial
from runtime.queues import DropOldestQueue
from runtime.tasks import cancel_and_wait, spawn

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
    cancel it to stop. Read events with ``await reader.events.get()``.

    ``opener`` replaces the serial port (tests, network links); it raises
    :class:`~devices.errors.SerialError` or another ``OSError`` when it cannot open."""

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
        #: Links opened, and attempts to open one that failed.
        self.connections = 0
        self.open_failures = 0
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
        """Keep the device connected until cancelled. Raises nothing but the cancellation:
        every failure becomes a reported state, is logged when unforeseen, and is retried
        with backoff."""
        attempt = 0
        while True:
            if self._last_state is None:
                self._status(DeviceState.CONNECTING, self.port)
            try:
                productive = await self._connect()
            except Exception as exc:  # unforeseen (a bug, a driver surprise): try again
                log.exception("%s: reading failed; reconnecting", self.device_id)
                self._status(DeviceState.ERROR, f"device error: {exc!r}")
                productive = False
            if productive:
                attempt = 0
            ceiling = min(self.options.backoff_max_s, self.options.backoff_initial_s * 2**attempt)
            attempt += 1
            await asyncio.sleep(random.uniform(ceiling / 2, ceiling))

    async def _connect(self) -> bool:
        """Open the link and serve it; True if the session was productive."""
        try:
            reader, writer = await self._open()
        except (SerialError, OSError) as exc:  # OSError: an opener for a network link
            self.open_failures += 1
            self._status(DeviceState.DISCONNECTED, f"cannot open: {exc}")
            return False
        self.connections += 1
        try:
            return await self._session(reader, writer)
        finally:
            writer.close()
            with contextlib.suppress(SerialError, ConnectionError):
                await writer.wait_closed()

    async def _session(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> bool:
        """Serve one open link: a reading task and, when the protocol needs one, a talking
        task (keep-alives, or a conversation's timers). The first to end ends the session:
        reading when the link fails or falls silent, talking only when it fails. True if
        data arrived and no part of the session failed."""
        driver = self.driver
        decoder = driver.make_decoder(self.device_id)
        talks = decoder if isinstance(decoder, Conversation) else None
        if driver.hello:
            writer.write(driver.hello)
        reading = spawn(self._read(reader, writer, decoder, talks), f"read-{self.device_id}")
        parts: list[asyncio.Task[Any]] = [reading]
        if driver.keepalive_s > 0:
            parts.append(spawn(self._keepalive(writer), f"keepalive-{self.device_id}"))
        elif talks is not None and driver.tick_s > 0:
            parts.append(spawn(self._converse(writer, talks), f"tick-{self.device_id}"))
        try:
            await asyncio.wait(parts, return_when=asyncio.FIRST_COMPLETED)
        finally:
            # A part's failure was logged (with its traceback) by spawn as it happened.
            await cancel_and_wait(parts, Exception)
        for part in parts:
            error = None if part.cancelled() else part.exception()
            if error is not None:
                # The decoder's state may be broken: a new session starts with a new one
                # (and the device's handshake, if any, runs again).
                self._status(DeviceState.ERROR, f"device error: {error!r}")
                return False
        return not reading.cancelled() and reading.result()

    async def _read(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        decoder: Decoder,
        talks: Conversation | None,
    ) -> bool:
        """Read and decode until the link fails or falls silent; True if any data arrived."""
        silence_s = self.driver.silence_s
        got_data = False
        try:
            while True:
                try:
                    async with asyncio.timeout(silence_s):
                        data = await reader.read(self.options.read_size)
                except TimeoutError:
                    self._status(DeviceState.SILENT, f"no data for {silence_s:g} s")
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

    async def _converse(self, writer: asyncio.StreamWriter, decoder: Conversation) -> None:
        """Drive a conversation's timers and send what it has to say."""
        try:
            while True:
                decoder.tick(time.time())
                writer.write(decoder.data_to_send())
                await asyncio.sleep(self.driver.tick_s)
        except (SerialError, ConnectionError) as exc:
            self._status(DeviceState.DISCONNECTED, f"link lost: {exc}")

    async def _keepalive(self, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                await asyncio.sleep(self.driver.keepalive_s)
                writer.write(self.driver.keepalive)
        except (SerialError, ConnectionError) as exc:
            self._status(DeviceState.DISCONNECTED, f"link lost: {exc}")
