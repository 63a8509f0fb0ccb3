"""Store throughput of the bedside Storage SCP (devices.dicom.scp), side by side in one run:
the SCP with neither socket option, with TCP_NODELAY only, with TCP_NODELAY and quick ACK
(the default), and dcmtk's own ``storescp`` as the baseline, each fed by dcmtk's
``storescu`` (default options: Nagle's algorithm on, as a modality's) with ``--count``
copies of a small CT (CT_small, 39 kB) and of a multi-frame US (30 JPEG frames, 225 kB)
over one association. Our SCP checks each instance and hands it to an asyncio consumer
that answers at once (the gateway's de-identification and spool are not included);
storescp writes each file to a temporary directory.

    python -m benchmarks.dicom_scp [--count 200]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import socket
import subprocess
import tempfile
import time
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


def _free_port() -> int:
    # storescp takes a port number; a benchmark may race for it, a test may not.
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _dcmtk(paths: list[str], propose: str, out: Path) -> float:
    out.mkdir(exist_ok=True)
    port = _free_port()
    server = subprocess.Popen(
        ["storescp", "+xa", "-aet", "TELEMED", "-od", str(out), str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        for _ in range(100):
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", port)) == 0:
                    break
            time.sleep(0.05)
        return _storescu(port, paths, propose)
    finally:
        server.terminate()
        server.wait()


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
