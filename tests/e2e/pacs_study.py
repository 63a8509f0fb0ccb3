"""Wonju's PACS for the PACS-in-the-room tests: a study of two CT instances of a Korean
patient, loaded into Orthanc (tests.devices.dicom.orthanc) with dcmtk's storescu, Orthanc
answering C-FIND in UTF-8 as a Korean or Japanese site's PACS does."""

from __future__ import annotations

import asyncio
import shutil
import subprocess
from pathlib import Path

import httpx
import pydicom

from tests.devices.dicom.dicom_helpers import sample_path
from tests.devices.dicom.orthanc import Orthanc

PATIENT_ID = "KR-0042"
#: Korean in UTF-8 (ISO_IR 192), as a Wonju PACS stores it.
PATIENT_NAME = "Kim^Minji=김^민지"


def study_files(directory: Path) -> tuple[list[Path], str]:
    """Two CT instances of one study of the patient, written as files; and its UID."""
    paths = []
    study_uid = pydicom.uid.generate_uid()
    for k in (1, 2):
        ds = pydicom.dcmread(sample_path("ct"))
        ds.SpecificCharacterSet = "ISO_IR 192"
        ds.PatientName = PATIENT_NAME
        ds.PatientID = PATIENT_ID
        ds.AccessionNumber = "ACC-7"
        ds.StudyDate = "20261201"
        ds.StudyDescription = "CT chest"
        ds.StudyInstanceUID = study_uid
        ds.SOPInstanceUID = pydicom.uid.generate_uid()
        ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
        path = directory / f"{k}.dcm"
        ds.save_as(path, enforce_file_format=True)
        paths.append(path)
    return paths, study_uid


async def load(pacs: Orthanc, paths: list[Path]) -> None:
    """Store ``paths`` in ``pacs`` (storescu), and have it answer in UTF-8."""
    exe = shutil.which("storescu")
    assert exe is not None, "storescu (Debian dcmtk) is needed"
    done = await asyncio.to_thread(
        subprocess.run,
        [exe, "-aec", pacs.ae_title, "127.0.0.1", str(pacs.dicom_port), *map(str, paths)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    # Orthanc answers in Latin-1 by default, where these names are lost before they leave.
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{pacs.http_port}") as web:
        (await web.put("/tools/default-encoding", content="Utf8")).raise_for_status()
