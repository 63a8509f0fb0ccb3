"""A minimal DICOM upper-layer client on a raw socket (PS3.8), for what no well-behaved
SCU does: sending a data set's bytes as they are (a wrong transfer syntax), and aborting or
cutting an association in the middle of a P-DATA exchange."""

from __future__ import annotations

import socket
import struct
from io import BytesIO

from pydicom.dataset import Dataset
from pydicom.filebase import DicomBytesIO
from pydicom.filereader import read_dataset
from pydicom.filewriter import write_dataset

APPLICATION_CONTEXT = b"1.2.840.10008.3.1.1.1"
IMPLEMENTATION_CLASS = b"1.2.826.0.1.3680043.9.9999.1"


def _item(kind: int, body: bytes) -> bytes:
    return struct.pack(">BBH", kind, 0, len(body)) + body


def _ae(title: str) -> bytes:
    return title.encode().ljust(16)


def _uid(uid: str) -> bytes:
    raw = uid.encode()
    return raw + (b"\0" if len(raw) % 2 else b"")


def _pdu(kind: int, body: bytes) -> bytes:
    return struct.pack(">BBI", kind, 0, len(body)) + body


def encode_implicit(ds: Dataset) -> bytes:
    fp = DicomBytesIO()
    fp.is_little_endian = True
    fp.is_implicit_VR = True
    write_dataset(fp, ds)
    return fp.getvalue()


class RawScu:
    def __init__(self, port: int, calling: str, called: str = "TELEMED") -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=10)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.calling, self.called = calling, called

    def _read_exact(self, n: int) -> bytes:
        data = b""
        while len(data) < n:
            chunk = self.sock.recv(n - len(data))
            if not chunk:
                raise ConnectionError("the SCP closed the connection")
            data += chunk
        return data

    def read_pdu(self) -> tuple[int, bytes]:
        kind, _, length = struct.unpack(">BBI", self._read_exact(6))
        return kind, self._read_exact(length)

    def associate(self, sop_class: str, syntax: str) -> int:
        """Propose one context (id 1); the answer's PDU type (2: accepted, 3: rejected)."""
        context = struct.pack(">BBBB", 1, 0, 0, 0)
        context += _item(0x30, _uid(sop_class)) + _item(0x40, _uid(syntax))
        user = _item(0x51, struct.pack(">I", 16384)) + _item(0x52, IMPLEMENTATION_CLASS)
        body = struct.pack(">HH", 1, 0) + _ae(self.called) + _ae(self.calling) + bytes(32)
        body += _item(0x10, APPLICATION_CONTEXT) + _item(0x20, context) + _item(0x50, user)
        self.sock.sendall(_pdu(0x01, body))
        kind, _ = self.read_pdu()
        return kind

    @staticmethod
    def command(sop_class: str, sop_instance: str, message_id: int = 1) -> bytes:
        ds = Dataset()
        ds.AffectedSOPClassUID = sop_class
        ds.CommandField = 0x0001
        ds.MessageID = message_id
        ds.Priority = 0
        ds.CommandDataSetType = 0x0000
        ds.AffectedSOPInstanceUID = sop_instance
        body = encode_implicit(ds)
        group = Dataset()
        group.CommandGroupLength = len(body)
        return encode_implicit(group) + body

    def send_pdv(self, data: bytes, *, command: bool, last: bool) -> None:
        header = (1 if command else 0) | (2 if last else 0)
        pdv = struct.pack(">IBB", len(data) + 2, 1, header) + data
        self.sock.sendall(_pdu(0x04, pdv))

    def store(
        self, sop_class: str, sop_instance: str, dataset: bytes, message_id: int = 1
    ) -> tuple[int, str]:
        """One C-STORE of ``dataset``'s bytes as given; the status and error comment."""
        command = self.command(sop_class, sop_instance, message_id)
        self.send_pdv(command, command=True, last=True)
        for start in range(0, len(dataset), 8000):
            chunk = dataset[start : start + 8000]
            self.send_pdv(chunk, command=False, last=start + 8000 >= len(dataset))
        kind, body = self.read_pdu()
        assert kind == 0x04, f"expected P-DATA, got PDU type {kind}"
        response = read_dataset(BytesIO(body[6:]), is_implicit_VR=True, is_little_endian=True)
        return int(response.Status), str(response.get("ErrorComment", ""))

    def release(self) -> None:
        self.sock.sendall(_pdu(0x05, bytes(4)))
        kind, _ = self.read_pdu()
        assert kind == 0x06, f"expected A-RELEASE-RP, got PDU type {kind}"
        self.sock.close()

    def abort(self) -> None:
        self.sock.sendall(_pdu(0x07, bytes(4)))
        self.sock.close()

    def reset(self) -> None:
        """Cut the connection with a TCP reset (SO_LINGER 0), as a crashing modality does."""
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.sock.close()
