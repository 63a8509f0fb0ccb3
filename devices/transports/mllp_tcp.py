"""HL7 over MLLP on TCP: the gateway's listener, and the monitor-side sender used by the
simulator. Both are thin: framing and parsing live in the sans-I/O codec."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import time
from collections.abc import Callable

from devices.model import DeviceEvent, DeviceState, DeviceStatus
from devices.protocols.hl7_pcd import Hl7Decoder
from devices.protocols.mllp import FramingError, MllpFramer, frame
from runtime.queues import DropOldestQueue

log = logging.getLogger(__name__)


class Hl7Listener:
    """Accepts monitor gateways on ``host:port``; decodes their ORU^R01, acknowledges each
    message, and puts events on a bounded queue (oldest dropped when the consumer lags).
    Call :meth:`run` in a task you own; :attr:`port` is known once :attr:`ready` is set.

    Each connection has a decoder of its own (``decoder`` makes them). A sender that goes
    away ends its connection only, reported as DISCONNECTED under its device id. A failure
    nobody foresaw while serving one (a decoder bug) is logged with the sender and its
    traceback, and closes that connection (its decoder's state is unknown; the sender
    reconnects): the listener and the other connections go on."""

    def __init__(
        self,
        host: str,
        port: int,
        device_id: str = "hl7",
        queue_size: int = 1024,
        *,
        decoder: Callable[[str], Hl7Decoder] = Hl7Decoder,
    ) -> None:
        self.host = host
        self.port = port
        self.device_id = device_id
        self._make_decoder = decoder
        self.events: DropOldestQueue[DeviceEvent] = DropOldestQueue(queue_size)
        self.ready = asyncio.Event()
        # Open connections and their handler tasks. Shutdown closes the transports and lets
        # the handlers end by themselves: cancelling a stream-server handler makes Python
        # 3.11's done-callback raise.
        self._handlers: dict[asyncio.Task[None], asyncio.StreamWriter] = {}

    @property
    def dropped(self) -> int:
        """Events dropped because the consumer fell behind."""
        return self.events.dropped

    async def run(self) -> None:
        server = await asyncio.start_server(self._accepted, self.host, self.port)
        self.port = server.sockets[0].getsockname()[1]
        log.info("HL7 listener on %s:%d", self.host, self.port)
        self.ready.set()
        try:
            await server.serve_forever()
        finally:
            server.close()
            for writer in self._handlers.values():
                writer.close()
            if self._handlers:
                await asyncio.wait(list(self._handlers), timeout=5.0)
            await server.wait_closed()

    async def _accepted(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """One connection's handler (asyncio.start_server's task). Never raises: an exception
        escaping here would reach only the event loop's exception handler."""
        task = asyncio.current_task()
        assert task is not None
        self._handlers[task] = writer
        peer = writer.get_extra_info("peername")
        # The sender's address names the connection in the log only: devices are named by
        # what the messages say (MSH-3/4, OBX-18), never by a source port that changes on
        # every reconnection.
        sender = f"{peer[0]}:{peer[1]}" if peer else "?"
        device_id = self.device_id
        decoder: Hl7Decoder | None = None
        try:
            sock = writer.get_extra_info("socket")
            if sock is not None:
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)  # ACKs at once
            decoder = self._make_decoder(self.device_id)
            while data := await reader.read(65536):
                for event in decoder.receive_data(data, time.time()):
                    self.events.put_latest(event)
                writer.write(decoder.data_to_send())
                await writer.drain()
        except OSError as exc:
            log.info("HL7 sender %s (%s) went away: %r", sender, self.device_id, exc)
        except Exception:  # a bug met on this connection: it alone is closed
            log.exception(
                "HL7 sender %s (%s): serving it failed; connection closed", sender, self.device_id
            )
        finally:
            heard = decoder.devices if decoder is not None else []
            for device in heard or [device_id]:
                self.events.put_latest(
                    DeviceStatus(device, DeviceState.DISCONNECTED, time.time(), f"from {sender}")
                )
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()
            del self._handlers[task]


class MllpSender:
    """Sends HL7 messages to a listener and waits for each ACK; reconnects as needed."""

    def __init__(self, host: str, port: int, ack_timeout_s: float = 5.0) -> None:
        self.host, self.port = host, port
        self.ack_timeout_s = ack_timeout_s
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None
        self._framer = MllpFramer()
        self._pending: list[bytes] = []

    async def _connect(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        if self._reader is None or self._writer is None:
            self._reader, self._writer = await asyncio.open_connection(self.host, self.port)
            sock = self._writer.get_extra_info("socket")
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            self._framer = MllpFramer()
            self._pending = []
        return self._reader, self._writer

    async def send(self, message: str, garbage: bytes = b"") -> str:
        """Send one message (``garbage`` first, to exercise the receiver); return the ACK
        text. Raises OSError or TimeoutError when the link fails (the next send reconnects)."""
        try:
            reader, writer = await self._connect()
            writer.write(garbage + frame(message))
            await writer.drain()
            async with asyncio.timeout(self.ack_timeout_s):
                while not self._pending:
                    data = await reader.read(65536)
                    if not data:
                        raise ConnectionResetError("listener closed the connection")
                    self._pending += [
                        m
                        for m in self._framer.receive_data(data)
                        if not isinstance(m, FramingError)
                    ]
            return self._pending.pop(0).decode("utf-8", errors="replace")
        except (OSError, TimeoutError):
            await self.close()
            raise

    async def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
            with contextlib.suppress(OSError):
                await self._writer.wait_closed()
        self._reader = self._writer = None
