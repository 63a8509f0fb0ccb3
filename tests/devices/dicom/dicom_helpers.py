"""Shared helpers of the DICOM tests: pydicom's bundled files, a running SCP with a consumer,
and senders (pynetdicom and dcmtk's storescu)."""

from __future__ import annotations

import asyncio
import shutil
import subprocess
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from io import BytesIO
from pathlib import Path

import pydicom
from pydicom.data import get_testdata_file
from pynetdicom import AE

from devices.dicom.contexts import SUCCESS
from devices.dicom.scp import Arrival, ScpSettings, StorageScp
from runtime.tasks import cancel_and_wait, spawn

#: pydicom's bundled files (in the wheel, no download), one per kind the SCP must take.
SAMPLES: dict[str, str] = {
    "ct": "CT_small.dcm",  # CT, explicit VR little endian
    "mr": "MR_small.dcm",
    "mr-implicit": "MR_small_implicit.dcm",
    "us-multiframe-jpeg": "examples_ybr_color.dcm",  # US multi-frame, 30 frames, JPEG baseline
    "us-rgb": "examples_rgb_color.dcm",  # colour
    "us-palette": "examples_palette.dcm",
    "rle": "MR_small_RLE.dcm",
    "jpeg-extended": "JPGExtended.dcm",
    "jpeg-lossless": "SC_rgb_jpeg_gdcm.dcm",
    "jpeg-ls": "MR_small_jpeg_ls_lossless.dcm",
    "jpeg2000-lossless": "MR_small_jp2klossless.dcm",
    "jpeg2000": "JPEG2000.dcm",
    "rle-2frame": "SC_rgb_rle_2frame.dcm",
}

CALLING = "MODALITY"
STORESCU = "STORESCU"


def sample_path(name: str) -> Path:
    path = get_testdata_file(SAMPLES.get(name, name))
    assert path is not None, name
    return Path(str(path))


def sample_bytes(name: str) -> bytes:
    return sample_path(name).read_bytes()


@dataclass
class Collected:
    scp: StorageScp
    arrivals: list[Arrival] = field(default_factory=list)


@asynccontextmanager
async def running_scp(
    answer: Callable[[Arrival], tuple[int, str]] | None = lambda a: (SUCCESS, ""),
    **settings: object,
) -> AsyncIterator[Collected]:
    """An SCP on a free port of 127.0.0.1 whose consumer keeps every arrival and answers
    it with ``answer`` (None: nobody takes them)."""
    options: dict[str, object] = {
        "port": 0,
        "host": "127.0.0.1",
        "allowed_calling": (CALLING, STORESCU),
        "idle_timeout_s": 10.0,
    }
    options.update(settings)
    scp = StorageScp(ScpSettings(**options), asyncio.get_running_loop())  # type: ignore[arg-type]
    scp.start()
    collected = Collected(scp)

    async def consume() -> None:
        while True:
            arrival = await scp.arrivals.get()
            collected.arrivals.append(arrival)
            assert answer is not None
            arrival.answer(*answer(arrival))

    tasks = [] if answer is None else [spawn(consume(), name="test-consumer")]
    try:
        yield collected
    finally:
        await cancel_and_wait(tasks)
        await scp.stop()


def send_pynetdicom(
    port: int, files: list[bytes], calling: str = CALLING, called: str = "TELEMED"
) -> list[tuple[int, str]]:
    """C-STORE each file over one association; the (status, error comment) of each.
    Blocking: run it in a thread."""
    datasets = [pydicom.dcmread(BytesIO(f)) for f in files]
    ae = AE(ae_title=calling)
    for ds in datasets:
        ae.add_requested_context(ds.SOPClassUID, ds.file_meta.TransferSyntaxUID)
    assoc = ae.associate("127.0.0.1", port, ae_title=called)
    if not assoc.is_established:
        raise ConnectionRefusedError("association not established")
    results = []
    try:
        for ds in datasets:
            status = assoc.send_c_store(ds)
            results.append((int(status.Status), str(status.get("ErrorComment", ""))))
    finally:
        assoc.release()
    return results


#: storescu's option proposing a transfer syntax (with the uncompressed ones behind it).
_STORESCU_PROPOSE = {
    "1.2.840.10008.1.2": "-xi",
    "1.2.840.10008.1.2.1": "-xe",
    "1.2.840.10008.1.2.5": "-xr",
    "1.2.840.10008.1.2.4.50": "-xy",
    "1.2.840.10008.1.2.4.51": "-xx",
    "1.2.840.10008.1.2.4.70": "-xs",
    "1.2.840.10008.1.2.4.80": "-xt",
    "1.2.840.10008.1.2.4.81": "-xu",
    "1.2.840.10008.1.2.4.90": "-xv",
    "1.2.840.10008.1.2.4.91": "-xw",
}


def storescu(
    port: int, paths: list[Path], calling: str = STORESCU
) -> list[subprocess.CompletedProcess[str]]:
    """dcmtk's storescu sending ``paths`` in order: one run per run of files of one transfer
    syntax, proposing that syntax first (so nothing is converted on the way)."""
    exe = shutil.which("storescu")
    assert exe is not None, "dcmtk's storescu is not installed (bootstrap installs it)"
    groups: list[tuple[str, list[Path]]] = []
    for path in paths:
        syntax = str(pydicom.dcmread(path, stop_before_pixels=True).file_meta.TransferSyntaxUID)
        if groups and groups[-1][0] == syntax:
            groups[-1][1].append(path)
        else:
            groups.append((syntax, [path]))
    runs = []
    for syntax, group in groups:
        command = [exe, "-R", _STORESCU_PROPOSE[syntax], "-aet", calling, "-aec", "TELEMED"]
        runs.append(
            subprocess.run(
                [*command, "127.0.0.1", str(port), *map(str, group)],
                capture_output=True,
                text=True,
                timeout=60,
                check=False,
            )
        )
    return runs


def same_instance(received: bytes, source: bytes) -> bool:
    """Whether ``received`` holds ``source``'s data set: its Pixel Data byte for byte and
    every other attribute equal (trailing padding, which senders drop, aside)."""
    got = pydicom.dcmread(BytesIO(received))
    want = pydicom.dcmread(BytesIO(source))
    if got.PixelData != want.PixelData:
        return False
    tags = {e.tag for e in want if e.tag not in (0xFFFCFFFC, 0x7FE00010)}
    return all(t in got and got[t] == want[t] for t in tags)
