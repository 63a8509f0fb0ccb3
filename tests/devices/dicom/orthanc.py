"""Orthanc (the Debian package) as the site's PACS in tests: its own configuration and
storage in a temporary directory, DICOM and HTTP on free ports of 127.0.0.1."""

from __future__ import annotations

import asyncio
import json
import shutil
import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

ORTHANC = "/usr/sbin/Orthanc"
AE_TITLE = "PACS"


@dataclass(frozen=True)
class Orthanc:
    dicom_port: int
    http_port: int
    ae_title: str = AE_TITLE


def _free_port() -> int:
    # Orthanc takes port numbers in its configuration, not a bound socket: a port is picked
    # here and the start retried if another process took it meanwhile.
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def _listening(port: int) -> bool:
    try:
        _, writer = await asyncio.open_connection("127.0.0.1", port)
    except OSError:
        return False
    writer.close()
    await writer.wait_closed()
    return True


@asynccontextmanager
async def orthanc(directory: Path, calling_ae: str = "TELEMED") -> AsyncIterator[Orthanc]:
    """A running Orthanc that takes C-STORE from anyone and answers C-FIND and C-GET."""
    if shutil.which(ORTHANC) is None:
        pytest.skip("Orthanc is not installed (Debian package orthanc; bootstrap installs it)")
    for attempt in range(3):
        pacs = Orthanc(_free_port(), _free_port())
        storage = directory / f"orthanc-{attempt}"
        storage.mkdir(parents=True)
        config = {
            "Name": "telemed-test-pacs",
            "StorageDirectory": str(storage),
            "IndexDirectory": str(storage),
            "DicomAet": pacs.ae_title,
            "DicomPort": pacs.dicom_port,
            "HttpPort": pacs.http_port,
            "RemoteAccessAllowed": False,
            "AuthenticationEnabled": False,
            "DicomCheckCalledAet": False,
            "DicomAlwaysAllowStore": True,
            "DicomAlwaysAllowFind": True,
            "DicomAlwaysAllowGet": True,
            "DicomModalities": {
                "bedside": {"AET": calling_ae, "Host": "127.0.0.1", "Port": 104, "AllowGet": True}
            },
            "Plugins": [],
        }
        path = storage / "orthanc.json"
        path.write_text(json.dumps(config))
        log = (storage / "orthanc.log").open("wb")
        process = await asyncio.create_subprocess_exec(ORTHANC, str(path), stdout=log, stderr=log)
        try:
            for _ in range(200):
                if process.returncode is not None:
                    break
                if await _listening(pacs.dicom_port):
                    yield pacs
                    return
                await asyncio.sleep(0.05)
        finally:
            if process.returncode is None:
                process.terminate()
                await process.wait()
            log.close()
    raise AssertionError(f"Orthanc did not start; see {directory}/orthanc-*/orthanc.log")
