"""Serial ports as asyncio streams (pyserial + pyserial-asyncio-fast); works the same on a
real ``/dev/ttyUSB*``/``/dev/ttyACM*`` and on a pseudo-terminal. Whatever pyserial, the OS or
termios raise about a port reaches callers as :class:`~devices.errors.SerialError`."""

from __future__ import annotations

import asyncio
import os
import termios
from dataclasses import dataclass
from typing import Literal

import serial
import serial_asyncio_fast
from serial.tools import list_ports

from devices.errors import SerialError

#: What pyserial raises when a port is absent, unplugged or refuses the line settings
#: (termios.error is not an OSError): translated into SerialError at this boundary.
PORT_FAILURES = (OSError, serial.SerialException, termios.error)

Parity = Literal["N", "E", "O"]


@dataclass(frozen=True)
class SerialParams:
    baudrate: int
    bytesize: int = 8
    parity: Parity = "N"
    stopbits: float = 1
    rtscts: bool = False

    def describe(self) -> str:
        return f"{self.baudrate} {self.bytesize}{self.parity}{self.stopbits:g}"


async def open_serial(
    port: str, params: SerialParams
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """Open ``port`` as a pair of streams. Raises :class:`~devices.errors.SerialError` when
    it cannot, and the streams raise it when the port fails while open (a read, ``drain``
    or ``wait_closed``), with the underlying error as ``__cause__``."""
    parity, rtscts = params.parity, params.rtscts
    if is_pseudo_terminal(port):
        # A pty carries bytes, not bits on a wire: parity and hardware flow control mean
        # nothing there, and Linux refuses some of them on one (EINVAL).
        parity, rtscts = "N", False
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader(loop=loop)
    protocol = _SerialStreamProtocol(reader, loop=loop)
    try:
        transport, _ = await serial_asyncio_fast.create_serial_connection(
            loop,
            lambda: protocol,
            url=port,
            baudrate=params.baudrate,
            bytesize=params.bytesize,
            parity=parity,
            stopbits=params.stopbits,
            rtscts=rtscts,
        )
    except PORT_FAILURES as exc:
        raise SerialError(f"cannot open {port}: {exc}") from exc
    return reader, asyncio.StreamWriter(transport, protocol, reader, loop)


class _SerialStreamProtocol(asyncio.StreamReaderProtocol):
    """The streams' protocol, translating the transport's failure (a read that fails when
    the cable is pulled out) into :class:`~devices.errors.SerialError`."""

    def connection_lost(self, exc: Exception | None) -> None:
        if exc is not None and not isinstance(exc, SerialError):
            error = SerialError(str(exc) or type(exc).__name__)
            error.__cause__ = exc
            exc = error
        super().connection_lost(exc)


def is_pseudo_terminal(port: str) -> bool:
    return os.path.realpath(port).startswith("/dev/pts/")


#: USB (vendor, product) ids of serial bridges seen in device cables, and what they suggest.
USB_HINTS: dict[tuple[int, int], tuple[str, str]] = {
    (0x10C4, 0xEA60): ("cms50", "Silicon Labs CP210x: Contec CMS50D+/E cable"),
    (0x0403, 0x6001): ("", "FTDI FT232: generic RS-232 (IntelliVue MIB, Datex, Masimo)"),
    (0x0403, 0x6015): ("", "FTDI FT-X: generic RS-232"),
    (0x067B, 0x2303): ("", "Prolific PL2303: generic RS-232"),
    (0x1A86, 0x7523): ("", "WCH CH340: generic RS-232"),
}


@dataclass(frozen=True)
class PortInfo:
    device: str
    description: str
    vid: int | None
    pid: int | None
    serial_number: str | None
    suggested_protocol: str
    hint: str


def list_serial_ports() -> list[PortInfo]:
    """Serial ports on this machine with their USB ids and the protocol they suggest."""
    found = []
    for port in sorted(list_ports.comports(), key=lambda p: p.device):
        suggestion, hint = USB_HINTS.get((port.vid or 0, port.pid or 0), ("", ""))
        found.append(
            PortInfo(
                port.device,
                port.description,
                port.vid,
                port.pid,
                port.serial_number,
                suggestion,
                hint,
            )
        )
    return found
