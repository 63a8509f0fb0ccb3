"""Per-protocol link facts: serial settings, the handshake, keep-alives, and the decoder.

The reader (:mod:`devices.reader`) is protocol-agnostic; everything a protocol needs beyond
its codec is stated here.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol, TypeVar, runtime_checkable

from devices.errors import UnknownProtocol
from devices.model import DecoderStats, DeviceEvent
from devices.protocols import cms50, datex, hl7_pcd, masimo, nonin
from devices.protocols.intellivue.host import IntelliVueHost
from devices.transports.serial_port import SerialParams


class Decoder(Protocol):
    stats: DecoderStats

    def receive_data(self, data: bytes, now: float) -> list[DeviceEvent]: ...


@runtime_checkable
class Conversation(Decoder, Protocol):
    """A decoder that also talks: it answers and keeps timers (sans-I/O, like the decoders)."""

    def tick(self, now: float) -> None: ...

    def data_to_send(self) -> bytes: ...


T = TypeVar("T")


class Registry(dict[str, T]):
    """Protocols by name: a plain dict, except that a missing name raises
    :class:`~devices.errors.UnknownProtocol` naming the known ones."""

    def __missing__(self, name: str) -> T:
        raise UnknownProtocol(name, list(self))


@dataclass(frozen=True)
class Driver:
    name: str
    description: str
    serial: SerialParams
    make_decoder: Callable[[str], Decoder]
    #: Sent once the port is open (e.g. "start live data").
    hello: bytes = b""
    #: Sent every ``keepalive_s`` while connected (0: never).
    keepalive: bytes = b""
    keepalive_s: float = 0.0
    #: No bytes for this long: the device is taken as gone and the link is reopened.
    silence_s: float = 5.0
    #: For conversations: how often ``tick`` runs.
    tick_s: float = 0.0


DRIVERS: Registry[Driver] = Registry(
    {
        "cms50": Driver(
            "cms50",
            "Contec CMS50D+/CMS50E pulse oximeter, protocol V7.0",
            SerialParams(115200),
            lambda device_id: cms50.Cms50Decoder(device_id),
            hello=cms50.encode_command(cms50.Command.START_LIVE),
            keepalive=cms50.encode_command(cms50.Command.STILL_CONNECTED),
            # The device drops the live stream without a regular "still connected".
            keepalive_s=1.0,
            silence_s=3.0,
        ),
        "cms50-legacy": Driver(
            "cms50-legacy",
            "Contec CMS50 with older firmware (5-byte packets, streams unasked)",
            SerialParams(19200, parity="O"),
            lambda device_id: cms50.Cms50LegacyDecoder(device_id),
            silence_s=3.0,
        ),
        "nonin": Driver(
            "nonin",
            "Nonin OEM pulse oximeter, serial data format #2",
            SerialParams(9600),
            lambda device_id: nonin.NoninDecoder(device_id, nonin.Format.PLETH_8),
            hello=nonin.select_format(nonin.Format.PLETH_8),
            silence_s=3.0,
        ),
        "datex": Driver(
            "datex",
            "GE Datex-Ohmeda S/5 computer interface (displayed values and ECG/pleth waves)",
            SerialParams(19200, parity="E", rtscts=True),
            lambda device_id: datex.DatexDecoder(device_id),
            hello=datex.frame(datex.phdb_request(5))
            + datex.frame(datex.wave_request([datex.WaveType.ECG1, datex.WaveType.PLETH]))
            + datex.frame(datex.alarm_request()),
            silence_s=5.0,
        ),
        "intellivue": Driver(
            "intellivue",
            "Philips IntelliVue Data Export over MIB/RS232 (numerics and ECG/pleth waves)",
            SerialParams(115200),
            lambda device_id: IntelliVueHost(device_id),
            silence_s=10.0,
            tick_s=0.1,
        ),
        "nonin-7": Driver(
            "nonin-7",
            "Nonin OEM pulse oximeter, serial data format #7 (16-bit pleth)",
            SerialParams(9600),
            lambda device_id: nonin.NoninDecoder(device_id, nonin.Format.PLETH_16),
            hello=nonin.select_format(nonin.Format.PLETH_16),
            silence_s=3.0,
        ),
        "nonin-8": Driver(
            "nonin-8",
            "Nonin OEM pulse oximeter, serial data format #8 (numerics once a second)",
            SerialParams(9600),
            lambda device_id: nonin.NoninDecoder(device_id, nonin.Format.NUMERICS),
            hello=nonin.select_format(nonin.Format.NUMERICS),
            silence_s=5.0,
        ),
        "masimo": Driver(
            "masimo",
            "Masimo Radical/Rad-8 ASCII serial output (one line a second)",
            SerialParams(9600),
            lambda device_id: masimo.MasimoDecoder(device_id),
            silence_s=5.0,
        ),
    }
)


def _hl7_decoder(device_id: str) -> Decoder:
    return hl7_pcd.Hl7Decoder(device_id)


#: Every protocol's decoder by name (serial or network), for decoding captures.
DECODERS: Registry[Callable[[str], Decoder]] = Registry(
    {
        **{name: driver.make_decoder for name, driver in DRIVERS.items()},
        "hl7": _hl7_decoder,
    }
)
