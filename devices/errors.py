"""The devices package's exceptions: one tree, rooted at :class:`DeviceError`.

Catch the root to handle anything this package raises on purpose; programming errors (a
wrong argument, a bug) stay built-in exceptions. Protocol outcomes on a live stream are data,
not exceptions: a decoder skips what it cannot read and reports it as a
:class:`~devices.model.FrameError` event, and a device's state travels as a
:class:`~devices.model.DeviceStatus`. The classes below are what a caller of a parsing
function, a port or a file meets. Each also derives from the built-in a caller would have
caught before the tree existed, so ``except ValueError``/``OSError``/``KeyError`` go on
working::

    DeviceError
    ├── SerialError        (OSError)    a serial port cannot be opened, or failed while open
    ├── CodecError         (ValueError) bytes or a message a codec cannot use
    │   ├── Hl7Error                    an HL7 message refused; ``ack_code`` is AE or AR
    │   └── MessageError                an IntelliVue payload that is not what it claims
    ├── RecordError        (ValueError) a WFDB record (file) that cannot be read
    ├── DicomListenError   (OSError)    the DICOM Storage SCP cannot listen on its port
    └── UnknownProtocol    (KeyError)   no driver, decoder or simulator of that name
"""

from __future__ import annotations


class DeviceError(Exception):
    """The root of every exception the devices package raises on purpose."""


class SerialError(DeviceError, OSError):
    """A serial port that cannot be opened (absent, unplugged, busy, refusing the line
    settings) or that failed while open. The underlying ``OSError``,
    ``serial.SerialException`` or ``termios.error`` is kept as ``__cause__``."""


class CodecError(DeviceError, ValueError):
    """Bytes or a message that a codec cannot use; the message says why. Decoders turn these
    into :class:`~devices.model.FrameError` events; parsing functions raise them."""


class Hl7Error(CodecError):
    """An HL7 message that is refused; ``ack_code`` is AE (error) or AR (rejected)."""

    def __init__(self, reason: str, ack_code: str = "AE") -> None:
        super().__init__(reason)
        self.ack_code = ack_code


class MessageError(CodecError):
    """An IntelliVue Data Export payload that is not the message it claims to be."""


class RecordError(DeviceError, ValueError):
    """A record that cannot be read as WFDB; the message says what is wrong."""


class DicomListenError(DeviceError, OSError):
    """The DICOM Storage SCP cannot listen (its port taken or not permitted); the message
    names the port, the underlying ``OSError`` is its ``__cause__``."""


class UnknownProtocol(DeviceError, KeyError):
    """No driver, decoder or simulator goes by this name."""

    def __init__(self, name: str, known: list[str]) -> None:
        super().__init__(f"unknown protocol {name!r} (known: {', '.join(sorted(known))})")
        self.name = name

    def __str__(self) -> str:
        # KeyError would show the message quoted, as if it were the key.
        return str(self.args[0])
