"""Store throughput of the bedside Storage SCP (devices.dicom.scp), side by side in one run:
the SCP with neither socket option, with TCP_NODELAY only, with TCP_NODELAY and quick ACK
(the default), and dcmtk's own ``storescp`` as the baseline, each fed by dcmtk's
``storescu`` (default options: Nagle's algorithm on, as a modality's) with ``--count``
copies of a small CT (CT_small, 39 kB) and of a multi-frame US (30 JPEG frames, 225 kB)
over one association. Our SCP checks each instance and hands it to an asyncio consumer
that answers at once; storescp writes each file to a temporary directory, and so does
Orthanc (its index in SQLite). Two more rows take the gateway's whole path up to the
C-STORE's answer (telemed.gateway.imaging: check, consent, de-identification or not, the
spool's fsync'd file), with the server away so nothing is uploaded meanwhile.

    python -m benchmarks.dicom_scp [--count 200]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

from pydicom.data import get_testdata_file

from devices.dicom.contexts import SUCCESS
from devices.dicom.scp import ScpSettings, StorageScp
from runtime.tasks import cancel_and_wait, spawn

FILES = {"CT 39 kB": "CT_small.dcm", "US 30 frames 225 kB": "examples_ybr_color.dcm"}
PROPOSE = {"CT_small.dcm": "-xe", "examples_ybr_color.dcm": "-xy"}


def _copies(name: str, count: int, directory: Path) -> list[str]:
    source = Path(str(get_testdata_file(name)))
    paths = []
    for k in range(count):
        path = directory / f"{name}-{k}.dcm"
        shutil.copy(source, path)
        paths.append(str(path))
    return paths


def _storescu(port: int, paths: list[str], propose: str) -> float:
    command = ["storescu", "-R", propose, "-aet", "BENCH", "-aec", "TELEMED", "127.0.0.1"]
    started = time.perf_counter()
    done = subprocess.run(
        [*command, str(port), *paths],
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(done.stderr[-500:])
    return time.perf_counter() - started


async def _ours(nodelay: bool, quickack: bool, paths: list[str], propose: str) -> float:
    settings = ScpSettings(
        port=0,
        host="127.0.0.1",
        allowed_calling=("BENCH",),
        tcp_nodelay=nodelay,
        tcp_quickack=quickack,
    )
    scp = StorageScp(settings, asyncio.get_running_loop())
    scp.start()

    async def consume() -> None:
        while True:
            (await scp.arrivals.get()).answer(SUCCESS)

    task = spawn(consume(), name="bench-consumer")
    try:
        return await asyncio.to_thread(_storescu, scp.port, paths, propose)
    finally:
        await cancel_and_wait([task])
        await scp.stop()


async def _gateway(consent: bool, paths: list[str], propose: str, directory: Path) -> float:
    from devices.dicom.stow import StowAnswer, StowUnreachable
    from telemed.gateway.imaging import GatewayImaging, ImagingConfig

    async def allowed(_: str) -> bool:
        return consent

    async def away(_: str, __: str, ___: bytes) -> StowAnswer:
        raise StowUnreachable("benchmark: no server")

    settings = ScpSettings(port=0, host="127.0.0.1", allowed_calling=("BENCH",))
    directory.mkdir()
    imaging = GatewayImaging(ImagingConfig(settings), directory, lambda: "c-1", allowed, away)
    imaging.forwarder.backoff_s = 3600.0
    task = spawn(imaging.run(), name="bench-gateway")
    try:
        while imaging.scp is None:
            await asyncio.sleep(0.01)
        return await asyncio.to_thread(_storescu, imaging.scp.port, paths, propose)
    finally:
        await cancel_and_wait([task])


async def _orthanc(paths: list[str], propose: str, directory: Path) -> float:
    from tests.devices.dicom.orthanc import orthanc

    async with orthanc(directory) as pacs:
        command = ["storescu", "-R", propose, "-aec", pacs.ae_title, "127.0.0.1"]
        started = time.perf_counter()
        done = await asyncio.to_thread(
            subprocess.run,
            [*command, str(pacs.dicom_port), *paths],
            capture_output=True,
            text=True,
            check=False,
        )
        if done.returncode != 0:
            raise RuntimeError(done.stderr[-500:])
        return time.perf_counter() - started


def _free_port() -> int:
    # storescp takes a port number; a benchmark may race for it, a test may not.
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.contextmanager
def storescp(out: Path) -> Iterator[int]:
    """dcmtk's storescp (AE TELEMED, accepting every transfer syntax) writing to ``out``,
    once it accepts connections; yields its port."""
    out.mkdir(exist_ok=True)
    port = _free_port()
    server = subprocess.Popen(
        ["storescp", "+xa", "-aet", "TELEMED", "-od", str(out), str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        for _ in range(200):
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", port)) == 0:
                    break
            time.sleep(0.05)
        yield port
    finally:
        server.terminate()
        server.wait()


def _dcmtk(paths: list[str], propose: str, out: Path) -> float:
    with storescp(out) as port:
        return _storescu(port, paths, propose)


async def main(count: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        for label, name in FILES.items():
            n = count if name == "CT_small.dcm" else max(10, count // 5)
            paths = _copies(name, n, root)
            size = os.path.getsize(paths[0])
            runs = {
                "ours, no options": await _ours(False, False, paths, PROPOSE[name]),
                "ours, TCP_NODELAY": await _ours(True, False, paths, PROPOSE[name]),
                "ours, TCP_NODELAY + quick ACK": await _ours(True, True, paths, PROPOSE[name]),
                "dcmtk storescp": _dcmtk(paths, PROPOSE[name], root / "out"),
                "Orthanc 1.10": await _orthanc(paths, PROPOSE[name], root / f"orthanc-{name}"),
                "gateway path, consent": await _gateway(
                    True, paths, PROPOSE[name], root / f"consent-{name}"
                ),
                "gateway path, de-identified": await _gateway(
                    False, paths, PROPOSE[name], root / f"deid-{name}"
                ),
            }
            for what, seconds in runs.items():
                print(
                    f"{label:22} {what:30} {n / seconds:7.1f} files/s "
                    f"{n * size / seconds / 1e6:6.2f} MB/s"
                )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=200)
    asyncio.run(main(parser.parse_args().count))
