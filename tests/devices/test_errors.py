"""The devices package's exception tree: what its functions raise is a DeviceError, and still
the built-in its callers caught before."""

from __future__ import annotations

from pathlib import Path

import pytest

from devices.drivers import DECODERS, DRIVERS
from devices.errors import (
    CodecError,
    DeviceError,
    Hl7Error,
    MessageError,
    RecordError,
    SerialError,
    UnknownProtocol,
)
from devices.protocols.cms50 import parse_live
from devices.protocols.hl7_pcd import parse_oru
from devices.protocols.intellivue.messages import parse_monitor
from devices.recordings import read_record
from devices.simulation.registry import SIMULATORS
from devices.transports.serial_port import SerialParams, open_serial


def test_serial_error_is_a_class_that_can_be_raised_and_caught() -> None:
    cause = OSError(5, "Input/output error")
    with pytest.raises(SerialError) as caught:
        raise SerialError("link lost") from cause
    assert isinstance(caught.value, DeviceError)
    assert isinstance(caught.value, OSError)  # what callers caught when it was a tuple
    assert caught.value.__cause__ is cause


async def test_opening_an_absent_port_raises_serial_error_with_the_cause(tmp_path: Path) -> None:
    with pytest.raises(SerialError, match="cannot open") as caught:
        await open_serial(str(tmp_path / "ttyUSB9"), SerialParams(9600))
    assert caught.value.__cause__ is not None
    assert not isinstance(caught.value.__cause__, SerialError)


def test_codec_errors_are_device_errors_and_value_errors() -> None:
    with pytest.raises(CodecError):
        parse_live(b"\x01\x02")
    with pytest.raises(Hl7Error) as hl7:
        parse_oru("not hl7 at all", "gw", 0.0)
    with pytest.raises(MessageError) as intellivue:
        parse_monitor(b"")
    for error in (hl7.value, intellivue.value):
        assert isinstance(error, CodecError)
        assert isinstance(error, DeviceError)
        assert isinstance(error, ValueError)


def test_an_unreadable_record_is_a_record_error(tmp_path: Path) -> None:
    with pytest.raises(RecordError, match="no header") as caught:
        read_record(tmp_path / "100")
    assert isinstance(caught.value, DeviceError)
    assert isinstance(caught.value, ValueError)


@pytest.mark.parametrize("registry", [DRIVERS, DECODERS, SIMULATORS], ids=lambda r: str(len(r)))
def test_an_unknown_protocol_names_the_known_ones(registry: dict[str, object]) -> None:
    with pytest.raises(UnknownProtocol) as caught:
        registry["cms51"]
    assert isinstance(caught.value, DeviceError)
    assert isinstance(caught.value, KeyError)
    assert str(caught.value).startswith("unknown protocol 'cms51' (known: ")
    assert "cms50" in str(caught.value)
    assert "cms51" not in registry and registry.get("cms51") is None  # still a dict
